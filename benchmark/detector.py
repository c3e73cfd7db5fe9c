"""The one interface every anomaly detector implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator

from benchmark.errors import NotFittedError
from benchmark.sample import Prediction, Sample

MODALITIES = frozenset({"points", "xyz_grid", "rgb"})
LEARNING = ("one_class", "zero_shot")


class Detector(ABC):
    """Base class of detectors.

    Constructor arguments are the method's hyper-parameters with the paper's values as defaults;
    randomness comes only from a ``seed`` argument. ``fit`` sees only what the protocol allows
    (normal train data for one-class methods, labelled auxiliary data for zero-shot ones).
    """

    name: str = ""
    modalities: frozenset[str] = frozenset({"points"})
    learning: str = "one_class"
    #: set when a method's official code uses test data for normalisation (result is flagged)
    uses_test_statistics: bool = False

    @abstractmethod
    def fit(self, train: Iterable[Sample]) -> None:
        """Learns from the training samples the protocol hands over."""

    @abstractmethod
    def predict(self, sample: Sample) -> Prediction:
        """Scores one sample."""

    def predict_many(self, samples: Iterable[Sample]) -> Iterator[Prediction]:
        """Scores samples in order; override to batch or to normalise over a whole test set."""
        for sample in samples:
            yield self.predict(sample)

    def check_fitted(self, fitted: bool) -> None:
        """Raises NotFittedError naming the method unless `fitted` (call it first in predict)."""
        if not fitted:
            who = self.name or type(self).__name__
            raise NotFittedError(f"{who}: predict called before fit (call fit() first)")

    def stage_timings(self) -> dict[str, float]:
        """Mean seconds per call of each internal stage (registration, features, scoring, ...),
        stored in the job's result.json; by default read from a ``timer`` with ``per_sample()``
        (see benchmark.timing.StageTimer)."""
        timer = getattr(self, "timer", None)
        per_sample = getattr(timer, "per_sample", None)
        return dict(per_sample()) if callable(per_sample) else {}

    def to(self, device: str) -> Detector:
        """Moves the detector's models to `device` ("cpu", "cuda"); no-op by default."""
        self.device = device
        return self
