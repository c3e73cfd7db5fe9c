"""Reg3D-AD end to end on small synthetic clouds (random-weight Point-MAE, tiny config)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from benchmark.errors import ConfigError, ContractError, NotFittedError
from benchmark.registry import METHODS
from benchmark.sample import Sample
from methods.reg3dad import Reg3DAD

AXES = np.array([8.0, 5.0, 3.0])  # mm; dense enough for the official 0.5 mm voxel recipe
TINY = dict(num_group=48, group_size=24, memory_size=400, pretrained=False, ransac_iterations=4000)


def _cloud(rng: np.random.Generator, n: int, anomalous: bool) -> tuple[np.ndarray, np.ndarray]:
    """An ellipsoid with an asymmetric knob (so the pose is well defined); anomalous clouds get a
    2 mm bulge of radius 2 mm at a random place. Randomly rotated and shifted."""
    d = rng.normal(size=(n, 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    p = d * AXES
    knob = np.array([5.0, 2.5, 0.0])
    knob /= np.linalg.norm(knob / AXES)
    p += (np.exp(-np.sum((p - knob) ** 2, 1) / 4.0) * 1.5)[:, None] * d
    mask = np.zeros(n, np.uint8)
    if anomalous:
        r = np.linalg.norm(p - p[rng.integers(n)], axis=1)
        sel = r < 2.0
        p[sel] += d[sel] * (2.0 * (1 - r[sel] / 2.0))[:, None]
        mask[sel] = 1
    rot = Rotation.random(random_state=int(rng.integers(1 << 30))).as_matrix()
    return (p @ rot.T + rng.normal(size=3) * 5).astype(np.float32), mask


def _sample(rng, i: int, split: str, anomalous: bool = False, n: int = 2500) -> Sample:
    pts, mask = _cloud(rng, n, anomalous)
    return Sample(
        id=f"{split}_{i:02d}",
        dataset="toy",
        category="ellipsoid",
        split=split,
        defect="bulge" if anomalous else "good",
        points=pts,
        label=int(anomalous),
        point_mask=mask,
    )


@pytest.fixture(scope="module")
def data() -> tuple[list[Sample], list[Sample]]:
    rng = np.random.default_rng(0)
    train = [_sample(rng, i, "train") for i in range(3)]
    test = [_sample(rng, i, "test", anomalous=i % 2 == 1) for i in range(6)]
    return train, test


def _auroc(labels, scores) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(np.asarray(labels), np.asarray(scores)))


@pytest.fixture(scope="module")
def fitted_test_norm(data) -> Reg3DAD:
    det = Reg3DAD(normalize="test", seed=0, **TINY)
    det.fit(data[0])
    return det


@pytest.fixture(scope="module")
def raw_scores(fitted_test_norm, data) -> dict:
    return {s.id: fitted_test_norm._predict_raw(s) for s in data[1]}


def test_official_test_set_normalisation(fitted_test_norm, data, raw_scores, monkeypatch) -> None:
    det, test = fitted_test_norm, data[1]
    monkeypatch.setattr(det, "_predict_raw", lambda s: raw_scores[s.id])  # no recomputation
    assert det.uses_test_statistics and det.template_id == "train_00"
    # bank A: fewer rows (3 x 48 groups) than memory_size -> all kept; bank B: coreset of 400
    assert len(det.bank_a) == 3 * 48 and det.bank_a.dim == 1152
    assert len(det.bank_b) == 400 and det.bank_b.dim == 3
    preds = list(det.predict_many(test))
    assert len(preds) == len(test)
    for s, p in zip(test, preds):
        p.check_against(s)
    # the formula: per-bank min-max over the set (objects; pooled points), then the mean
    raws = [raw_scores[s.id] for s in test]
    for bank in ("a", "b"):
        obj = np.array([getattr(r, f"obj_{bank}") for r in raws])
        assert obj.min() < obj.max()
    obj_a = np.array([r.obj_a for r in raws])
    obj_b = np.array([r.obj_b for r in raws])
    want = 0.5 * ((obj_a - obj_a.min()) / np.ptp(obj_a) + (obj_b - obj_b.min()) / np.ptp(obj_b))
    np.testing.assert_allclose([p.score for p in preds], want, rtol=1e-5, atol=1e-6)
    pooled_a = np.concatenate([r.pts_a for r in raws])
    pooled_b = np.concatenate([r.pts_b for r in raws])
    want_pts = 0.5 * (
        (raws[2].pts_a - pooled_a.min()) / np.ptp(pooled_a)
        + (raws[2].pts_b - pooled_b.min()) / np.ptp(pooled_b)
    )
    np.testing.assert_allclose(preds[2].point_scores, want_pts, rtol=1e-5, atol=1e-6)
    # detection of the synthetic bulges by the xyz bank (the random-weight Point-MAE bank carries
    # no real signal; the combined map stays above chance)
    labels = [s.label for s in test]
    masks = np.concatenate([s.point_mask for s in test])
    assert _auroc(labels, obj_b) == 1.0
    assert _auroc(masks, pooled_b) > 0.65
    assert _auroc(masks, np.concatenate([p.point_scores for p in preds])) > 0.55


def test_deterministic(fitted_test_norm, data, raw_scores) -> None:
    det, test = fitted_test_norm, data[1]
    a = raw_scores[test[3].id]
    b = det._predict_raw(test[3])
    np.testing.assert_array_equal(a.pts_a, b.pts_a)
    np.testing.assert_array_equal(a.pts_b, b.pts_b)
    with pytest.raises(ConfigError, match="predict_many"):
        det.predict(test[3])  # test-set statistics need the whole set


def test_leak_free_train_normalisation(data) -> None:
    train, test = data
    det = Reg3DAD(normalize="train", seed=0, **TINY)
    assert not det.uses_test_statistics
    det.fit(train)
    stats = det.train_stats
    assert stats is not None and stats.pts_b[1] > stats.pts_b[0]
    preds = list(det.predict_many(test))
    # no test statistics: a sample's prediction does not depend on the other test samples
    alone = det.predict(test[1])
    assert alone.score == pytest.approx(preds[1].score, rel=1e-6)
    np.testing.assert_allclose(alone.point_scores, preds[1].point_scores, rtol=1e-6)
    masks = np.concatenate([s.point_mask for s in test])
    assert _auroc(masks, np.concatenate([p.point_scores for p in preds])) > 0.55


def test_registry_and_errors(data) -> None:
    entry = METHODS.get("reg3dad")
    assert entry.learning == "one_class" and "point_scores" in entry.outputs
    det = entry.create(**entry.smoke)
    assert isinstance(det, Reg3DAD) and det.uses_test_statistics
    with pytest.raises(NotFittedError, match="before fit"):
        list(det.predict_many(data[1][:1]))
    with pytest.raises(ConfigError):
        Reg3DAD(normalize="per_sample", pretrained=False)
    with pytest.raises(ContractError, match="no training samples"):
        Reg3DAD(**TINY).fit([])


def test_pretrained_offline_names_weights_file() -> None:
    from benchmark.errors import WeightsError

    with pytest.raises(WeightsError, match="pointmae_pretrain.pth"):
        Reg3DAD()


def test_synthetic_real3d_tree_end_to_end() -> None:
    """The generated Real3D-AD-format tree through the real adapter (official 0.5 mm recipe)."""
    from benchmark.registry import DATASETS

    ds = DATASETS.create("synthetic", format="real3d", size="small", categories=1)
    category = ds.categories[0]
    tiny = {**TINY, "num_group": 32, "group_size": 16, "memory_size": 150}
    det = METHODS.create("reg3dad", seed=0, **tiny)
    det.fit(ds.train(category))
    assert det.template_id == ds.train(category)[0].id
    test = list(ds.test(category))
    preds = list(det.predict_many(test))
    assert len(preds) == len(test) and det.uses_test_statistics
    scores = np.array([p.score for p in preds])
    assert np.all((scores >= 0) & (scores <= 1)) and scores.max() > scores.min()
    for s, p in zip(test, preds):
        p.check_against(s)
        assert 0 <= p.point_scores.min() and p.point_scores.max() <= 1
