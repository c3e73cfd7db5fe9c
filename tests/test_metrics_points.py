"""metrics/points.py: pooled point metrics and the framework-defined point AUPRO."""

from __future__ import annotations

import numpy as np
import pytest

import metrics
from metrics.points import median_spacing, radius_regions


def _grid_cloud(h: int, w: int, spacing: float = 1.0) -> np.ndarray:
    rows, cols = np.mgrid[0:h, 0:w]
    return np.stack([cols.ravel() * spacing, rows.ravel() * spacing, np.zeros(h * w)], 1)


def test_hand_built_cloud_has_the_countable_regions():
    points = _grid_cloud(12, 12)  # unit spacing -> radius 2
    mask = np.zeros((12, 12), bool)
    mask[1:3, 1:3] = True  # region A: a 2x2 square
    mask[3, 3] = True  # diagonal neighbour of A (distance sqrt 2): joins A
    mask[1, 6:9] = True  # region B: a segment, 3 cells right of A
    mask[1, 10] = True  # distance exactly 2 from B: not "closer than r", a region of its own
    mask[9, 9] = True  # region D: isolated
    mask = mask.ravel()
    assert median_spacing(points) == 1.0
    labels = radius_regions(points, mask, radius_factor=2.0)
    assert labels.shape == (mask.sum(),)
    assert len(np.unique(labels)) == 4
    sizes = sorted(np.bincount(labels).tolist())
    assert sizes == [1, 1, 3, 5]
    # a larger factor links B and its neighbour at distance 2
    assert len(np.unique(radius_regions(points, mask, radius_factor=2.5))) == 3


def test_point_aupro_on_a_grid_cloud_equals_the_organized_aupro():
    # On a unit grid, "closer than 2 x spacing" links exactly the 8-neighbours (1 and sqrt 2; the
    # next distance is 2), so the point regions are the image's 8-connected components.
    rng = np.random.default_rng(3)
    h, w = 24, 20
    gts = np.zeros((3, h, w), np.uint8)
    gts[0, 2:6, 3:9] = 1
    gts[0, 8, 8] = 1
    gts[0, 9, 9] = 1  # diagonal: same region
    gts[1, 15:20, 2:4] = 1
    gts[1, 15:20, 5:6] = 1  # one-column gap: a separate region
    maps = np.round(rng.standard_normal(gts.shape) + 1.5 * gts, 1)
    cloud = _grid_cloud(h, w, spacing=0.37)
    points = [cloud] * 3
    scores = [m.ravel() for m in maps]
    masks = [g.ravel() for g in gts]
    for limit in (0.05, 0.3, 1.0):
        assert metrics.point_aupro(points, scores, masks, limit=limit) == pytest.approx(
            metrics.aupro(maps, gts, limit=limit), abs=1e-12)


def test_point_aupro_ignores_point_order_and_duplicate_points():
    rng = np.random.default_rng(4)
    cloud = _grid_cloud(10, 10)
    mask = np.zeros(100, np.uint8)
    mask[[11, 12, 22, 77, 78]] = 1
    scores = rng.random(100) + mask
    ref = metrics.point_aupro([cloud], [scores], [mask])
    perm = rng.permutation(100)
    assert metrics.point_aupro([cloud[perm]], [scores[perm]], [mask[perm]]) == pytest.approx(
        ref, abs=1e-15)
    # an exact duplicate of every point keeps the spacing (zero distances are ignored)
    doubled = metrics.point_aupro([np.concatenate([cloud, cloud])],
                                  [np.concatenate([scores, scores])],
                                  [np.concatenate([mask, mask])])
    assert np.isfinite(doubled)


def test_point_inputs_are_validated():
    with pytest.raises(ValueError, match=r"\(5, 3\).*\(4,\)"):
        metrics.point_aupro([np.zeros((5, 3))], [np.zeros(4)], [np.zeros(4)])
    with pytest.raises(ValueError, match=r"\(4,\).*\(3,\)"):
        metrics.point_auroc([np.zeros(4)], [np.zeros(3)])
    with pytest.raises(ValueError, match="2 scores but 1 masks"):
        metrics.point_aupr([np.zeros(2), np.zeros(2)], [np.ones(2)])


def test_evaluate_reports_point_aupro_with_its_framework_variant():
    rng = np.random.default_rng(5)
    clouds = [rng.random((200, 3)) for _ in range(3)]
    masks = [(c[:, 0] > 0.8).astype(np.uint8) for c in clouds]
    scores = [c[:, 0] + 0.3 * rng.standard_normal(200) for c in clouds]
    res = {r.name: r for r in metrics.evaluate(None, None, point_scores=scores, point_masks=masks,
                                               points=clouds)}
    assert list(res) == ["point_auroc", "point_aupr", "point_aupro"]
    assert res["point_aupro"].variant == "framework_radius_graph,radius_factor=2,limit=0.3"
    assert res["point_aupro"].value == metrics.point_aupro(clouds, scores, masks)
    assert 0.5 < res["point_auroc"].value <= 1.0
