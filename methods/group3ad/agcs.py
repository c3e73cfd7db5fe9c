"""Adaptive Group-Center Selection (Group3AD §3.2.3, eq. 15-16, Algorithm 1).

normals -> FPFH of every point -> local variation F_p = sum over the n nearest neighbours N_i of
||FPFH(p) - FPFH(N_i)||_2 (eq. 15) -> the high-variation points (the top `high_fraction` of the
points by F_p; Algorithm 1's SelectHighVariationPoints, its threshold unstated) -> alpha * G
centres by FPS on them, (1 - alpha) * G by FPS on the whole cloud; the centres are the union
(eq. 16; a point picked twice is kept once).
"""

from __future__ import annotations

import numpy as np

from benchmark.components.geometry.descriptors import fpfh
from benchmark.components.geometry.pointops import farthest_point_sample, knn
from benchmark.errors import ConfigError

#: rows of (neighbours x 33) differences held at once by `fpfh_local_variation`
_VARIATION_CHUNK = 65536


def fpfh_local_variation(points: np.ndarray, hist: np.ndarray, n_neighbors: int) -> np.ndarray:
    """Eq. 15: F_p (N,) = sum of the L2 distances between the FPFH of p and of each of its
    `n_neighbors` nearest neighbours (p itself excluded); computed in chunks of points."""
    pts = np.asarray(points, dtype=np.float32)
    n = len(pts)
    k = min(int(n_neighbors), n - 1)
    if k < 1:
        return np.zeros(n, np.float32)
    out = np.empty(n, np.float32)
    for s in range(0, n, _VARIATION_CHUNK):
        q = pts[s : s + _VARIATION_CHUNK]
        _, idx = knn(q, pts, k + 1)
        nb = np.asarray(idx)[:, 1:]
        diff = hist[s : s + len(q), None, :] - hist[nb]
        out[s : s + len(q)] = np.linalg.norm(diff, axis=2).sum(1)
    return out


def high_variation_points(variation: np.ndarray, fraction: float) -> np.ndarray:
    """Indices of the ceil(fraction * N) points of largest variation (ties: lower index)."""
    n = len(variation)
    m = int(np.clip(np.ceil(fraction * n), 1, n))
    order = np.argsort(-variation, kind="stable")
    return np.sort(order[:m])


def agcs_centres(
    points: np.ndarray,
    n_centres: int,
    alpha: float,
    n_neighbors: int,
    high_fraction: float,
    fpfh_args: tuple[float, int, float, int],
    max_points: int | None = None,
    seed: int = 0,
) -> np.ndarray:
    """Algorithm 1: indices (into `points`, sorted, unique) of about `n_centres` group centres.

    fpfh_args = (normal radius, normal max_nn, FPFH radius, FPFH max_nn). Clouds above
    `max_points` have their FPFH and variation computed on a seeded random subset of that many
    points (bounded time and memory); the high-variation centres are drawn from that subset, the
    FPS part always runs on the whole cloud."""
    if not 0 <= alpha <= 1:
        raise ConfigError(f"group3ad: AGCS alpha must lie in [0, 1], got {alpha}")
    if not 0 < high_fraction <= 1:
        raise ConfigError(f"group3ad: AGCS high_fraction must lie in (0, 1], got {high_fraction}")
    pts = np.asarray(points, dtype=np.float32)
    n = len(pts)
    g = int(min(n_centres, n))
    subset = np.arange(n)
    if max_points is not None and n > max_points:
        rng = np.random.default_rng(seed)
        subset = np.sort(rng.choice(n, int(max_points), replace=False))
    sub = pts[subset]
    hist = fpfh(sub, *fpfh_args)
    variation = fpfh_local_variation(sub, hist, n_neighbors)
    high = subset[high_variation_points(variation, high_fraction)]
    n_high = min(int(round(alpha * g)), len(high))
    parts = []
    if n_high > 0:
        parts.append(high[farthest_point_sample(pts[high], n_high)])
    if g - n_high > 0:
        parts.append(farthest_point_sample(pts, g - n_high))
    return np.unique(np.concatenate(parts)).astype(np.int64)
