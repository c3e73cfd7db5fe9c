"""benchmark.components.geometry.descriptors / registration / grid / blur."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from benchmark.components.blur import btf_blur, gaussian_blur
from benchmark.components.geometry.descriptors import estimate_normals, fpfh, voxel_down_sample
from benchmark.components.geometry.organized import (
    grid_to_points,
    points_to_grid,
    resize_grid,
    resize_maps,
    square_pad,
    square_pad_widths,
    valid_cells,
)
from benchmark.components.geometry.registration import (
    REAL3D_AXIS_PERMUTATION,
    apply_transform,
    global_registration,
    icp,
    register_to_template,
)
from benchmark.errors import ContractError


def _asymmetric_shape(n: int = 4000, seed: int = 0) -> np.ndarray:
    """A box with a bump and a rod: no rotational symmetry, so registration is well posed."""
    rng = np.random.default_rng(seed)
    box = rng.uniform([-10, -6, -3], [10, 6, 3], size=(n, 3))
    face = rng.integers(0, 3, n)
    side = np.where(rng.random(n) < 0.5, -1.0, 1.0)
    half = np.array([10, 6, 3.0])
    box[np.arange(n), face] = side * half[face]
    t = rng.uniform(0, 2 * np.pi, n // 4)
    bump = np.stack([4 + 2 * np.cos(t), 2 + 2 * np.sin(t), 3 + rng.uniform(0, 4, n // 4)], 1)
    rod = np.stack([rng.uniform(-10, -2, n // 4), -6 - rng.uniform(0, 3, n // 4),
                    rng.uniform(-1, 1, n // 4)], 1)
    return np.concatenate([box, bump, rod]).astype(np.float32)


def _rotation(axis: np.ndarray, angle: float) -> np.ndarray:
    axis = axis / np.linalg.norm(axis)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * k @ k


def test_normals_and_fpfh_shapes() -> None:
    rng = np.random.default_rng(0)
    xy = rng.uniform(-1, 1, size=(500, 2))
    plane = np.c_[xy, np.zeros(500)].astype(np.float32)
    n = estimate_normals(plane, radius=0.5, max_nn=30)
    assert n.shape == (500, 3) and n.dtype == np.float32
    np.testing.assert_allclose(np.abs(n[:, 2]), 1.0, atol=1e-5)
    f = fpfh(plane, 0.5, 30, 1.0, 100)
    assert f.shape == (500, 33) and f.dtype == np.float32 and np.isfinite(f).all()
    down = voxel_down_sample(plane, 0.5)
    assert 0 < len(down) < 500
    with pytest.raises(ContractError, match="voxel_size"):
        voxel_down_sample(plane, 0)
    with pytest.raises(ContractError, match="shape"):
        fpfh(np.zeros((4, 2), np.float32))


def test_apply_transform() -> None:
    t = np.eye(4)
    t[:3, :3] = _rotation(np.array([0, 0, 1.0]), np.pi / 2)
    t[:3, 3] = [1, 2, 3]
    out = apply_transform(np.array([[1, 0, 0]], np.float32), t)
    np.testing.assert_allclose(out, [[1, 3, 3]], atol=1e-6)
    perm = apply_transform(np.array([[1, 2, 3]], np.float32), REAL3D_AXIS_PERMUTATION)
    np.testing.assert_allclose(perm, [[3, 1, 2]])  # x <- z, y <- x, z <- y


def test_global_registration_recovers_known_transform() -> None:
    target = _asymmetric_shape()
    target -= target.mean(0)
    truth = np.eye(4)
    truth[:3, :3] = _rotation(np.array([0.3, -0.5, 0.8]), 1.1)
    truth[:3, 3] = [5.0, -3.0, 2.0]
    source = apply_transform(target, np.linalg.inv(truth))  # source -> target is `truth`
    res = global_registration(source, target, voxel_size=0.5, seed=0, max_iteration=20000)
    refined = icp(source, target, threshold=0.5, init=res.transform)
    err = np.abs(refined.transform - truth).max()
    assert err < 0.05, (err, res.fitness)
    # seeded: the same call twice gives the same pose
    res2 = global_registration(source, target, voxel_size=0.5, seed=0, max_iteration=20000)
    np.testing.assert_array_equal(res.transform, res2.transform)
    moved, full = register_to_template(source, target, seed=0, max_iteration=20000)
    assert moved.shape == source.shape and full.shape == (4, 4)
    # RANSAC alone is accurate to about the voxel size; a wrong pose is off by ~10
    assert np.median(np.linalg.norm(moved - target, axis=1)) < 1.5


def test_grid_roundtrip_and_validity() -> None:
    grid = np.zeros((3, 4, 3), np.float32)
    grid[0, 1] = [1, 2, 3]
    grid[2, 3] = [4, 0, 6]
    valid = valid_cells(grid)
    idx = np.flatnonzero(valid.reshape(-1))
    assert idx.tolist() == [1, 11]
    pts = grid_to_points(grid, idx)
    np.testing.assert_array_equal(pts, [[1, 2, 3], [4, 0, 6]])
    np.testing.assert_array_equal(points_to_grid(pts, idx, (3, 4)), grid)
    assert valid_cells(grid, all_nonzero=True).sum() == 1
    with pytest.raises(ContractError):
        points_to_grid(pts[:1], idx, (3, 4))


def test_resize_follows_torch_interpolate() -> None:
    rng = np.random.default_rng(0)
    m = rng.random((10, 7)).astype(np.float32)
    near = resize_maps(m, (5, 14), mode="nearest")
    # torch nearest: source index floor(i * in / out)
    rows = np.floor(np.arange(5) * 10 / 5).astype(int)
    cols = np.floor(np.arange(14) * 7 / 14).astype(int)
    np.testing.assert_array_equal(near, m[rows][:, cols])
    bil = resize_maps(torch.from_numpy(m)[None], 20)
    assert isinstance(bil, torch.Tensor) and bil.shape == (1, 20, 20)
    g = rng.random((8, 8, 3)).astype(np.float32)
    out = resize_grid(g, 4)
    np.testing.assert_array_equal(out, g[::2, ::2])


def test_square_pad_like_btf() -> None:
    assert square_pad_widths(400, 600) == ((100, 100), (0, 0))
    assert square_pad_widths(350, 380) == ((25, 25), (10, 10))
    assert square_pad_widths(399, 400) == ((0, 1), (0, 0))
    arr = np.ones((350, 380, 3), np.uint8)
    out = square_pad(arr)
    assert out.shape == (400, 400, 3) and out.sum() == arr.sum()
    assert out[25, 10].all() and not out[24, 10].any()


def test_gaussian_blur_matches_scipy_and_keeps_mass() -> None:
    m = np.zeros((41, 41), np.float32)
    m[20, 20] = 1.0
    out = gaussian_blur(m, sigma=4.0)
    assert out.dtype == np.float32
    assert out.sum() == pytest.approx(1.0, rel=1e-3)
    assert out[20, 20] == pytest.approx(1 / (2 * np.pi * 16), rel=0.02)
    batch = gaussian_blur(torch.from_numpy(np.stack([m, 2 * m])))
    assert isinstance(batch, torch.Tensor)
    np.testing.assert_allclose(batch[1].numpy(), 2 * out, rtol=1e-5)


def test_btf_blur_quantises_to_8_bit() -> None:
    from PIL import Image, ImageFilter

    rng = np.random.default_rng(1)
    m = (rng.random((32, 32)) * 3).astype(np.float32)
    out = btf_blur(m)
    q = ((m / m.max()) * 255).astype(np.uint8)  # truncation, as torchvision's ToPILImage
    ref = np.asarray(Image.fromarray(q).filter(ImageFilter.GaussianBlur(4)), np.float32)
    np.testing.assert_allclose(out, ref / 255 * m.max(), rtol=1e-6)
    # the result is a multiple of max/255: 8-bit quantisation survives
    steps = out / (m.max() / 255)
    np.testing.assert_allclose(steps, np.round(steps), atol=1e-3)
    assert np.all(btf_blur(np.zeros((4, 4), np.float32)) == 0)
