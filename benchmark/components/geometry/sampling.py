"""Choosing patch centres from a point cloud: random, farthest-point, voxel and geometry-aware.

`sample_centers(points, n, method)` is the one entry point; every method returns `n` distinct
indices into `points` (int64), deterministic from `seed`.

- ``random``: `n` points drawn uniformly without replacement;
- ``fps``: farthest point sampling from point 0 (pointops.farthest_point_sample);
- ``voxel``: voxel-grid down-sampling with the voxel size found by bisection so that at least
  `n` voxels are occupied; in every voxel the point nearest to the voxel's mean is kept (the
  index of a real point is needed for patch centres); if more than `n` voxels remain, `n` of
  them are kept by farthest point sampling of their representatives;
- ``gps``: geometry-aware sampling (IMRNet, Li et al., CVPR 2024, Sec. 4.1): the rate of change
  of normals and curvature R_i (eq. 1-5, `rate_of_change`) ranks the points; the top
  floor(tau * N) are salient; centres are drawn with the salient points sampled at
  `density_ratio` times the density of the others (per point of each set), each set by farthest
  point sampling (our choice: spreads the centres within each set).

Choices of ours (the paper leaves them open; IMRNet lists them as guesses):
- curvature K = min(l1, l2) / (l1 + l2 + eps) with l1, l2 the two SMALLEST eigenvalues of the
  neighbourhood covariance (the paper writes "the eigenvalues" without saying which two; the
  two smallest make K the usual surface-variation measure: 0 on a plane, larger on bends);
- normals are unoriented, so |N_i - N_j| in eq. 3 is taken as min(|N_i - N_j|, |N_i + N_j|);
- the radius-r neighbourhood is capped at `max_nn` nearest points (bounded memory), and
  ``radius="auto"`` is 3x the median nearest-neighbour spacing (from a sample of <= 20000
  points);
- points with fewer than 3 neighbours inside r use their 3 nearest neighbours for the plane fit.
"""

from __future__ import annotations

import numpy as np

from benchmark.components.geometry.pointops import farthest_point_sample, knn
from benchmark.errors import ContractError

SAMPLERS = ("gps", "fps", "random", "voxel")
#: points per chunk of the batched covariance / eigen-decomposition
_CHUNK = 65536


def _check(points: np.ndarray, n: int, name: str) -> np.ndarray:
    pts = np.asarray(points)
    if pts.ndim != 2 or pts.shape[1] != 3 or len(pts) == 0:
        raise ContractError(f"{name}: expected an (N,3) cloud with N > 0, got {pts.shape}")
    if not 1 <= n <= len(pts):
        raise ContractError(f"{name}: n={n} must lie in [1, {len(pts)}] (cloud size)")
    return np.ascontiguousarray(pts, dtype=np.float32)


def median_spacing(points: np.ndarray, seed: int = 0, probe: int = 20000) -> float:
    """Median distance of a point to its nearest other point (on <= `probe` sampled points)."""
    pts = np.asarray(points, dtype=np.float32)
    if len(pts) < 2:
        return 1.0
    rng = np.random.default_rng(seed)
    sel = pts[rng.choice(len(pts), min(len(pts), probe), replace=False)]
    dist, _ = knn(sel, pts, 2)
    return max(float(np.median(dist[:, 1])), 1e-12)


def _neighbourhoods(
    pts: np.ndarray, radius: float | str, max_nn: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """kNN (max_nn) of every point restricted to `radius`: (dist, idx, inside) each (N, k); the
    point itself is column 0 and excluded from `inside`."""
    k = min(max_nn + 1, len(pts))
    r = 3.0 * median_spacing(pts) if radius == "auto" else float(radius)
    if not r > 0:
        raise ContractError(f"geometry sampling: radius must be > 0 or 'auto', got {radius!r}")
    dist, idx = knn(pts, pts, k)
    inside = dist <= r
    inside[:, 0] = False
    # at least 3 neighbours for a defined plane (or all there are)
    inside[:, 1 : min(4, k)] = True
    return dist, idx, inside


def normals_and_curvature(
    points: np.ndarray, radius: float | str = "auto", max_nn: int = 32, eps: float = 1e-12
) -> tuple[np.ndarray, np.ndarray]:
    """Unoriented unit normals (N,3) by a least-squares plane fit (eq. 1: the eigenvector of the
    smallest eigenvalue of the neighbourhood covariance) and curvature K (N,) (eq. 2)."""
    pts = _check(points, 1, "normals_and_curvature")
    _, idx, inside = _neighbourhoods(pts, radius, max_nn)
    return _plane_fit(pts, idx, inside, eps)


def _plane_fit(
    pts: np.ndarray, idx: np.ndarray, inside: np.ndarray, eps: float
) -> tuple[np.ndarray, np.ndarray]:
    n = len(pts)
    normals = np.empty((n, 3), np.float32)
    curv = np.empty(n, np.float32)
    for s in range(0, n, _CHUNK):
        nb = pts[idx[s : s + _CHUNK]].astype(np.float64)  # (m,k,3)
        w = inside[s : s + _CHUNK, :, None].astype(np.float64)
        cnt = np.maximum(w.sum(1), 1.0)
        mean = (nb * w).sum(1) / cnt
        d = (nb - mean[:, None]) * w
        cov = np.einsum("mki,mkj->mij", d, d) / cnt[:, :, None]
        evals, evecs = np.linalg.eigh(cov)  # ascending
        evals = np.clip(evals, 0.0, None)
        normals[s : s + _CHUNK] = evecs[:, :, 0]
        curv[s : s + _CHUNK] = np.minimum(evals[:, 0], evals[:, 1]) / (
            evals[:, 0] + evals[:, 1] + eps
        )
    return normals, curv


def rate_of_change(
    points: np.ndarray, radius: float | str = "auto", max_nn: int = 32, eps: float = 1e-12
) -> np.ndarray:
    """R_i (eq. 5): mean over the radius neighbours j of |N_i - N_j| / |v_ij| + |K_i - K_j|."""
    pts = _check(points, 1, "rate_of_change")
    dist, idx, inside = _neighbourhoods(pts, radius, max_nn)
    normals, curv = _plane_fit(pts, idx, inside, eps)
    nj = normals[idx]  # (N,k,3)
    ni = normals[:, None]
    dn = np.minimum(np.linalg.norm(ni - nj, axis=2), np.linalg.norm(ni + nj, axis=2))
    r_norm = dn / np.maximum(dist, eps)
    r_curv = np.abs(curv[:, None] - curv[idx])
    total = np.where(inside, r_norm + r_curv, 0.0).sum(1)
    return (total / np.maximum(inside.sum(1), 1)).astype(np.float32)


def gps_counts(
    n_points: int, n: int, tau: float = 0.3, density_ratio: float = 2.0
) -> tuple[int, int]:
    """(salient, other) centre counts: the salient set is floor(tau*N) points, sampled at
    `density_ratio` times the per-point density of the other (1-tau)*N points."""
    if not 0.0 <= tau <= 1.0 or density_ratio <= 0:
        raise ContractError(f"gps: tau ({tau}) must lie in [0,1] and density_ratio > 0")
    n_sal = int(np.floor(tau * n_points))
    n_oth = n_points - n_sal
    weight = density_ratio * n_sal + n_oth
    k_sal = int(round(n * density_ratio * n_sal / weight)) if weight > 0 else 0
    k_sal = min(k_sal, n_sal)
    k_oth = n - k_sal
    if k_oth > n_oth:  # too few ordinary points: fill from the salient set
        k_oth = n_oth
        k_sal = n - k_oth
    return k_sal, k_oth


def geometry_aware_sample(
    points: np.ndarray,
    n: int,
    tau: float = 0.3,
    density_ratio: float = 2.0,
    radius: float | str = "auto",
    max_nn: int = 32,
    rate: np.ndarray | None = None,
) -> np.ndarray:
    """GPS: `n` centre indices; ranks by the rate of change (descending; ties by index), the
    top floor(tau*N) are salient and get `density_ratio` times the others' density."""
    pts = _check(points, n, "geometry_aware_sample")
    r = rate_of_change(pts, radius, max_nn) if rate is None else np.asarray(rate)
    if len(r) != len(pts):
        raise ContractError(f"geometry_aware_sample: {len(r)} rates for {len(pts)} points")
    order = np.lexsort((np.arange(len(pts)), -r))  # Rank(P_k) = position in `order` + 1
    n_sal = int(np.floor(tau * len(pts)))
    k_sal, k_oth = gps_counts(len(pts), n, tau, density_ratio)
    salient, other = order[:n_sal], order[n_sal:]
    parts = []
    for subset, k in ((salient, k_sal), (other, k_oth)):
        if k > 0:
            parts.append(subset[farthest_point_sample(pts[subset], k)])
    return np.concatenate(parts).astype(np.int64)


def voxel_sample(points: np.ndarray, n: int, iterations: int = 30) -> np.ndarray:
    """`n` indices: one real point per occupied voxel (nearest to the voxel mean), voxel size
    the largest found by bisection with >= n occupied voxels; FPS among them down to `n`."""
    pts = _check(points, n, "voxel_sample")
    lo_pt, span = pts.min(0), float(np.ptp(pts, axis=0).max())
    if span <= 0 or n == len(pts):
        return farthest_point_sample(pts, n)

    def voxels(size: float) -> tuple[np.ndarray, int]:
        keys = np.floor((pts - lo_pt) / size).astype(np.int64)
        _, inv = np.unique(keys, axis=0, return_inverse=True)
        inv = inv.reshape(-1)
        return inv, int(inv.max()) + 1

    lo, hi = 0.0, span  # occupied(hi) == 1 <= n; shrink towards >= n voxels
    best = None
    for _ in range(iterations):
        mid = 0.5 * (lo + hi)
        if mid <= 0:
            break
        inv, count = voxels(mid)
        if count >= n:
            best, lo = (inv, count), mid
            if count == n:
                break
        else:
            hi = mid
    if best is None:
        return farthest_point_sample(pts, n)
    inv, count = best
    sums = np.zeros((count, 3))
    np.add.at(sums, inv, pts)
    means = sums / np.bincount(inv, minlength=count)[:, None]
    d = np.linalg.norm(pts - means[inv], axis=1)
    order = np.lexsort((np.arange(len(pts)), d, inv))  # per voxel: nearest first
    first = np.ones(len(order), bool)
    first[1:] = inv[order][1:] != inv[order][:-1]
    reps = order[first]
    if len(reps) > n:
        reps = reps[farthest_point_sample(pts[reps], n)]
    return reps.astype(np.int64)


def sample_centers(
    points: np.ndarray, n: int, method: str = "gps", seed: int = 0, **gps_options
) -> np.ndarray:
    """`n` distinct centre indices into `points` by `method` (gps, fps, random, voxel).

    ``gps_options`` (tau, density_ratio, radius, max_nn, rate) go to `geometry_aware_sample`."""
    pts = _check(points, n, "sample_centers")
    if method == "gps":
        return geometry_aware_sample(pts, n, **gps_options)
    if gps_options:
        raise ContractError(f"sample_centers: options {sorted(gps_options)} apply to 'gps' only")
    if method == "fps":
        return farthest_point_sample(pts, n)
    if method == "random":
        return np.sort(np.random.default_rng(seed).choice(len(pts), n, replace=False)).astype(
            np.int64
        )
    if method == "voxel":
        return voxel_sample(pts, n)
    raise ContractError(f"sample_centers: unknown method {method!r} (one of {', '.join(SAMPLERS)})")
