"""The data contracts reject each kind of bad input with a message naming the field."""

from __future__ import annotations

import numpy as np
import pytest

from benchmark.errors import BenchmarkError, ContractError
from benchmark.sample import Prediction, Sample


def make_sample(**overrides):
    pts = np.random.default_rng(0).random((10, 3), dtype=np.float32)
    fields = dict(
        id="000", dataset="toy", category="cat", split="test", defect="good", points=pts, label=0
    )
    fields.update(overrides)
    return Sample(**fields)


def make_organized(**overrides):
    grid = np.zeros((4, 5, 3), np.float32)
    grid[1:3, 1:4] = 1.0
    idx = np.flatnonzero(grid[..., 2].ravel() != 0).astype(np.int64)
    pts = grid.reshape(-1, 3)[idx]
    fields = dict(points=pts, xyz_grid=grid, grid_index=idx)
    fields.update(overrides)
    return make_sample(**fields)


def test_valid_samples_pass():
    s = make_sample(point_mask=np.zeros(10, np.uint8))
    assert not s.organized
    o = make_organized(rgb=np.zeros((4, 5, 3), np.uint8), pixel_mask=np.zeros((4, 5), np.uint8))
    assert o.organized and o.grid_shape == (4, 5)


@pytest.mark.parametrize(
    "field, value, words",
    [
        ("points", np.zeros((10, 3), np.float64), ["points", "float32"]),
        ("points", np.zeros((10, 2), np.float32), ["points", "shape"]),
        ("points", np.zeros((0, 3), np.float32), ["points", "empty"]),
        ("points", np.full((10, 3), np.nan, np.float32), ["points", "non-finite"]),
        ("points", [[0.0, 0.0, 0.0]], ["points", "numpy array"]),
        ("point_mask", np.zeros(9, np.uint8), ["point_mask", "shape"]),
        ("point_mask", np.zeros(10, np.int64), ["point_mask", "uint8"]),
        ("label", 2, ["label"]),
        ("split", "val", ["split"]),
        ("category", "", ["category"]),
    ],
)
def test_bad_unorganized_fields(field, value, words):
    with pytest.raises(ContractError) as info:
        make_sample(**{field: value})
    assert isinstance(info.value, BenchmarkError)
    for word in words:
        assert word in str(info.value)


def test_normal_sample_with_anomalous_points_rejected():
    mask = np.zeros(10, np.uint8)
    mask[3] = 1
    with pytest.raises(ContractError, match="point_mask"):
        make_sample(point_mask=mask, label=0)
    make_sample(point_mask=mask, label=1, defect="bulge")


@pytest.mark.parametrize(
    "field, value",
    [
        ("rgb", np.zeros((5, 4, 3), np.uint8)),
        ("rgb", np.zeros((4, 5, 3), np.float32)),
        ("pixel_mask", np.zeros((4, 4), np.uint8)),
        ("grid_index", np.arange(6, dtype=np.int32)),
        ("grid_index", np.full(6, 99, np.int64)),
        ("xyz_grid", np.zeros((4, 5), np.float32)),
    ],
)
def test_bad_organized_fields(field, value):
    with pytest.raises(ContractError, match=field):
        make_organized(**{field: value})


def test_grid_fields_need_a_grid():
    with pytest.raises(ContractError, match="rgb"):
        make_sample(rgb=np.zeros((4, 5, 3), np.uint8))
    with pytest.raises(ContractError, match="grid_index"):
        make_organized(grid_index=None)


def test_prediction_validation():
    p = Prediction(score=1, point_scores=np.zeros(10, np.float64))
    assert p.point_scores.dtype == np.float32 and isinstance(p.score, float)
    with pytest.raises(ContractError, match="score"):
        Prediction(score=float("nan"))
    with pytest.raises(ContractError, match="score"):
        Prediction(score="high")
    with pytest.raises(ContractError, match="point_scores"):
        Prediction(score=0.0, point_scores=np.array([0.0, np.inf], np.float32))
    with pytest.raises(ContractError, match="point_scores"):
        Prediction(score=0.0, point_scores=np.zeros((2, 2), np.float32))
    with pytest.raises(ContractError, match="pixel_scores"):
        Prediction(score=0.0, pixel_scores=np.zeros(4, np.float32))
    with pytest.raises(ContractError, match="point_scores"):
        Prediction(score=0.0, point_scores=np.zeros(3, np.int64))


def test_prediction_check_against_sample():
    s = make_sample()
    Prediction(0.0, point_scores=np.zeros(10, np.float32)).check_against(s)
    with pytest.raises(ContractError, match="one per point"):
        Prediction(0.0, point_scores=np.zeros(9, np.float32)).check_against(s)
    with pytest.raises(ContractError, match="organized"):
        Prediction(0.0, pixel_scores=np.zeros((3, 3), np.float32)).check_against(s)
