"""PatchCore presets end to end: the Real3D-AD point-cloud variants and the 2D RGB PatchCore."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from benchmark.errors import ConfigError, NotFittedError, WeightsError
from benchmark.registry import METHODS
from benchmark.sample import Sample

# ------------------------------------------------------------------ small synthetic clouds


def _rotation(rng: np.random.Generator, max_angle: float) -> np.ndarray:
    axis = rng.normal(size=3)
    axis /= np.linalg.norm(axis)
    a = rng.uniform(-max_angle, max_angle)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(a) * k + (1 - np.cos(a)) * k @ k


def _directions(rng: np.random.Generator, n: int) -> np.ndarray:
    d = rng.normal(size=(n, 3))
    return d / np.linalg.norm(d, axis=1, keepdims=True)


def _radius(d: np.ndarray) -> np.ndarray:
    """A lumpy, asymmetric closed surface r(direction), size ~20 units (same for every sample)."""
    x, y, z = d.T
    return 10 * (1 + 0.25 * x * y + 0.2 * np.sin(3 * x + 1) * z + 0.15 * np.cos(4 * y) * x
                 + 0.3 * np.exp(-8 * ((x - 0.6) ** 2 + (y - 0.5) ** 2)))  # fmt: skip


def cloud_sample(i: int, split: str, anomalous: bool, n: int = 3000, pose: bool = True) -> Sample:
    rng = np.random.default_rng(1000 + i)
    d = _directions(rng, n)
    r = _radius(d)
    mask = np.zeros(n, np.uint8)
    if anomalous:  # a smooth bulge (+2 units) on a random cap of the surface
        c = _directions(rng, 1)[0]
        ang = np.arccos(np.clip(d @ c, -1, 1))
        on = ang < 0.3
        r[on] += 2.0 * np.cos(ang[on] / 0.3 * np.pi / 2)
        mask[on] = 1
    pts = d * r[:, None]
    if pose:
        pts = pts @ _rotation(rng, 0.3).T + rng.normal(scale=2.0, size=3)
    pts = pts - pts.mean(0)
    return Sample(
        id=f"{split}_{i:03d}", dataset="toy", category="blob", split=split,
        defect="bulge" if anomalous else "good", points=pts.astype(np.float32),
        label=int(anomalous), point_mask=mask,
    )  # fmt: skip


@pytest.fixture(scope="module")
def clouds() -> tuple[list[Sample], list[Sample]]:
    train = [cloud_sample(i, "train", False) for i in range(3)]
    test = [cloud_sample(10 + i, "test", i % 2 == 1) for i in range(8)]
    return train, test


def _aurocs(preds, test) -> tuple[float, float]:
    labels = [s.label for s in test]
    obj = roc_auc_score(labels, [p.score for p in preds])
    pts = roc_auc_score(
        np.concatenate([s.point_mask for s in test]),
        np.concatenate([p.point_scores for p in preds]),
    )
    return obj, pts


SMOKE_FAST = {"ransac_iterations": 10000}


# point AUROC floors: raw xyz is only as good as the RANSAC pose (error ~ the bulge height here)
@pytest.mark.parametrize(
    "preset,min_point_auroc",
    [("patchcore_fpfh", 0.85), ("patchcore_raw", 0.62), ("patchcore_fpfh_raw", 0.8)],
)
def test_real3d_presets_detect_bulges(preset: str, min_point_auroc: float, clouds) -> None:
    train, test = clouds
    entry = METHODS.get(preset)
    det = entry.create(**{**entry.smoke, **SMOKE_FAST, "memory_size": 300, "seed": 0})
    det.fit(train)
    preds = list(det.predict_many(test))
    assert len(preds) == len(test)
    for p, s in zip(preds, test):
        p.check_against(s)
        assert p.point_scores.shape == (len(s.points),)
    obj, pts = _aurocs(preds, test)
    print(f"{preset}: object AUROC {obj:.3f} point AUROC {pts:.3f}")
    assert pts > min_point_auroc, pts
    assert obj > 0.75, obj
    assert det.template_id == "train_000"
    assert set(det.timer.per_sample()) >= {"registration", "coreset_" + det.kinds[0]}


def test_fpfh_raw_normalisation_modes(clouds) -> None:
    train, test = clouds
    entry = METHODS.get("patchcore_fpfh_raw")
    det = entry.create(**{**entry.smoke, **SMOKE_FAST, "memory_size": 200})
    assert det.uses_test_statistics
    det.fit(train)
    with pytest.raises(ConfigError, match="predict_many"):
        det.predict(test[0])
    preds = list(det.predict_many(test[:4]))
    scores = np.array([p.score for p in preds])
    # each bank is min-max normalised over the test set, then averaged
    assert scores.min() >= 0 and scores.max() <= 1 and scores.max() > 0.5
    pooled = np.concatenate([p.point_scores for p in preds])
    assert pooled.min() >= 0 and pooled.max() <= 1
    leak_free = entry.create(**{**entry.smoke, **SMOKE_FAST, "memory_size": 200,
                                "normalize": "train"})  # fmt: skip
    assert not leak_free.uses_test_statistics
    leak_free.fit(train)
    leak_free.predict(test[1]).check_against(test[1])  # predict alone is allowed now


def test_real3d_deterministic_and_organized_input(clouds) -> None:
    train, test = clouds
    entry = METHODS.get("patchcore_fpfh")
    runs = []
    for _ in range(2):
        det = entry.create(**{**entry.smoke, **SMOKE_FAST})
        det.fit(train[:2])
        runs.append(det.predict(test[1]))
    assert runs[0].score == runs[1].score
    np.testing.assert_array_equal(runs[0].point_scores, runs[1].point_scores)
    # organized samples are scored through sample.points
    grid = np.zeros((4, 5, 3), np.float32)
    idx = np.arange(20)
    grid.reshape(-1, 3)[:] = np.random.default_rng(0).normal(size=(20, 3))
    s = Sample(id="o", dataset="toy", category="c", split="test", defect="good",
               points=grid.reshape(-1, 3).copy(), label=0, xyz_grid=grid, grid_index=idx)
    det = entry.create(features="raw", memory_size=50, register=False)
    det.fit([s])
    pred = det.predict(s)
    assert pred.point_scores.shape == (20,) and pred.score == pytest.approx(0.0, abs=1e-5)


def test_pointmae_preset_runs_with_random_weights(clouds) -> None:
    train, test = clouds
    entry = METHODS.get("patchcore_pointmae")
    det = entry.create(**{**entry.smoke, **SMOKE_FAST})
    det.fit(train[:2])
    preds = list(det.predict_many(test[:2]))
    for p, s in zip(preds, test):
        p.check_against(s)
        # group scores are copied to points: at most num_group distinct values
        assert len(np.unique(p.point_scores)) <= 32
        assert p.score == pytest.approx(float(p.point_scores.max()))


def test_weights_required_offline() -> None:
    with pytest.raises(WeightsError, match="pretrain"):
        METHODS.create("patchcore_pointmae")
    with pytest.raises(WeightsError):
        METHODS.create("patchcore_rgb")
    with pytest.raises(ConfigError, match="features"):
        METHODS.get("patchcore_fpfh").factory(features="nope")


def test_predict_before_fit_and_bad_voxel() -> None:
    det = METHODS.create("patchcore_raw")
    with pytest.raises(NotFittedError, match="before fit"):
        det.predict(cloud_sample(0, "test", False, n=100))
    with pytest.raises(ConfigError, match="voxel_size"):
        METHODS.create("patchcore_raw", voxel_size=-1)


# ------------------------------------------------------------------ 2D PatchCore on RGB


def rgb_sample(i: int, anomalous: bool, size: int = 64) -> Sample:
    rng = np.random.default_rng(i)
    yy, xx = np.mgrid[0:size, 0:size]
    base = 120 + 60 * np.sin(xx / 5.0) * np.cos(yy / 7.0)
    img = np.stack([base, base * 0.8, 255 - base], -1) + rng.normal(scale=4, size=(size, size, 3))
    mask = np.zeros((size, size), np.uint8)
    if anomalous:
        cy, cx = rng.integers(16, size - 16, 2)
        blob = (yy - cy) ** 2 + (xx - cx) ** 2 < 36
        img[blob] = [250, 20, 20]
        mask[blob] = 1
    grid = np.zeros((size, size, 3), np.float32)
    grid[..., 0], grid[..., 1], grid[..., 2] = xx / size, yy / size, 0.5
    return Sample(
        id=f"rgb_{i}", dataset="toy", category="c", split="test", defect="blob" if anomalous
        else "good", points=grid.reshape(-1, 3).copy(), label=int(anomalous),
        xyz_grid=grid, grid_index=np.arange(size * size), rgb=np.clip(img, 0, 255).astype(np.uint8),
        pixel_mask=mask,
    )  # fmt: skip


def test_patchcore_rgb_end_to_end() -> None:
    entry = METHODS.get("patchcore_rgb")
    det = entry.create(**entry.smoke)
    det.fit([rgb_sample(i, False) for i in range(3)])
    test = [rgb_sample(10 + i, i % 2 == 1) for i in range(4)]
    preds = [det.predict(s) for s in test]
    for p, s in zip(preds, test):
        p.check_against(s)
        assert p.pixel_scores.shape == (64, 64)  # resize 64 -> crop 56 -> padded back to 64
    assert det.bank is not None and len(det.bank) == int(0.1 * 3 * 7 * 7)
    # official embedding: 1024-d patch features on the layer-2 grid (56 / 8 = 7)
    feats, grid = det.embed(det._image(test[0])[0][None])
    assert feats.shape == (49, 1024) and grid == (7, 7)


def test_voxel_size_in_wrong_units_is_reported(clouds) -> None:
    train, _ = clouds
    small = [Sample(**{**s.__dict__, "points": s.points * 1e-3}) for s in train[:1]]
    det = METHODS.create("patchcore_fpfh")  # 0.5 = Real3D-AD millimetres; these are "metres"
    with pytest.raises(ConfigError, match="voxel_size='auto'"):
        det.fit(small)
