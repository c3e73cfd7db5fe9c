"""The detector conformance suite (benchmark/conformance.py) over every registered preset, and
each of its checks failing on a detector built to break it."""

from __future__ import annotations

import inspect
from collections.abc import Iterable

import numpy as np
import pytest
from scipy.spatial import cKDTree

from benchmark.conformance import (
    BUMP,
    CHECKS,
    ConformanceError,
    OneShot,
    check_detector,
    checker_for,
    needs_weights,
    strip_to_modalities,
    synthetic_data,
    synthetic_sample,
)
from benchmark.detector import Detector
from benchmark.errors import NotFittedError
from benchmark.registry import DATASETS, METHODS
from benchmark.sample import Prediction, Sample

PRESETS = [n for n in METHODS.names() if not n.startswith("toy_")]
CASES = [(p, c) for p in PRESETS for c in CHECKS]
_CHECKERS: dict = {}


@pytest.mark.parametrize("preset,check", CASES, ids=[f"{p}-{c}" for p, c in CASES])
def test_registered_preset_conforms(preset: str, check: str) -> None:
    """Every preset (its smoke arguments, pretrained=False where it needs weights) passes every
    check; the checks of one preset share its two fits, freed after its last check."""
    if preset not in _CHECKERS:
        _CHECKERS.clear()
        _CHECKERS[preset] = checker_for(preset, overrides=_overrides(preset))
    try:
        outcome = _CHECKERS[preset].run(check)
    finally:
        if check == CHECKS[-1]:
            _CHECKERS.pop(preset, None)
    if outcome.startswith("skipped"):
        pytest.skip(outcome)


def _overrides(preset: str) -> dict:
    """Presets that draw pseudo anomalies from task-irrelevant classes of a dataset root (3DzAL)
    get the embedded synthetic MVTec-format tree: the conformance samples carry no files."""
    if "irrelevant_root" not in inspect.signature(METHODS.get(preset).factory).parameters:
        return {}
    return {"irrelevant_root": str(DATASETS.create("synthetic", format="mvtec3d").root)}


def test_every_preset_is_covered_and_weight_free_presets_are_ranked() -> None:
    assert len(PRESETS) == len(METHODS.names()) > 0
    free = [p for p in PRESETS if not needs_weights(METHODS.get(p))]
    assert {"btf_fpfh", "patchcore_fpfh"} <= set(free)
    assert all(checker_for(p).check_ranking for p in free)


# ---------------------------------------------------------------------------------------------
# a small conforming detector and one broken copy per check


class NearestPoint(Detector):
    """Distance of each point to the nearest training point (xyz); conforms to every check."""

    name = "nearest_point"
    modalities = frozenset({"points"})
    outputs = ("score", "point_scores")

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed
        self.tree: cKDTree | None = None

    def fit(self, train: Iterable[Sample]) -> None:
        pts = np.concatenate([s.points for s in train])
        rng = np.random.default_rng(self.seed)
        self.tree = cKDTree(pts[rng.choice(len(pts), min(len(pts), 3000), replace=False)])

    def predict(self, sample: Sample) -> Prediction:
        self.check_fitted(self.tree is not None)
        d = self.tree.query(sample.points)[0].astype(np.float32)
        return Prediction(score=float(d.max()), point_scores=d)


class NoGuard(NearestPoint):
    def predict(self, sample):
        d = self.tree.query(sample.points)[0]  # AttributeError before fit
        return Prediction(score=float(d.max()), point_scores=d)


class TwoPasses(NearestPoint):
    def fit(self, train):
        first = next(iter(train))
        super().fit([first, *train])


class ReadsRGB(NearestPoint):
    def fit(self, train):
        for s in train:
            _ = s.rgb.mean()  # declares only "points"
        super().fit(train)


class Unseeded(NearestPoint):
    def fit(self, train):
        pts = np.concatenate([s.points for s in train])
        idx = np.random.default_rng().choice(len(pts), 500, replace=False)
        self.tree = cKDTree(pts[idx])


class BatchNormalised(NearestPoint):
    """Min-max over the batch without declaring uses_test_statistics."""

    def predict_many(self, samples):
        preds = [self.predict(s) for s in samples]
        scores = np.array([p.score for p in preds])
        span = scores.max() - scores.min() or 1.0
        for p, s in zip(preds, scores):
            yield Prediction(score=(s - scores.min()) / span, point_scores=p.point_scores)


class MissingOutput(NearestPoint):
    def predict(self, sample):
        return Prediction(score=super().predict(sample).score)


class Mutates(NearestPoint):
    def predict(self, sample):
        sample.points -= sample.points.mean(0)  # in place
        return super().predict(sample)


class Inverted(NearestPoint):
    def predict(self, sample):
        p = super().predict(sample)
        return Prediction(score=-p.score, point_scores=-p.point_scores)


DATA = synthetic_data(grid=32)
BROKEN = {
    "not_fitted": NoGuard,
    "one_shot_iterator": TwoPasses,
    "declared_modalities": ReadsRGB,
    "same_seed": Unseeded,
    "predict_many": BatchNormalised,
    "outputs": MissingOutput,
    "samples_unchanged": Mutates,
    "anomaly_ranks_higher": Inverted,
}


def test_a_conforming_plugin_detector_passes_every_check() -> None:
    outcome = check_detector(NearestPoint, outputs=NearestPoint.outputs, check_ranking=True,
                             data=DATA)
    assert outcome == dict.fromkeys(CHECKS, "passed")


def test_batch_statistics_are_allowed_once_declared() -> None:
    class Declared(BatchNormalised):
        uses_test_statistics = True

    outcome = check_detector(Declared, data=DATA, checks=["predict_many", "same_seed"])
    assert outcome["predict_many"].startswith("skipped") and outcome["same_seed"] == "passed"


@pytest.mark.parametrize("check", CHECKS)
def test_each_check_fails_on_a_detector_that_breaks_it(check: str) -> None:
    cls = BROKEN[check]
    with pytest.raises(ConformanceError, match=rf"^\[{check}\] {cls.name}: "):
        check_detector(cls, outputs=NearestPoint.outputs, check_ranking=True, data=DATA,
                       checks=[check])


def test_not_fitted_error_names_the_method() -> None:
    with pytest.raises(NotFittedError, match="nearest_point: predict called before fit"):
        NearestPoint().predict(DATA.test[0])


def test_one_shot_iterator_refuses_a_second_pass() -> None:
    it = OneShot(DATA.test, "x")
    assert len(list(it)) == 2
    with pytest.raises(ConformanceError, match="second time"):
        iter(it)


def test_synthetic_pair_and_stripping() -> None:
    normal, anomalous = synthetic_sample(0, 0, grid=24), synthetic_sample(0, 1, grid=24)
    assert normal.organized and normal.point_mask.sum() == 0
    disc = anomalous.point_mask == 1
    assert disc.sum() > 10 and anomalous.pixel_mask.sum() == disc.sum()
    raised = anomalous.points[disc, 2] - normal.points[disc, 2]  # same i: same normal surface
    np.testing.assert_allclose(raised, BUMP, atol=1e-5)
    pts = strip_to_modalities(anomalous, {"points"})
    assert pts.xyz_grid is None and pts.rgb is None and pts.pixel_mask is None
    assert pts.point_mask is anomalous.point_mask
    grid = strip_to_modalities(anomalous, {"xyz_grid"})
    assert grid.rgb is None and grid.xyz_grid is anomalous.xyz_grid
    assert strip_to_modalities(anomalous, {"rgb"}).rgb is anomalous.rgb
