"""Evaluation protocols: what a detector may be fit on, and what it is tested on (DESIGN §5).

A protocol turns (dataset, categories, auxiliary categories) into trials. A trial is one fit plus
the test categories scored by that fitted detector. The data handed to ``fit`` is wrapped in a
`FitData` view that checks every sample it hands out against what the trial allows, so a detector
can never see test-category data while fitting — except the protocol's own auxiliary data.

- ``one_class``: fit on ``train`` (normal) of c, test on ``test`` of c.
- ``zero_shot`` (PointAD one-vs-rest): fit on the labelled ``test`` split of auxiliary category a,
  test on every other category of the same dataset. Detectors whose ``learning`` is
  ``"one_class"`` get the normal ``train`` split of a instead (they cannot use labels).
- ``cross_dataset``: as ``zero_shot`` but fit on category a of dataset A and test on every
  category of dataset B.
- ``zero_shot_pairs`` (3DzAL): fit on ``train`` (normal only) of class A, test on ``test`` of each
  class B != A, whatever the detector's learning type; the training classes A are every tested
  class, or the auxiliary categories when given (the 3-class ablation tables).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from benchmark.errors import ConfigError, ContractError
from benchmark.sample import Sample

PROTOCOLS = ("one_class", "zero_shot", "cross_dataset", "zero_shot_pairs")

#: auxiliary (training) categories of PointAD / PointAD+ one-vs-rest and cross-dataset runs
DEFAULT_AUX: dict[str, tuple[str, ...]] = {
    "mvtec3d": ("carrot", "cookie", "dowel"),
    "eyecandies": ("Confetto", "LicoriceSandwich", "PeppermintCandy"),
    "real3d": ("seahorse", "shell", "starfish"),
}


@dataclass(frozen=True)
class Trial:
    """One fit (on `train_category` of `train_dataset`) and the categories it is tested on."""

    train_dataset: str
    train_category: str
    test_categories: tuple[str, ...]


def fit_split(protocol: str, learning: str) -> str:
    """The split of the training category a detector is fit on under `protocol`."""
    if protocol in ("zero_shot", "cross_dataset") and learning == "zero_shot":
        return "test"  # the labelled auxiliary data of zero-shot training
    return "train"


def _select(categories: Sequence[str], wanted: Sequence[str] | str | None, what: str,
            dataset: str) -> list[str]:
    if wanted is None or wanted == "all":
        return list(categories)
    if isinstance(wanted, str):
        wanted = [wanted]
    unknown = [c for c in wanted if c not in categories]
    if unknown:
        raise ConfigError(
            f"{what}: unknown categor{'y' if len(unknown) == 1 else 'ies'} {unknown} of dataset "
            f"'{dataset}'; known: {list(categories)}"
        )
    return list(dict.fromkeys(wanted))


def default_aux(dataset: str, categories: Sequence[str]) -> list[str]:
    """The paper's auxiliary categories for `dataset`, or a ConfigError asking for --aux."""
    if dataset == "synthetic" and categories:
        return [sorted(categories)[0]]  # the embedded default: first category is auxiliary
    aux = DEFAULT_AUX.get(dataset)
    if aux is None or any(a not in categories for a in aux):
        raise ConfigError(
            f"protocol needs auxiliary (training) categories for dataset '{dataset}': the paper "
            f"defaults exist only for {sorted(DEFAULT_AUX)}; pass --aux with some of "
            f"{list(categories)}"
        )
    return list(aux)


def trials(
    protocol: str,
    dataset: str,
    categories: Sequence[str],
    *,
    selected: Sequence[str] | str | None = None,
    aux: Sequence[str] | str | None = None,
    train_dataset: str | None = None,
    train_categories: Sequence[str] | None = None,
    same_dataset: bool | None = None,
) -> list[Trial]:
    """Expands a protocol into trials.

    `categories` are the test dataset's categories and `selected` the ones asked for (None/"all" =
    every one); `aux` are the auxiliary categories (zero_shot, cross_dataset); for cross_dataset,
    `train_dataset` / `train_categories` describe dataset A, and `same_dataset` says whether A is
    the tested dataset itself (default: same registry name); then the auxiliary category is not
    tested.
    """
    if protocol not in PROTOCOLS:
        raise ConfigError(f"unknown protocol '{protocol}'; known protocols: {list(PROTOCOLS)}")
    tested = _select(categories, selected, "categories", dataset)
    if protocol == "one_class":
        return [Trial(dataset, c, (c,)) for c in tested]
    if protocol == "zero_shot_pairs":
        if len(tested) < 2:
            raise ConfigError("zero_shot_pairs needs at least two categories")
        # `aux` restricts the training classes (3DzAL's ablation tables train on 3 classes)
        train_cats = tested if aux is None else _select(categories, aux, "aux categories",
                                                        dataset)
        return [Trial(dataset, a, tuple(b for b in tested if b != a)) for a in train_cats]
    if protocol == "zero_shot":
        if train_dataset not in (None, dataset):
            raise ConfigError("zero_shot trains and tests on one dataset; use cross_dataset")
        aux_list = (default_aux(dataset, categories) if aux is None
                    else _select(categories, aux, "aux categories", dataset))
        out = []
        for a in aux_list:
            rest = tuple(c for c in tested if c != a)
            if rest:
                out.append(Trial(dataset, a, rest))
        if not out:
            raise ConfigError("zero_shot: no test category is left besides the auxiliary ones")
        return out
    # cross_dataset
    if not train_dataset:
        raise ConfigError("cross_dataset needs a training dataset (--train-dataset)")
    train_cats = list(train_categories or [])
    aux_list = (default_aux(train_dataset, train_cats) if aux is None
                else _select(train_cats, aux, "aux categories", train_dataset))
    same = train_dataset == dataset if same_dataset is None else same_dataset
    return [Trial(train_dataset, a, tuple(c for c in tested if not (same and c == a)))
            for a in aux_list]


class FitData(Sequence):
    """What `Detector.fit` receives: a lazy view of one split of one category, checked per item.

    Every sample handed out must come from the allowed dataset, category and split; samples from
    the ``train`` split must be normal. Anything else raises `ContractError` naming the sample, so
    a dataset adapter bug can never leak test-category data into training.
    """

    def __init__(self, samples: Sequence[Sample], *, dataset: str, category: str, split: str,
                 forbidden: Sequence[str] = ()) -> None:
        self._samples = samples
        self.dataset = dataset
        self.category = category
        self.split = split
        self.forbidden = frozenset(forbidden)
        if split != "train" and category in self.forbidden:
            raise ContractError(
                f"protocol violation: labelled data of category '{category}' would reach fit, "
                f"but '{category}' is also tested")

    def __len__(self) -> int:
        return len(self._samples)

    def _check(self, sample: Any) -> Sample:
        if not isinstance(sample, Sample):
            raise ContractError(f"fit data: expected a Sample, got {type(sample).__name__}")
        where = f"sample {sample.id!r}"
        if sample.category != self.category:
            raise ContractError(
                f"protocol violation: {where} of category '{sample.category}' reached fit, which "
                f"may only see category '{self.category}'"
            )
        if sample.split != self.split:
            raise ContractError(
                f"protocol violation: {where} from split '{sample.split}' reached fit, which may "
                f"only see split '{self.split}'"
            )
        if self.split == "train" and sample.label != 0:
            raise ContractError(f"protocol violation: anomalous {where} in a normal train split")
        return sample

    def __getitem__(self, index):  # type: ignore[override]
        if isinstance(index, slice):
            return [self._check(self._samples[i]) for i in range(*index.indices(len(self)))]
        return self._check(self._samples[index])

    def __iter__(self) -> Iterator[Sample]:
        for i in range(len(self)):
            yield self[i]

    def __repr__(self) -> str:
        return (f"FitData({self.dataset}/{self.category}/{self.split}, {len(self)} samples)")


def fit_data(train_ds: Any, trial: Trial, protocol: str, learning: str,
             same_dataset: bool = True) -> FitData:
    """The guarded fit view of `trial` for a detector of the given learning type."""
    split = fit_split(protocol, learning)
    if split == "train":
        samples = train_ds.train(trial.train_category)
    else:
        samples = train_ds.test(trial.train_category)
    forbidden = trial.test_categories if same_dataset else ()
    return FitData(samples, dataset=trial.train_dataset, category=trial.train_category,
                   split=split, forbidden=forbidden)
