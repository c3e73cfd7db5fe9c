"""Every memory-bank preset end to end on the synthetic tree of each format it supports (through
the real loaders). Weight-free presets must beat chance; presets that need pretrained weights run
with their smoke arguments (pretrained=False) and are only checked for well-formed output.
The default suite keeps the weight-free cases below (the weighted presets run with random
weights in test_patchcore.py / test_btf.py); the full matrix is marked slow."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from benchmark.registry import DATASETS, METHODS

FAST = {
    ("patchcore_fpfh", "real3d"),
    ("patchcore_fpfh_raw", "anomaly_shapenet"),
    ("patchcore_raw", "mvtec3d"),
    ("btf_fpfh", "mvtec3d"),
    ("btf_raw", "eyecandies"),
}
UNORGANIZED = ("real3d", "anomaly_shapenet")
ORGANIZED = ("mvtec3d", "eyecandies")
CASES = [
    (p, f)
    for p in ("patchcore_fpfh", "patchcore_raw", "patchcore_fpfh_raw", "patchcore_pointmae")
    for f in UNORGANIZED + ORGANIZED
] + [(p, f) for p in ("btf_raw", "btf_fpfh", "btf_rgb", "btf_rgb_fpfh", "patchcore_rgb")
     for f in ORGANIZED]  # fmt: skip
#: floors on the pooled dense AUROC (point AUROC, or pixel AUROC on the native grid) of the
#: weight-free presets; object AUROC on 7 test samples (3 normal, 4 anomalous) moves in steps of
#: 1/12 and is only printed. Raw xyz / raw depth are not asserted: the synthetic defects displace
#: points by about the sampling spacing, below what raw coordinates resolve after a RANSAC pose.
FLOORS = {"patchcore_fpfh": 0.8, "patchcore_fpfh_raw": 0.6, "btf_fpfh": 0.7}
#: the Real3D-AD recipe with a smaller RANSAC budget and bank for the tiny synthetic clouds
FAST_ARGS = {"ransac_iterations": 10000, "memory_size": 1000}


def _params():
    for preset, fmt in CASES:
        marks = () if (preset, fmt) in FAST else (pytest.mark.slow,)
        yield pytest.param(preset, fmt, marks=marks, id=f"{preset}-{fmt}")


@pytest.mark.parametrize("preset,fmt", list(_params()))
def test_preset_on_synthetic(preset: str, fmt: str) -> None:
    ds = DATASETS.create("synthetic", format=fmt, size="small", categories=1)
    cat = ds.categories[0]
    entry = METHODS.get(preset)
    args = dict(entry.smoke)
    if preset.startswith("patchcore_") and preset != "patchcore_rgb":
        args.update(FAST_ARGS)
    det = entry.create(**args)
    det.fit(ds.train(cat))
    test = list(ds.test(cat))
    preds = list(det.predict_many(test))
    assert len(preds) == len(test)
    for p, s in zip(preds, test):
        p.check_against(s)
    labels = [s.label for s in test]
    obj = roc_auc_score(labels, [p.score for p in preds])
    pts = None
    line = f"{preset} on synthetic {fmt}/{cat}: object AUROC {obj:.3f}"
    if preds[0].point_scores is not None:
        pts = roc_auc_score(np.concatenate([s.point_mask for s in test]),
                            np.concatenate([p.point_scores for p in preds]))  # fmt: skip
        line += f", point AUROC {pts:.3f}"
        print(line)
    dense = pts
    if preds[0].pixel_scores is not None:
        dense = _pixel_auroc(preds, test)
        line += f", pixel AUROC {dense:.3f}"
        print(line)
    if preset in FLOORS:
        assert dense >= FLOORS[preset], line


def _pixel_auroc(preds, test) -> float:
    import torch
    import torch.nn.functional as F

    maps, gts = [], []
    for p, s in zip(preds, test):
        m = torch.from_numpy(p.pixel_scores)[None, None]
        m = F.interpolate(m, size=s.grid_shape, mode="bilinear", align_corners=False)
        maps.append(m[0, 0].numpy().ravel())
        gt = s.pixel_mask if s.pixel_mask is not None else np.zeros(s.grid_shape, np.uint8)
        gts.append(gt.ravel())
    return roc_auc_score(np.concatenate(gts), np.concatenate(maps))
