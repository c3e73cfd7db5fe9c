"""BTF presets end to end on small organized scans (plus the official patch layouts)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from benchmark.errors import ConfigError, ContractError, NotFittedError, WeightsError
from benchmark.registry import METHODS
from benchmark.sample import Sample


def scan_sample(i: int, anomalous: bool, size: int = 64, split: str = "test") -> Sample:
    """An organized height-field scan (metres, like MVTec 3D-AD) of a smooth wavy object on a
    missing background; anomalies are dents of 4 mm (also darkened in the RGB image)."""
    rng = np.random.default_rng(i)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    x, y = (xx / size - 0.5) * 0.1, (yy / size - 0.5) * 0.1
    z = 0.3 + 0.004 * np.sin(x * 90) * np.cos(y * 70) + rng.normal(scale=2e-5, size=x.shape)
    inside = (x / 0.045) ** 2 + (y / 0.04) ** 2 < 1
    mask = np.zeros((size, size), np.uint8)
    rgb = np.stack([120 + 80 * np.sin(xx / 6), 90 + 40 * np.cos(yy / 5), 60 + 0 * xx], -1)
    if anomalous:
        cy, cx = rng.integers(size // 4, 3 * size // 4, 2)
        r2 = ((yy - cy) ** 2 + (xx - cx) ** 2) / (size / 12) ** 2
        dent = (r2 < 1) & inside
        z = z - 0.004 * np.exp(-r2) * dent
        mask[dent] = 1
        rgb[dent] = [30, 30, 30]
    grid = np.stack([x, y, z], -1).astype(np.float32)
    grid[~inside] = 0
    idx = np.flatnonzero(inside.reshape(-1))
    rgb[~inside] = 0
    return Sample(
        id=f"{split}_{i:03d}", dataset="toy", category="wave", split=split,
        defect="dent" if anomalous else "good", points=grid.reshape(-1, 3)[idx].copy(),
        label=int(anomalous), xyz_grid=grid, grid_index=idx.astype(np.int64),
        rgb=rgb.clip(0, 255).astype(np.uint8), pixel_mask=mask,
    )  # fmt: skip


@pytest.fixture(scope="module")
def scans() -> tuple[list[Sample], list[Sample]]:
    # 12 near-identical train scans: the 10 % coreset (58 of 588 patches) can cover all 49
    # patch positions, as it does on real data with hundreds of train scans
    train = [scan_sample(i, False, split="train") for i in range(12)]
    test = [scan_sample(100 + i, i % 2 == 1) for i in range(8)]
    return train, test


def _pixel_auroc(preds, test, size: int) -> float:
    import torch.nn.functional as F

    maps, gts = [], []
    for p, s in zip(preds, test):
        m = torch.from_numpy(p.pixel_scores)[None, None]
        maps.append(F.interpolate(m, size=(size, size), mode="bilinear")[0, 0].numpy().ravel())
        gts.append(s.pixel_mask.ravel())
    return roc_auc_score(np.concatenate(gts), np.concatenate(maps))


@pytest.mark.parametrize("preset", ["btf_fpfh", "btf_raw"])
def test_btf_weight_free_presets_detect_dents(preset: str, scans) -> None:
    train, test = scans
    entry = METHODS.get(preset)
    det = entry.create(**entry.smoke)
    det.fit(train)
    preds = list(det.predict_many(test))
    for p, s in zip(preds, test):
        p.check_against(s)
        assert p.pixel_scores.shape == (56, 56)
    obj = roc_auc_score([s.label for s in test], [p.score for p in preds])
    pix = _pixel_auroc(preds, test, 64)
    print(f"{preset}: image AUROC {obj:.3f} pixel AUROC {pix:.3f}")
    assert obj > 0.7 and pix > 0.7, (obj, pix)
    # 10 % coreset of all train patches
    assert len(det.bank) == int(0.1 * 12 * 49)


def test_btf_raw_patch_layout_is_memory_reshape() -> None:
    det = METHODS.create("btf_raw")
    s = scan_sample(0, False, size=224)
    p = det.patches(s)
    assert p.shape == (784, 64)
    depth = s.xyz_grid[:, :, 2]  # already 224: the nearest resize is the identity
    np.testing.assert_array_equal(p[1], depth.reshape(-1)[64:128])  # not an 8x8 spatial block


def test_btf_fpfh_patch_pooling() -> None:
    det = METHODS.create("btf_fpfh", image_size=56, patch_grid=7)
    p = det.patches(scan_sample(0, False))
    assert p.shape == (49, 33) and np.isfinite(p).all()
    assert (p.sum(1) > 0).sum() > 10  # object patches carry FPFH mass, background ones do not


@pytest.mark.parametrize("preset", ["btf_rgb", "btf_rgb_fpfh"])
def test_btf_rgb_presets_run(preset: str, scans) -> None:
    train, test = scans
    entry = METHODS.get(preset)
    det = entry.create(**entry.smoke)
    det.fit(train[:2])
    pred = det.predict(test[1])
    pred.check_against(test[1])
    width = 1536 + (33 if preset == "btf_rgb_fpfh" else 0)
    assert det.bank.dim == width
    assert pred.pixel_scores.shape == (56, 56)


def test_btf_errors() -> None:
    with pytest.raises(WeightsError):
        METHODS.create("btf_rgb")
    det = METHODS.create("btf_fpfh")
    unorganized = Sample(id="u", dataset="toy", category="c", split="test", defect="good",
                         points=np.zeros((5, 3), np.float32), label=0)  # fmt: skip
    with pytest.raises(ContractError, match="organized"):
        det.patches(unorganized)
    with pytest.raises(NotFittedError, match="before fit"):
        det.predict(scan_sample(0, False))
    with pytest.raises(ConfigError, match="voxel_size"):
        METHODS.create("btf_fpfh", voxel_size="auto")
