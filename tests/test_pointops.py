"""geometry.pointops: kNN, FPS, grouping, chamfer, propagation (numpy/torch, backends agree)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from benchmark.components.geometry.pointops import (
    chamfer_distance,
    farthest_point_sample,
    group_knn,
    has_pytorch3d,
    knn,
    propagate_nearest,
)
from benchmark.errors import ContractError


def _brute(q: np.ndarray, r: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    d = np.sqrt(((q[:, None, :].astype(np.float64) - r[None]) ** 2).sum(-1))
    idx = np.argsort(d, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(d, idx, 1), idx


@pytest.mark.parametrize("backend", ["scipy", "torch", "auto"])
def test_knn_matches_brute_force(backend: str) -> None:
    rng = np.random.default_rng(0)
    q = rng.normal(size=(57, 3)).astype(np.float32)
    r = rng.normal(size=(301, 3)).astype(np.float32)
    d, i = knn(q, r, 5, chunk_size=7, backend=backend)
    d_ref, i_ref = _brute(q, r, 5)
    assert isinstance(d, np.ndarray) and d.dtype == np.float32 and i.dtype == np.int64
    assert d.shape == (57, 5)
    np.testing.assert_array_equal(i, i_ref)
    np.testing.assert_allclose(d, d_ref, rtol=1e-4, atol=1e-5)
    assert np.all(np.diff(d, axis=1) >= 0)


def test_knn_high_dim_and_torch_io() -> None:
    rng = np.random.default_rng(1)
    q = torch.from_numpy(rng.normal(size=(40, 33)).astype(np.float32))
    r = torch.from_numpy(rng.normal(size=(90, 33)).astype(np.float32))
    d, i = knn(q, r, 3, chunk_size=16)
    assert isinstance(d, torch.Tensor) and i.dtype == torch.int64
    d_ref, i_ref = _brute(q.numpy(), r.numpy(), 3)
    np.testing.assert_array_equal(i.numpy(), i_ref)
    np.testing.assert_allclose(d.numpy(), d_ref, rtol=1e-4, atol=1e-4)


def test_knn_batched() -> None:
    rng = np.random.default_rng(2)
    q = rng.normal(size=(2, 10, 3)).astype(np.float32)
    r = rng.normal(size=(2, 30, 3)).astype(np.float32)
    d, i = knn(q, r, 4)
    assert i.shape == (2, 10, 4)
    for b in range(2):
        np.testing.assert_array_equal(i[b], _brute(q[b], r[b], 4)[1])


def test_knn_bad_input() -> None:
    with pytest.raises(ContractError, match="k=5"):
        knn(np.zeros((3, 3), np.float32), np.zeros((4, 3), np.float32), 5)
    with pytest.raises(ContractError, match="incompatible"):
        knn(np.zeros((3, 3), np.float32), np.zeros((4, 2), np.float32), 1)
    with pytest.raises(ContractError, match="empty"):
        knn(np.zeros((0, 3), np.float32), np.zeros((4, 3), np.float32), 1)


def _fps_reference(x: np.ndarray, n: int, start: int) -> list[int]:
    out, mind, cur = [], np.full(len(x), np.inf), start
    for _ in range(n):
        out.append(cur)
        mind = np.minimum(mind, ((x - x[cur]) ** 2).sum(1))
        cur = int(np.argmax(mind))
    return out


def test_fps_hand_case() -> None:
    # on a line, FPS from 0 picks the far end, then the middle
    x = np.array([[0, 0, 0], [1, 0, 0], [2, 0, 0], [3, 0, 0], [4, 0, 0]], np.float32)
    assert farthest_point_sample(x, 3).tolist() == [0, 4, 2]
    assert farthest_point_sample(x, 2, start_index=2).tolist() == [2, 0]


def test_fps_matches_reference_and_batches() -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(size=(2, 200, 3)).astype(np.float32)
    idx = farthest_point_sample(torch.from_numpy(x), 16, start_index=5)
    assert isinstance(idx, torch.Tensor) and idx.shape == (2, 16)
    for b in range(2):
        assert idx[b].tolist() == _fps_reference(x[b], 16, 5)
    single = farthest_point_sample(x[0], 16, start_index=5)
    assert isinstance(single, np.ndarray) and single.tolist() == idx[0].tolist()
    with pytest.raises(ContractError, match="n_samples"):
        farthest_point_sample(x[0], 201)


def test_group_knn_and_propagate() -> None:
    rng = np.random.default_rng(4)
    pts = rng.normal(size=(100, 3)).astype(np.float32)
    centers = pts[[3, 50]]
    g = group_knn(pts, centers, 6)
    assert g.shape == (2, 6) and g[0, 0] == 3 and g[1, 0] == 50
    vals = np.array([1.0, 2.0], np.float32)
    out = propagate_nearest(centers, vals, pts)
    near0 = np.linalg.norm(pts - centers[0], axis=1) < np.linalg.norm(pts - centers[1], axis=1)
    np.testing.assert_array_equal(out, np.where(near0, 1.0, 2.0))
    tout = propagate_nearest(torch.from_numpy(centers), torch.tensor([1.0, 2.0]), pts)
    assert isinstance(tout, torch.Tensor)
    np.testing.assert_array_equal(tout.numpy(), out)
    with pytest.raises(ContractError, match="values"):
        propagate_nearest(centers, vals[:1], pts)


def test_chamfer_distance() -> None:
    a = np.array([[0, 0, 0], [1, 0, 0]], np.float32)
    b = np.array([[0, 0, 0], [1, 2, 0]], np.float32)
    # a->b: 0 and min(1, 4)=1 -> mean 0.5; b->a: 0 and 4 -> mean 2
    assert chamfer_distance(a, b) == pytest.approx(2.5)
    assert chamfer_distance(a, b, squared=False) == pytest.approx(0.5 + 1.0)
    ta = torch.from_numpy(a).requires_grad_(True)
    out = chamfer_distance(ta, torch.from_numpy(b))
    out.backward()
    assert ta.grad is not None and float(out.detach()) == pytest.approx(2.5)


@pytest.mark.skipif(not has_pytorch3d(), reason="pytorch3d not installed")
def test_pytorch3d_agrees_with_fallback() -> None:
    rng = np.random.default_rng(5)
    q = torch.from_numpy(rng.normal(size=(64, 3)).astype(np.float32))
    r = torch.from_numpy(rng.normal(size=(256, 3)).astype(np.float32))
    d1, i1 = knn(q, r, 4, backend="pytorch3d")
    d2, i2 = knn(q, r, 4, backend="torch")
    np.testing.assert_array_equal(i1.numpy(), i2.numpy())
    np.testing.assert_allclose(d1.numpy(), d2.numpy(), rtol=1e-4, atol=1e-5)
    f1 = farthest_point_sample(r, 32, backend="pytorch3d")
    f2 = farthest_point_sample(r, 32)
    assert f1.tolist() == f2.tolist()
