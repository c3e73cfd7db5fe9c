"""Detector conformance checks: what every detector must do, checked on tiny synthetic data.

The way scikit-learn's ``check_estimator`` works: a plugin author calls

    from benchmark.conformance import check_detector
    check_detector("my_method")                    # a registered name (runs with its smoke args)
    check_detector(lambda: MyMethod(bank_size=50), outputs=("score", "point_scores"))

and gets the list of checks that ran, or a ``ConformanceError`` (an AssertionError) whose message
starts with the name of the failing check and of the detector. The suite's own tests run it over
every registered preset (tests/test_conformance.py).

Checks (``CHECKS``, in order; ``checks=`` selects a subset by name):
- ``not_fitted``: predict / predict_many before fit raise ``NotFittedError`` (a BenchmarkError
  subclass; another BenchmarkError whose message names the method and says "fit" is accepted)
  rather than an AttributeError or a silent answer;
- ``one_shot_iterator``: fit consumes its training data once (a one-shot iterator);
- ``declared_modalities``: fit works on samples stripped of the fields the detector does not
  declare in ``modalities`` (rgb; the organized grid when neither xyz_grid nor rgb is declared,
  since the data contract ties rgb to a grid);
- ``same_seed``: two detectors built with the same arguments (same seed) and fit on the same
  data give identical predictions;
- ``predict_many``: predict equals predict_many and predict_many does not depend on the order of
  the samples (skipped when the detector sets ``uses_test_statistics``);
- ``outputs``: every field of the declared ``outputs`` is returned and fits the sample
  (``Prediction.check_against``); ``pixel_scores`` is only expected of organized samples;
- ``samples_unchanged``: fit and predict leave their samples' arrays as they were;
- ``anomaly_ranks_higher``: a clearly anomalous sample (a raised, recoloured disc) scores above
  a normal one (on by default for registered presets whose smoke arguments load no pretrained
  weights, i.e. do not set ``pretrained``).

Fitted detectors and predictions are shared between the checks (two fits in all: one on a
one-shot iterator, one on a list), so a full check costs two fits and at most eight predictions
of two samples each of ~1.7k points on a 48x48 grid.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from functools import cached_property
from typing import Any

import numpy as np

from benchmark.detector import Detector
from benchmark.errors import BenchmarkError, NotFittedError
from benchmark.registry import METHODS, Entry
from benchmark.sample import Prediction, Sample
from benchmark.seeding import seed_everything


class ConformanceError(AssertionError):
    """A detector failed a conformance check; the message names the check and the detector."""


# ---------------------------------------------------------------------------------------------
# tiny synthetic data


@dataclass
class ConformanceData:
    """What the checks feed a detector: `fit` data (normal train samples for one-class
    detectors, labelled auxiliary samples for zero-shot ones) and `test` = [normal, anomalous]."""

    one_class_train: list[Sample]
    zero_shot_train: list[Sample]
    test: list[Sample]

    def train_for(self, learning: str) -> list[Sample]:
        return self.zero_shot_train if learning == "zero_shot" else self.one_class_train


# height of the anomalous disc (the dome is 0.4 high, 1.9 wide); this large because BTF-raw's
# 10 % coreset of a tiny train set leaves normal patches about as far from the bank as a lower bump
BUMP = 0.8
PHASE = 0.3  # normal variation: the ripple's phase varies within +-PHASE radians


def synthetic_sample(i: int, label: int, *, category: str = "bagel", split: str = "test",
                     grid: int = 48, seed: int = 0) -> Sample:
    """An organized sample: a rippled dome (varying slightly with `i`) inside a disc of valid
    cells; anomalous samples carry a raised (+BUMP) red disc, clearly visible in xyz and RGB."""
    rng = np.random.default_rng([seed, i])
    yy, xx = np.meshgrid(np.linspace(-1, 1, grid), np.linspace(-1, 1, grid), indexing="ij")
    valid = xx**2 + yy**2 < 0.95**2
    phase = rng.uniform(-PHASE, PHASE)
    z = 0.4 * np.exp(-2 * (xx**2 + yy**2)) + 0.02 * np.sin(3 * xx + 2 * yy + phase)
    z = z + rng.normal(0, 0.002, z.shape)
    rgb = np.stack([0.5 + 0.2 * xx, 0.5 + 0.2 * yy, 0.6 - 0.1 * z], -1)
    rgb = rgb + rng.normal(0, 0.01, rgb.shape)
    mask = np.zeros((grid, grid), np.uint8)
    if label:
        disc = ((xx - 0.35) ** 2 + (yy - 0.2) ** 2 < 0.25**2) & valid
        z = z + BUMP * disc
        rgb[disc] = (0.9, 0.1, 0.1)
        mask[disc] = 1
    xyz = np.stack([xx, yy, z + 1.0], -1).astype(np.float32)
    xyz[~valid] = 0.0
    cells = np.flatnonzero(valid.reshape(-1)).astype(np.int64)
    return Sample(
        id=f"{category}_{split}_{i}", dataset="synthetic", category=category, split=split,
        defect="bump" if label else "good", points=xyz.reshape(-1, 3)[cells], label=int(label),
        point_mask=mask.reshape(-1)[cells], xyz_grid=xyz, grid_index=cells,
        rgb=(np.clip(rgb, 0, 1) * 255).astype(np.uint8), pixel_mask=mask,
        source={"generator": "benchmark.conformance.synthetic_sample"},
    )


def synthetic_data(seed: int = 0, grid: int = 48, n_train: int = 3) -> ConformanceData:
    """The checks' default data: `n_train` normal train samples, 2 labelled auxiliary samples of
    another category (normal, anomalous) and the test pair [normal, anomalous]."""
    return ConformanceData(
        one_class_train=[synthetic_sample(i, 0, split="train", grid=grid, seed=seed)
                         for i in range(n_train)],
        zero_shot_train=[synthetic_sample(100 + i, i % 2, category="cookie", grid=grid,
                                          seed=seed) for i in range(2)],
        test=[synthetic_sample(200, 0, grid=grid, seed=seed),
              synthetic_sample(201, 1, grid=grid, seed=seed)],
    )


def strip_to_modalities(sample: Sample, modalities: Iterable[str]) -> Sample:
    """`sample` without the inputs outside `modalities` (GT fields follow their grid)."""
    keep = set(modalities)
    if sample.xyz_grid is None:
        return sample
    if not keep & {"xyz_grid", "rgb"}:
        return replace(sample, xyz_grid=None, grid_index=None, rgb=None, pixel_mask=None)
    if "rgb" not in keep:
        return replace(sample, rgb=None)
    return sample


# ---------------------------------------------------------------------------------------------
# helpers


class OneShot(Iterator[Sample]):
    """An iterator that may be iterated once; a second pass raises ConformanceError."""

    def __init__(self, items: Iterable[Sample], who: str) -> None:
        self._it = iter(items)
        self._started = False
        self._who = who

    def __iter__(self) -> OneShot:
        if self._started:
            raise ConformanceError(
                f"[one_shot_iterator] {self._who}: fit() iterated its training data a second "
                "time; it must consume the iterable once (materialise it if it needs two passes)"
            )
        return self

    def __next__(self) -> Sample:
        self._started = True
        return next(self._it)


def _snapshot(sample: Sample) -> dict[str, Any]:
    return {f.name: np.array(v, copy=True) if isinstance(v := getattr(sample, f.name), np.ndarray)
            else v for f in fields(sample) if f.name != "source"}


def _changed(sample: Sample, before: dict[str, Any]) -> list[str]:
    out = []
    for name, old in before.items():
        new = getattr(sample, name)
        if isinstance(old, np.ndarray):
            if not isinstance(new, np.ndarray) or old.shape != new.shape or old.dtype != new.dtype \
                    or not np.array_equal(old, new):
                out.append(name)
        elif new != old:
            out.append(name)
    return out


def _difference(a: Prediction, b: Prediction, rtol: float, atol: float) -> str | None:
    """None when the two predictions agree within (rtol, atol), else what differs."""
    if not math.isclose(a.score, b.score, rel_tol=rtol, abs_tol=atol):
        return f"score {a.score!r} vs {b.score!r}"
    for name in ("point_scores", "pixel_scores"):
        x, y = getattr(a, name), getattr(b, name)
        if (x is None) != (y is None):
            return f"{name} present in one prediction only"
        if x is None:
            continue
        if x.shape != y.shape:
            return f"{name} shapes {x.shape} vs {y.shape}"
        if not np.allclose(x, y, rtol=rtol, atol=atol):
            return f"{name} differ by up to {float(np.abs(x - y).max()):.3g}"
    return None


# ---------------------------------------------------------------------------------------------
# the checker


@dataclass
class DetectorChecker:
    """Runs the conformance checks on one detector, sharing its fits between the checks.

    `factory` builds a fresh, unfitted detector each call (same arguments, same seed).
    `outputs` / `modalities` default to the registry entry's metadata, then the detector's
    class attributes. `rtol`/`atol` bound predict vs predict_many (batched code may differ in
    float rounding); two fits with the same seed must agree exactly. `global_seed`: the global
    RNGs (Python, numpy, torch, Open3D) are seeded with it before each detector is built, as the
    runner does (random initialisations with ``pretrained=False`` draw from them); None leaves
    them alone, to check that a detector is deterministic from its own arguments alone.
    """

    factory: Callable[[], Detector]
    name: str = ""
    outputs: tuple[str, ...] = ("score",)
    modalities: tuple[str, ...] | None = None
    check_ranking: bool = False
    data: ConformanceData = field(default_factory=synthetic_data)
    rtol: float = 1e-5
    atol: float = 1e-6
    global_seed: int | None = 0

    def build(self) -> Detector:
        """A fresh detector from `factory`, after seeding the global RNGs (see `global_seed`)."""
        if self.global_seed is not None:
            seed_everything(self.global_seed)
        return self.factory()

    # --- shared state (computed on first use) ---------------------------------------------
    @cached_property
    def probe(self) -> Detector:
        """A fresh unfitted detector (read for its class attributes; never fitted)."""
        return self.build()

    @property
    def who(self) -> str:
        return self.name or getattr(self.probe, "name", "") or type(self.probe).__name__

    @cached_property
    def learning(self) -> str:
        return getattr(self.probe, "learning", "one_class")

    @cached_property
    def declared(self) -> tuple[str, ...]:
        mods = self.modalities or tuple(sorted(getattr(self.probe, "modalities", ("points",))))
        return tuple(mods)

    @cached_property
    def train(self) -> list[Sample]:
        return [strip_to_modalities(s, self.declared) for s in
                self.data.train_for(self.learning)]

    @cached_property
    def _train_before(self) -> list[dict[str, Any]]:
        return [_snapshot(s) for s in self.train]

    @cached_property
    def _test_before(self) -> list[dict[str, Any]]:
        return [_snapshot(s) for s in self.data.test]

    def _fail(self, check: str, message: str) -> ConformanceError:
        return ConformanceError(f"[{check}] {self.who}: {message}")

    def _fit(self, data: Iterable[Sample]) -> Detector:
        self._train_before  # noqa: B018  (snapshot before the first fit)
        det = self.build()
        try:
            det.fit(data)
        except ConformanceError:
            raise
        except Exception as err:
            raise self._fail(
                "declared_modalities", f"fit on {len(self.train)} tiny samples holding only the "
                f"declared modalities {list(self.declared)} failed: {type(err).__name__}: {err}"
            ) from err
        return det

    @cached_property
    def fitted(self) -> Detector:
        """Fit on a one-shot iterator of the stripped training samples."""
        return self._fit(OneShot(self.train, self.who))

    @cached_property
    def refitted(self) -> Detector:
        """A second detector with the same arguments, fit on the same samples as a list."""
        return self._fit(list(self.train))

    @property
    def uses_test_statistics(self) -> bool:
        return bool(getattr(self.fitted, "uses_test_statistics", False))

    def _predict_many(self, det: Detector, samples: Sequence[Sample],
                      check: str) -> list[Prediction]:
        self._test_before  # noqa: B018
        try:
            preds = list(det.predict_many(samples))
        except Exception as err:
            raise self._fail(check, f"predict_many failed: {type(err).__name__}: {err}") from err
        if len(preds) != len(samples):
            raise self._fail(check, f"predict_many returned {len(preds)} predictions for "
                                    f"{len(samples)} samples")
        for p in preds:
            if not isinstance(p, Prediction):
                raise self._fail(check, f"predict_many yielded {type(p).__name__}, "
                                        "not a benchmark.sample.Prediction")
        return preds

    @cached_property
    def predictions(self) -> list[Prediction]:
        """The fitted detector's predict_many on the test pair [normal, anomalous]."""
        return self._predict_many(self.fitted, self.data.test, "predict_many")

    # --- the checks ----------------------------------------------------------------------------
    def check_not_fitted(self) -> None:
        sample = self.data.test[0]
        det = self.probe  # never fitted
        for call in ("predict", "predict_many"):
            try:
                if call == "predict":
                    det.predict(sample)
                else:
                    list(det.predict_many([sample]))
            except NotFittedError:
                continue
            except BenchmarkError as err:
                text = str(err).lower()
                names = {self.who.lower(), type(det).__name__.lower()}
                if "fit" in text and any(n and n in text for n in names):
                    continue
                raise self._fail("not_fitted", f"{call} before fit raised {type(err).__name__}: "
                                               f"{err} (expected NotFittedError)") from err
            except Exception as err:
                raise self._fail("not_fitted", f"{call} before fit raised {type(err).__name__}: "
                                               f"{err} (expected NotFittedError)") from err
            else:
                raise self._fail("not_fitted", f"{call} before fit returned instead of raising "
                                               "NotFittedError")

    def check_one_shot_iterator(self) -> None:
        self.fitted  # noqa: B018  (raises when fit fails or iterates twice)

    def check_declared_modalities(self) -> None:
        self.predictions  # noqa: B018  (fit on stripped samples, predict on full ones)

    def check_same_seed(self) -> None:
        again = self._predict_many(self.refitted, self.data.test, "same_seed")
        for sample, a, b in zip(self.data.test, self.predictions, again):
            diff = _difference(a, b, 0.0, 0.0)
            if diff:
                raise self._fail(
                    "same_seed", f"two detectors built with the same arguments and seed, fit "
                    f"on the same data (one as a one-shot iterator, one as a list), disagree on "
                    f"sample {sample.id!r}: {diff}"
                )

    def check_predict_many(self) -> str | None:
        if self.uses_test_statistics:
            return "skipped: the detector sets uses_test_statistics"
        test = self.data.test
        for sample, many in zip(test, self.predictions):
            try:
                one = self.fitted.predict(sample)
            except Exception as err:
                raise self._fail("predict_many", f"predict failed: {type(err).__name__}: "
                                                 f"{err}") from err
            diff = _difference(one, many, self.rtol, self.atol)
            if diff:
                raise self._fail("predict_many", f"predict and predict_many disagree on "
                                                 f"{sample.id!r}: {diff}")
        reverse = self._predict_many(self.fitted, test[::-1], "predict_many")[::-1]
        for sample, a, b in zip(test, self.predictions, reverse):
            diff = _difference(a, b, self.rtol, self.atol)
            if diff:
                raise self._fail(
                    "predict_many", f"predict_many depends on the order of the samples "
                    f"({sample.id!r}: {diff}); set uses_test_statistics if it must"
                )
        return None

    def check_outputs(self) -> None:
        for sample, p in zip(self.data.test, self.predictions):
            for name in self.outputs:
                if name == "pixel_scores" and not sample.organized:
                    continue
                if name != "score" and getattr(p, name, None) is None:
                    raise self._fail("outputs", f"declares output {name!r} but returned none "
                                                f"for sample {sample.id!r}")
            try:
                p.check_against(sample)
            except BenchmarkError as err:
                raise self._fail("outputs", str(err)) from err

    def check_samples_unchanged(self) -> None:
        self.predictions  # noqa: B018
        for kind, samples, before in (("fit", self.train, self._train_before),
                                      ("predict", self.data.test, self._test_before)):
            for sample, snap in zip(samples, before):
                changed = _changed(sample, snap)
                if changed:
                    raise self._fail("samples_unchanged", f"{kind} modified {changed} of "
                                                          f"sample {sample.id!r}")

    def check_anomaly_ranks_higher(self) -> str | None:
        if not self.check_ranking:
            return "skipped: not requested (check_ranking=False)"
        normal, anomalous = self.predictions
        if not anomalous.score > normal.score:
            raise self._fail(
                "anomaly_ranks_higher", f"the clearly anomalous sample scored "
                f"{anomalous.score:.6g}, not above the normal one ({normal.score:.6g})"
            )
        return None

    # --- running --------------------------------------------------------------------------------
    def run(self, check: str) -> str:
        """Runs one check by name; returns "passed" or "skipped: <why>"."""
        if check not in CHECKS:
            raise ValueError(f"unknown conformance check {check!r}; known: {', '.join(CHECKS)}")
        outcome = getattr(self, f"check_{check}")()
        return outcome or "passed"

    def run_all(self, checks: Iterable[str] | None = None) -> dict[str, str]:
        return {c: self.run(c) for c in (CHECKS if checks is None else checks)}


CHECKS = ("not_fitted", "one_shot_iterator", "declared_modalities", "same_seed",
          "predict_many", "outputs", "samples_unchanged", "anomaly_ranks_higher")


def needs_weights(entry: Entry) -> bool:
    """A registered preset whose smoke arguments replace pretrained weights (``pretrained``)."""
    return "pretrained" in entry.smoke


def checker_for(
    detector: str | Entry | Callable[[], Detector],
    *,
    overrides: Mapping[str, Any] | None = None,
    smoke: bool = True,
    outputs: Sequence[str] | None = None,
    modalities: Sequence[str] | None = None,
    check_ranking: bool | None = None,
    data: ConformanceData | None = None,
    global_seed: int | None = 0,
) -> DetectorChecker:
    """A DetectorChecker for a registered name / Entry (built with its smoke arguments unless
    `smoke=False`, plus `overrides`) or a zero-argument factory of fresh detectors."""
    extra = dict(overrides or {})
    if isinstance(detector, str):
        detector = METHODS.get(detector)
    if isinstance(detector, Entry):
        entry = detector
        args = {**(entry.smoke if smoke else {}), **extra}

        def factory() -> Detector:
            return entry.create(**args)

        name = entry.name
        outputs = outputs or entry.outputs or ("score",)
        modalities = modalities or entry.modalities or None
        if check_ranking is None:
            check_ranking = not needs_weights(entry)
    else:
        base = detector

        def factory() -> Detector:
            return base(**extra)

        name = ""
        outputs = outputs or ("score",)
    return DetectorChecker(
        factory=factory, name=name, outputs=tuple(outputs),
        modalities=None if modalities is None else tuple(modalities),
        check_ranking=bool(check_ranking), data=data or synthetic_data(),
        global_seed=global_seed,
    )


def check_detector(
    detector: str | Entry | Callable[[], Detector],
    *,
    checks: Iterable[str] | None = None,
    **options: Any,
) -> dict[str, str]:
    """Runs the conformance checks (all, or `checks`) on a detector; returns {check: outcome}
    and raises ConformanceError naming the first failing check. Options: see `checker_for`."""
    return checker_for(detector, **options).run_all(checks)


__all__ = ["CHECKS", "ConformanceData", "ConformanceError", "DetectorChecker", "OneShot",
           "check_detector", "checker_for", "needs_weights", "strip_to_modalities",
           "synthetic_data", "synthetic_sample"]
