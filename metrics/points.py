"""Point-level metrics for (unorganized) point clouds, pooled over every point of every test cloud.

``point_aupro`` is defined by this framework (no public reference exists, specs/metrics.md §8):
regions are the connected components of the graph over a cloud's GT-positive points with an edge
between two points closer than r = radius_factor x (median nearest-neighbour spacing of that
cloud); the rest is the exact AUPRO of the organized case. Its numbers are not comparable to
published ones.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from metrics._checks import as_array_list, check_limit, check_same_length
from metrics._pooling import pool_points
from metrics.pixel import AUPR_VARIANTS, aupr_of


def point_auroc(scores: np.ndarray | Sequence, masks: np.ndarray | Sequence) -> float:
    """Mann-Whitney AUC (ties 1/2) over all points of all clouds (= roc_auc_score on the pooled
    arrays). ``scores``/``masks``: sequences of (N_i,) arrays; mask non-zero = anomalous."""
    return pool_points(scores, masks).auroc("point_auroc")


def point_aupr(scores: np.ndarray | Sequence, masks: np.ndarray | Sequence,
               variant: str = "ap") -> float:
    """Pooled point AUPR: ``"ap"`` = step AP (average_precision_score; Real3D-AD "AUPR"),
    ``"trapezoid"`` = auc(recall, precision) of precision_recall_curve (MulSen-AD, anomalib)."""
    if variant not in AUPR_VARIANTS:
        raise ValueError(f"point_aupr: variant must be one of {AUPR_VARIANTS}, got {variant!r}")
    return aupr_of(pool_points(scores, masks), variant, "point_aupr")


def median_spacing(points: np.ndarray) -> float:
    """Median distance from each point to its nearest other point (exact duplicates ignored)."""
    if points.shape[0] < 2:
        return 0.0
    dist, _ = cKDTree(points).query(points, k=2)
    d = dist[:, 1]
    d = d[d > 0]
    return float(np.median(d)) if d.size else 0.0


def radius_regions(points: np.ndarray, positive: np.ndarray,
                   radius_factor: float = 2.0) -> np.ndarray:
    """Region label (0..k-1) of each GT-positive point, in point order: connected components of the
    graph linking positive points at distance < radius_factor x median spacing of the cloud."""
    pos_pts = points[positive]
    if pos_pts.shape[0] == 0:
        return np.zeros(0, np.int64)
    radius = radius_factor * median_spacing(points)
    pairs = cKDTree(pos_pts).query_pairs(radius, output_type="ndarray") if radius > 0 else \
        np.zeros((0, 2), np.int64)
    if pairs.size:  # query_pairs keeps d <= r; the definition is strictly closer than r
        d = np.linalg.norm(pos_pts[pairs[:, 0]] - pos_pts[pairs[:, 1]], axis=1)
        pairs = pairs[d < radius]
    p = pos_pts.shape[0]
    graph = coo_matrix((np.ones(len(pairs), np.int8), (pairs[:, 0], pairs[:, 1])), shape=(p, p))
    _, labels = connected_components(graph, directed=False)
    return labels.astype(np.int64)


def cloud_regions(points: np.ndarray | Sequence, masks: list[np.ndarray],
                  radius_factor: float) -> list[np.ndarray]:
    points_l = as_array_list(points, "points", 2)
    check_same_length(points_l, masks, "point clouds", "masks")
    out = []
    for i, (p, m) in enumerate(zip(points_l, masks)):
        if p.ndim != 2 or p.shape[1] != 3 or p.shape[0] != m.shape[0]:
            raise ValueError(f"sample {i}: points shape {p.shape} does not match mask shape "
                             f"{m.shape} (expected (N, 3) and (N,))")
        out.append(radius_regions(np.asarray(p, np.float64), m != 0, radius_factor))
    return out


def point_aupro(points: np.ndarray | Sequence, scores: np.ndarray | Sequence,
                masks: np.ndarray | Sequence, limit: float = 0.3,
                radius_factor: float = 2.0) -> float:
    """Framework-defined exact AUPRO@``limit`` for unorganized clouds (see module doc).
    ``points``: sequence of (N_i, 3) arrays matching the (N_i,) ``scores`` and ``masks``."""
    limit = check_limit(limit, "point_aupro")
    masks_l = as_array_list(masks, "masks", 1)
    regions = cloud_regions(points, masks_l, radius_factor)
    return pool_points(scores, masks_l, regions).pro_exact(limit, "point_aupro")
