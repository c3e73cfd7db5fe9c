"""Point-cloud primitives shared by every method: kNN, farthest point sampling, kNN grouping,
chamfer distance and nearest-neighbour propagation of per-point values.

Numpy in -> numpy out, torch in -> torch out (same device). Everything runs in bounded memory:
low-dimensional kNN goes through a KD-tree (scipy ``cKDTree``), higher dimensions through a
chunked brute-force torch search that never builds the full query x reference matrix.
pytorch3d is used only when installed and asked for (``backend="pytorch3d"``); the pure
torch/scipy paths are the reference and the tests check that both agree.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch

from benchmark.errors import ContractError

Array = np.ndarray | torch.Tensor

#: the brute-force kNN keeps one (chunk x n_ref) float32 block in memory at a time
_BLOCK_BYTES = 256 * 2**20
#: up to this dimension the KD-tree beats brute force by a wide margin
_KDTREE_MAX_DIM = 8


@contextmanager
def serial_below(numel: int, threshold: int = 1 << 21) -> Iterator[None]:
    """Runs torch single-threaded while a loop's per-step work (`numel` elements) is small.

    Long loops of small element-wise steps (FPS, greedy coresets) gain nothing from OpenMP threads
    and lose up to 10x when the cores are shared (threads spin waiting for each other)."""
    if numel >= threshold or torch.get_num_threads() == 1:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def centre(points: np.ndarray) -> np.ndarray:
    """Mean-centred copy (float64 mean), float32; no scaling (Real3D-AD's ``norm_pcd``)."""
    return (points - points.mean(axis=0, dtype=np.float64)).astype(np.float32)


def has_pytorch3d() -> bool:
    return importlib.util.find_spec("pytorch3d") is not None


def _as_tensor(x: Array, name: str) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x
    if isinstance(x, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(x))
    raise ContractError(f"{name}: expected a numpy array or torch tensor, got {type(x).__name__}")


def _check_points(x: torch.Tensor, name: str) -> None:
    if x.ndim not in (2, 3):
        raise ContractError(f"{name}: expected shape (N,D) or (B,N,D), got {tuple(x.shape)}")
    if x.shape[-2] == 0:
        raise ContractError(f"{name}: empty point set")


def _workers() -> int:
    return max(1, int(os.environ.get("OMP_NUM_THREADS", os.cpu_count() or 1)))


def _knn_kdtree(q: np.ndarray, r: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    from scipy.spatial import cKDTree

    dist, idx = cKDTree(r).query(q, k=k, workers=_workers())
    if k == 1:
        dist, idx = dist[:, None], idx[:, None]
    return dist.astype(np.float32, copy=False), idx.astype(np.int64, copy=False)


def _knn_torch(
    q: torch.Tensor, r: torch.Tensor, k: int, chunk_size: int | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Brute force over query chunks; q (M,D), r (N,D)."""
    n = r.shape[0]
    if chunk_size is None:
        chunk_size = max(1, min(q.shape[0], _BLOCK_BYTES // (4 * max(n, 1))))
    r_sq = (r * r).sum(1)
    dists, idxs = [], []
    for s in range(0, q.shape[0], chunk_size):
        qc = q[s : s + chunk_size]
        # ||q||^2 - 2 q.r + ||r||^2; clamped, as rounding can make it slightly negative
        d2 = (qc * qc).sum(1, keepdim=True) - 2.0 * (qc @ r.T) + r_sq[None]
        d2, ix = torch.topk(d2, k, dim=1, largest=False, sorted=True)
        dists.append(d2.clamp_min_(0).sqrt_())
        idxs.append(ix)
    return torch.cat(dists), torch.cat(idxs)


def _knn_pytorch3d(q: torch.Tensor, r: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    from pytorch3d.ops import knn_points

    out = knn_points(q[None].float(), r[None].float(), K=k, return_sorted=True)
    return out.dists[0].clamp_min(0).sqrt(), out.idx[0]


def knn(
    query: Array,
    ref: Array,
    k: int,
    chunk_size: int | None = None,
    backend: str = "auto",
) -> tuple[Array, Array]:
    """The `k` nearest points of `ref` for every point of `query`, ascending.

    query (M,D) / ref (N,D), or batched (B,M,D) / (B,N,D). Returns (dist, idx): Euclidean
    distances (float32) and int64 indices into `ref`, shape (..., M, k). backend: "auto" (KD-tree
    for D <= 8, else chunked torch), "scipy", "torch" or "pytorch3d" (only when installed).
    """
    numpy_in = isinstance(query, np.ndarray)
    q, r = _as_tensor(query, "query"), _as_tensor(ref, "ref")
    _check_points(q, "query")
    _check_points(r, "ref")
    if q.ndim != r.ndim or q.shape[-1] != r.shape[-1] or (q.ndim == 3 and q.shape[0] != r.shape[0]):
        raise ContractError(
            f"knn: incompatible shapes query {tuple(q.shape)} / ref {tuple(r.shape)}"
        )
    if not 1 <= k <= r.shape[-2]:
        raise ContractError(f"knn: k={k} must lie in [1, {r.shape[-2]}] (reference size)")
    if q.ndim == 3:
        outs = [knn(q[b], r[b], k, chunk_size, backend) for b in range(q.shape[0])]
        dist, idx = torch.stack([o[0] for o in outs]), torch.stack([o[1] for o in outs])
        return (dist.numpy(), idx.numpy()) if numpy_in else (dist, idx)
    if backend == "auto":
        backend = "scipy" if q.shape[-1] <= _KDTREE_MAX_DIM and not q.requires_grad else "torch"
    if backend == "scipy":
        qn = q.detach().cpu().numpy().astype(np.float64, copy=False)
        rn = r.detach().cpu().numpy().astype(np.float64, copy=False)
        d, i = _knn_kdtree(qn, rn, k)
        if numpy_in:
            return d, i
        return torch.from_numpy(d).to(q.device), torch.from_numpy(i).to(q.device)
    if backend == "torch":
        with torch.no_grad() if not q.requires_grad else torch.enable_grad():
            d, i = _knn_torch(q.float(), r.float(), k, chunk_size)
    elif backend == "pytorch3d":
        if not has_pytorch3d():
            raise ContractError("knn: backend 'pytorch3d' requested but pytorch3d is not installed")
        d, i = _knn_pytorch3d(q, r, k)
    else:
        raise ContractError(f"knn: unknown backend {backend!r} (auto, scipy, torch, pytorch3d)")
    return (d.numpy(), i.numpy()) if numpy_in else (d, i)


@torch.no_grad()
def _fps_torch(x: torch.Tensor, n_samples: int, start_index: int) -> torch.Tensor:
    """x (B,N,D) float -> (B,n) int64; exact iterative farthest point sampling. Coordinates are
    kept as contiguous planes and the squared distance is accumulated in place (no (B,N,D)
    temporaries per step: about 5x faster than the broadcast form on large clouds)."""
    b, n, dim = x.shape
    planes = x.permute(0, 2, 1).contiguous()  # (B,D,N)
    out = torch.empty(b, n_samples, dtype=torch.int64, device=x.device)
    mind = torch.full((b, n), float("inf"), dtype=x.dtype, device=x.device)
    dist = torch.empty(b, n, dtype=x.dtype, device=x.device)
    tmp = torch.empty_like(dist)
    cur = torch.full((b,), start_index, dtype=torch.int64, device=x.device)
    ar = torch.arange(b, device=x.device)
    for i in range(n_samples):
        out[:, i] = cur
        c = x[ar, cur]  # (B,D)
        torch.sub(planes[:, 0], c[:, 0:1], out=dist)
        dist.mul_(dist)
        for k in range(1, dim):
            torch.sub(planes[:, k], c[:, k : k + 1], out=tmp)
            dist.addcmul_(tmp, tmp)
        torch.minimum(mind, dist, out=mind)
        cur = mind.argmax(1)
    return out


def farthest_point_sample(
    points: Array, n_samples: int, start_index: int = 0, backend: str = "torch"
) -> Array:
    """Indices of `n_samples` farthest-point-sampled points, starting at `start_index`.

    points (N,D) -> (n,) or (B,N,D) -> (B,n), int64. Deterministic (first-argmax on ties), as the
    pointnet2 CUDA kernel used by the official Point-MAE/M3DM code, which also starts at index 0.
    backend "pytorch3d" (only when installed) uses ``sample_farthest_points``.
    """
    numpy_in = isinstance(points, np.ndarray)
    x = _as_tensor(points, "points")
    _check_points(x, "points")
    single = x.ndim == 2
    if single:
        x = x[None]
    n = x.shape[1]
    if not 1 <= n_samples <= n:
        raise ContractError(f"farthest_point_sample: n_samples={n_samples} must lie in [1, {n}]")
    if not 0 <= start_index < n:
        raise ContractError(f"farthest_point_sample: start_index={start_index} outside [0, {n})")
    if backend == "pytorch3d":
        if not has_pytorch3d():
            raise ContractError("farthest_point_sample: pytorch3d is not installed")
        from pytorch3d.ops import sample_farthest_points

        if start_index != 0:
            raise ContractError("farthest_point_sample: pytorch3d backend starts at index 0 only")
        _, idx = sample_farthest_points(x.float(), K=n_samples, random_start_point=False)
    elif backend == "torch":
        with serial_below(x.shape[0] * x.shape[1] * x.shape[2]):
            idx = _fps_torch(x if x.is_floating_point() else x.float(), n_samples, start_index)
    else:
        raise ContractError(f"farthest_point_sample: unknown backend {backend!r}")
    if single:
        idx = idx[0]
    return idx.cpu().numpy() if numpy_in else idx


def group_knn(points: Array, centers: Array, k: int, backend: str = "auto") -> Array:
    """Indices (into `points`) of the `k` nearest points of each centre, ascending distance.

    points (N,D), centers (G,D) -> (G,k); batched (B,N,D), (B,G,D) -> (B,G,k).
    """
    return knn(centers, points, k, backend=backend)[1]


def chamfer_distance(a: Array, b: Array, squared: bool = True) -> float | torch.Tensor:
    """Symmetric chamfer distance: mean over `a` of the (squared) distance to the nearest point
    of `b`, plus the same from `b` to `a` (pytorch3d's convention with squared=True).

    Returns a float for numpy input, a 0-d tensor for torch input (differentiable in the torch
    backend when the inputs require grad: the nearest indices are found without grad, then the
    distances recomputed).
    """
    numpy_in = isinstance(a, np.ndarray)
    ta, tb = _as_tensor(a, "a"), _as_tensor(b, "b")
    _check_points(ta, "a")
    _check_points(tb, "b")
    if ta.ndim != 2 or tb.ndim != 2:
        raise ContractError("chamfer_distance: expected (N,D) and (M,D) point sets")
    _, ia = knn(ta.detach(), tb.detach(), 1)
    _, ib = knn(tb.detach(), ta.detach(), 1)
    da = ((ta.float() - tb.float()[ia[:, 0]]) ** 2).sum(-1)
    db = ((tb.float() - ta.float()[ib[:, 0]]) ** 2).sum(-1)
    if not squared:
        da, db = da.sqrt(), db.sqrt()
    out = da.mean() + db.mean()
    return float(out) if numpy_in else out


def propagate_nearest(src_points: Array, src_values: Array, dst_points: Array) -> Array:
    """Copies to every destination point the value of its nearest source point (1-NN).

    src_points (S,D), src_values (S,...) , dst_points (N,D) -> (N,...); same type as src_values.
    """
    if len(src_values) != len(src_points):
        raise ContractError(
            f"propagate_nearest: {len(src_values)} values for {len(src_points)} source points"
        )
    _, idx = knn(dst_points, src_points, 1)
    idx = idx[:, 0]
    if isinstance(src_values, torch.Tensor):
        return src_values[_as_tensor(idx, "idx").to(src_values.device)]
    return np.asarray(src_values)[np.asarray(idx)]


def ball_query(points: torch.Tensor, centers: torch.Tensor, radius: float, k: int) -> torch.Tensor:
    """PointNet++ ball query: for each centre the indices of the first `k` points (in index order)
    within `radius`, padded with the first one found; a centre with no point in its ball gets its
    nearest point (the official CUDA kernel leaves index 0 there; nearest is the safe variant).

    points (B,N,D), centers (B,S,D) -> (B,S,k) int64. Vectorised over the batch; one (B,S,N)
    distance block, so meant for small point sets (patches), not for whole scans.
    """
    if points.ndim != 3 or centers.ndim != 3 or points.shape[0] != centers.shape[0]:
        raise ContractError(
            f"ball_query: expected points (B,N,D) and centers (B,S,D), got "
            f"{tuple(points.shape)} / {tuple(centers.shape)}"
        )
    n = points.shape[1]
    if not 1 <= k:
        raise ContractError(f"ball_query: k={k} must be >= 1")
    with torch.no_grad():
        d2 = torch.cdist(centers.float(), points.float()).square_()
        inside = d2 <= radius * radius
        order = torch.arange(n, device=points.device).expand_as(d2)
        cand = torch.where(inside, order, torch.full_like(order, n))
        kk = min(k, n)
        first, _ = torch.topk(cand, kk, dim=-1, largest=False, sorted=True)
        nearest = d2.argmin(-1, keepdim=True)
        head = torch.where(first[..., :1] < n, first[..., :1], nearest)
        first = torch.where(first < n, first, head)
        if kk < k:
            first = torch.cat([first, head.expand(*head.shape[:-1], k - kk)], dim=-1)
    return first
