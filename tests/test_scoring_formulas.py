"""Scoring formulas pinned: each method's scoring code fed stubbed model outputs, against the
formula written out here (PointAD+ paper §3.6.2 and PointAD's test.py; PatchCore's kNN score).

G_sigma below is scipy's gaussian_filter (sigma 4, reflect borders), the blur both official codes
use; softmax and nearest neighbours are written with numpy.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from scipy import ndimage

from benchmark.components.memory_bank import FeatureBank
from benchmark.registry import METHODS
from benchmark.sample import Sample
from methods.pointad import detector as pointad_detector

SIGMA = 4.0
TEMPERATURE = 0.07


def G(m: np.ndarray) -> np.ndarray:
    return ndimage.gaussian_filter(np.asarray(m, np.float64), sigma=SIGMA)


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


# ---------------------------------------------------------------------------------------------
# PointAD / PointAD+ with a stubbed CLIP engine, renderer and aggregator

V, RGB_SIDE, GRID = 3, 8, 5  # views, stub image size, organized grid side
RNG = np.random.default_rng(7)
VIEW_LOGITS = RNG.normal(size=(V, 2)).astype(np.float32)  # global logits per view
VIEW_MAPS = RNG.random((V, 2, RGB_SIDE, RGB_SIDE)).astype(np.float32)  # [normal, abnormal]
RGB_LOGITS = RNG.normal(size=(1, 2)).astype(np.float32)
RGB_MAPS = RNG.random((1, 2, GRID, GRID)).astype(np.float32)


class StubEngine:
    """Passes the stubbed logits / maps through: views (batch V) or the RGB image (batch 1)."""

    learnable = True
    image_size = RGB_SIDE
    grid_hw = (2, 2)
    device = torch.device("cpu")

    def text_features(self, category, geometry=False):
        return torch.zeros(2, 4)

    def encode_views(self, images):
        if len(images) == 1:
            return torch.from_numpy(RGB_LOGITS), torch.from_numpy(RGB_MAPS)
        assert len(images) == V
        return torch.from_numpy(VIEW_LOGITS), torch.from_numpy(VIEW_MAPS)

    def global_logits(self, gfeat, text):
        return gfeat

    def similarity_maps(self, pfeat, text):
        return pfeat


def _pointad(monkeypatch, preset: str, cloud, implicit: np.ndarray, explicit_cos=None, **kw):
    det = METHODS.create(preset, **{**METHODS.get(preset).smoke, **kw})
    det.engine, det.trained = StubEngine(), True

    def backproject(render, maps):
        np.testing.assert_array_equal(maps, VIEW_MAPS[:, 1])  # the abnormal channel
        return implicit.copy()

    class Aggregator:
        def explicit_logits(self, pfeat, text):
            return torch.from_numpy(explicit_cos)

    monkeypatch.setattr(pointad_detector, "prepare_cloud", lambda *a, **k: cloud)
    monkeypatch.setattr(pointad_detector.rd, "backproject", backproject)
    monkeypatch.setattr(pointad_detector, "make_aggregator", lambda *a, **k: Aggregator())
    return det


def _cloud(points, **kw):
    fields = {"grid_hw": None, "cells": None, "native_cells": None, "resampled": False, **kw}
    return SimpleNamespace(points=points, render=SimpleNamespace(images=np.zeros((V, 1))),
                           **fields)


def _unorganized(n: int, seed: int = 0) -> Sample:
    pts = np.random.default_rng(seed).normal(size=(n, 3)).astype(np.float32)
    return Sample(id="u", dataset="real3d", category="shell", split="test", defect="good",
                  points=pts, label=0)


VIEW_PROB = softmax(VIEW_LOGITS.astype(np.float64))[:, 1].mean()


def reshape_blur(point_map: np.ndarray) -> np.ndarray:
    """Official test_only_point.py: the point list zero-padded to a square, blurred, cut back."""
    n = len(point_map)
    side = math.ceil(math.sqrt(n))
    sq = np.zeros(side * side)
    sq[:n] = point_map
    return G(sq.reshape(side, side)).reshape(-1)[:n]


def test_pointad_object_score_and_reshape_blur(monkeypatch):
    n = 11  # a 4x4 square with 5 padded zeros
    sample = _unorganized(n)
    implicit = RNG.random(n).astype(np.float32)
    det = _pointad(monkeypatch, "pointad", _cloud(sample.points), implicit)
    pred = det.predict(sample)
    blurred = reshape_blur(implicit)
    np.testing.assert_allclose(pred.point_scores, blurred, rtol=1e-5, atol=1e-6)
    # A^s = 0.5 mean-view probability + 0.5 max(A^m)
    assert pred.score == pytest.approx(0.5 * VIEW_PROB + 0.5 * blurred.max(), rel=1e-6)
    assert pred.pixel_scores is None
    det.point_blur = "none"
    plain = det.predict(sample)
    np.testing.assert_allclose(plain.point_scores, implicit, rtol=1e-6)
    assert plain.score == pytest.approx(0.5 * VIEW_PROB + 0.5 * implicit.max(), rel=1e-6)


def test_pointad_plus_fuses_explicit_and_implicit_maps_and_maps_back_to_native_points(
        monkeypatch):
    native = _unorganized(40, seed=1)
    rendered = native.points[::3] + np.float32(0.01)  # a resampled cloud of 14 points
    m = len(rendered)
    implicit = RNG.random(m).astype(np.float32)
    cos = RNG.uniform(-1, 1, size=(m, 2)).astype(np.float32)
    det = _pointad(monkeypatch, "pointad_plus", _cloud(rendered, resampled=True), implicit,
                   explicit_cos=cos, point_blur="none")
    pred = det.predict(native)
    explicit = softmax(cos.astype(np.float64) / TEMPERATURE)[:, 1]
    fused = 0.5 * implicit + 0.5 * explicit  # 0.5 S_a + 0.5 T_a
    assert pred.score == pytest.approx(0.5 * VIEW_PROB + 0.5 * fused.max(), rel=1e-6)
    # each native point reads its nearest rendered point
    d = np.linalg.norm(native.points[:, None] - rendered[None], axis=-1)
    np.testing.assert_allclose(pred.point_scores, fused[d.argmin(1)], rtol=1e-5)


def _organized_case():
    """A 5x5 organized sample with 3 empty cells, rendered as its 22 points (grid cells)."""
    cells = np.setdiff1d(np.arange(GRID * GRID), [0, 7, 24])
    grid = np.zeros((GRID * GRID, 3), np.float32)
    grid[cells] = RNG.normal(size=(len(cells), 3)).astype(np.float32) + 5
    rgb = (RNG.random((GRID, GRID, 3)) * 255).astype(np.uint8)
    sample = Sample(id="o", dataset="mvtec3d", category="bagel", split="test", defect="good",
                    points=grid[cells], label=0, xyz_grid=grid.reshape(GRID, GRID, 3),
                    grid_index=cells.astype(np.int64), rgb=rgb)
    # rendered points in a shuffled order; native point j lives in cell cells[j]
    order = RNG.permutation(len(cells))
    cloud = _cloud(grid[cells][order], grid_hw=(GRID, GRID), cells=cells[order],
                   native_cells=cells)
    return sample, cloud


def test_pointad_plus_organized_map_score_and_native_points(monkeypatch):
    sample, cloud = _organized_case()
    m = len(cloud.points)
    implicit = RNG.random(m).astype(np.float32)
    cos = RNG.uniform(-1, 1, size=(m, 2)).astype(np.float32)
    det = _pointad(monkeypatch, "pointad_plus", cloud, implicit, explicit_cos=cos)
    pred = det.predict(sample)
    fused = 0.5 * implicit + 0.5 * softmax(cos.astype(np.float64) / TEMPERATURE)[:, 1]
    grid = np.zeros(GRID * GRID)
    grid[cloud.cells] = fused
    a_m = G(grid.reshape(GRID, GRID))  # A^m = G_sigma(point map on the grid)
    np.testing.assert_allclose(pred.pixel_scores, a_m, rtol=1e-5, atol=1e-6)
    assert pred.score == pytest.approx(0.5 * VIEW_PROB + 0.5 * a_m.max(), rel=1e-6)
    np.testing.assert_allclose(pred.point_scores, a_m.reshape(-1)[sample.grid_index],
                               rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("scoring", ["paper", "official"])
def test_m3d_formulas(monkeypatch, scoring):
    sample, cloud = _organized_case()
    implicit = RNG.random(len(cloud.points)).astype(np.float32)
    det = _pointad(monkeypatch, "pointad", cloud, implicit, modality="points+rgb",
                   m3d_scoring=scoring)
    pred = det.predict(sample)
    grid = np.zeros(GRID * GRID)
    grid[cloud.cells] = implicit
    a_m = G(grid.reshape(GRID, GRID))
    a_s = 0.5 * VIEW_PROB + 0.5 * a_m.max()
    rgb_prob = softmax(RGB_LOGITS.astype(np.float64))[0, 1]
    normal, abnormal = RGB_MAPS[0].astype(np.float64)
    if scoring == "paper":
        # map G(0.5 A^m + 0.5 G(abnormal RGB map)); score 0.5 (0.5 A^s(rgb) + 0.5 A^s)
        # + 0.5 max(map)
        final = G(0.5 * a_m + 0.5 * G(abnormal))
        score = 0.5 * (0.5 * rgb_prob + 0.5 * a_s) + 0.5 * final.max()
    else:
        # PointAD test.py: colour G((s_ab + 1 - s_norm) / 2); map G((A^m + colour) / 2);
        # score max(map) + mean of the two global probabilities
        final = G((a_m + G((abnormal + 1 - normal) / 2)) / 2)
        score = final.max() + 0.5 * (rgb_prob + VIEW_PROB)
    np.testing.assert_allclose(pred.pixel_scores, final, rtol=1e-5, atol=1e-6)
    assert pred.score == pytest.approx(score, rel=1e-6)
    np.testing.assert_allclose(pred.point_scores, final.reshape(-1)[sample.grid_index],
                               rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------------------------------
# PatchCore2D (patchcore_rgb): stubbed patch features, a tiny bank, a hand-computed kNN


def test_patchcore_rgb_score_and_map_against_hand_knn(monkeypatch):
    det = METHODS.create("patchcore_rgb", **METHODS.get("patchcore_rgb").smoke)  # 64 -> crop 56
    bank = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 2.0]], np.float32)
    det.bank = FeatureBank(bank, backend="torch")
    h = w = 3
    feats = np.array([[0, 0], [1, 1], [3, 0], [0, 2], [0.5, 0], [0, -1], [1, 0], [2, 2], [0, 1]],
                     np.float32)
    monkeypatch.setattr(det, "embed", lambda images: (torch.from_numpy(feats), (h, w)))
    rgb = (RNG.random((16, 16, 3)) * 255).astype(np.uint8)
    grid = np.ones((16, 16, 3), np.float32)
    sample = Sample(id="r", dataset="mvtec3d", category="bagel", split="test", defect="good",
                    points=grid.reshape(-1, 3), label=0, xyz_grid=grid,
                    grid_index=np.arange(256, dtype=np.int64), rgb=rgb)
    pred = det.predict(sample)
    # squared L2 to the nearest bank row, worked out by hand for the 9 patches:
    # (0,0)->0, (1,1)->1, (3,0)->4, (0,2)->0, (.5,0)->.25, (0,-1)->1, (1,0)->0, (2,2)->4, (0,1)->1
    patch = np.array([[0, 1, 4], [0, 0.25, 1], [0, 4, 1]])
    assert pred.score == pytest.approx(patch.max())  # image score = max patch score
    # map: bilinear 3x3 -> 56x56 crop, G_sigma, edge-padded to the 64x64 resized frame
    up = torch.nn.functional.interpolate(torch.tensor(patch, dtype=torch.float32)[None, None],
                                         size=(56, 56), mode="bilinear", align_corners=False)
    expected = np.pad(G(up[0, 0].numpy()), ((4, 4), (4, 4)), mode="edge")
    assert pred.pixel_scores.shape == (64, 64)
    np.testing.assert_allclose(pred.pixel_scores, expected, rtol=1e-5, atol=1e-5)
