"""AUPRO for organized grids: the exact definition and two published compatibility routines.

* ``exact`` (default): MVTec AD evaluation's tie-collapsed PRO curve (every distinct score is a
  threshold, (0,0) prepended), integrated to the limit with linear interpolation and divided by
  it; computed in closed form from one sort (specs/metrics.md §6, §8 item 4).
* ``mvtec3d_sampled``: the MVTec 3D-AD official routine (also BTF/3D-ADS, M3DM, MulSen-AD):
  thresholds at ``num_thresholds`` evenly spaced ranks of the sorted normal scores, FPR taken from
  the rank, overlap counted with score > threshold, curve starting at (0, PRO(max normal score)),
  MVTec trapezoid with interpolation at the limit (specs/metrics.md §2.3). Re-implemented from
  that description, vectorised; reproduces the routine's values.
* ``cflow200``: the cflow-ad routine used by PointAD / AnomalyCLIP: 200 linear thresholds
  ``arange(min, max, (max-min)/200)`` over all pooled scores, overlap score > threshold, points
  with FPR < limit kept, their FPR min-max rescaled to [0, 1], then the trapezoid (sklearn auc)
  with no interpolation at the limit (specs/metrics.md §3 "PointAD").

All modes use 8-connected GT regions per map, pooled over the class, each with equal weight, and
every GT-zero cell (optionally only valid cells) as a normal cell.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence

import numpy as np

from metrics._checks import check_limit, undefined
from metrics._pooling import pool_maps
from metrics._ranking import Ranked

AUPRO_MODES = ("exact", "mvtec3d_sampled", "cflow200")
CFLOW_STEPS = 200


def mvtec_trapezoid(x: np.ndarray, y: np.ndarray, x_max: float) -> float:
    """Area under the polyline (x ascending) up to ``x_max``, interpolating y linearly inside the
    segment that crosses ``x_max`` (the MVTec evaluation code's integration rule)."""
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    extra = 0.0
    if not np.any(x == x_max):
        cut = bisect_right(x.tolist(), x_max)
        if not 0 < cut < x.size:
            raise ValueError(f"integration limit {x_max} outside the curve's x range")
        y_cut = y[cut - 1] + (y[cut] - y[cut - 1]) * (x_max - x[cut - 1]) / (x[cut] - x[cut - 1])
        extra = 0.5 * (y_cut + y[cut - 1]) * (x_max - x[cut - 1])
    inside = x <= x_max
    x, y = x[inside], y[inside]
    return float(np.sum(0.5 * (y[1:] + y[:-1]) * np.diff(x)) + extra)


def sampled_pro(ranked: Ranked, limit: float, num_thresholds: int = 100,
                metric: str = "aupro") -> float:
    """MVTec 3D-AD official sampled AU-PRO (see module doc)."""
    if int(num_thresholds) < 2:
        raise ValueError(f"{metric}: num_thresholds must be > 1, got {num_thresholds}")
    if not ranked.has_regions(metric):
        return float("nan")
    m = ranked.n
    ranks = np.linspace(0, m - 1, num=int(num_thresholds), dtype=int)
    thresholds = ranked.normals.at_ranks(ranks)
    fpr = 1.0 - (ranks + 1) / m
    pro = ranked.pro_at_thresholds(thresholds)
    x = np.append(fpr[::-1], 1.0)  # highest threshold first: the curve starts at x = 0
    y = np.append(pro[::-1], 1.0)
    return mvtec_trapezoid(x, y, limit) / limit


def cflow_pro(ranked: Ranked, limit: float = 0.3, steps: int = CFLOW_STEPS,
              metric: str = "aupro") -> float:
    """cflow-ad / PointAD AU-PRO (see module doc). Threshold arithmetic follows the routine under
    numpy >= 2: min, max and step in the scores' dtype, ``np.arange`` of those scalars."""
    if not ranked.has_regions(metric):
        return float("nan")
    lo = min(ranked.normals.min(), ranked.pos[0])
    hi = max(ranked.normals.max(), ranked.pos[-1])
    step = (hi - lo) / steps
    if not step > 0:
        return undefined(metric, "all scores are equal, so cflow200 has no threshold")
    thresholds = np.arange(lo, hi, step)
    fpr = ranked.normals.count_above(thresholds, strict=True) / ranked.n
    pro = ranked.pro_at_thresholds(thresholds)
    keep = fpr < limit
    if np.count_nonzero(keep) < 2:
        return undefined(metric, f"cflow200 has fewer than 2 thresholds with FPR < {limit}")
    f = fpr[keep]
    span = f.max() - f.min()
    if not span > 0:
        return undefined(metric, f"cflow200 FPRs below {limit} are all equal (no rescaling range)")
    f = (f - f.min()) / span
    # f decreases with the threshold: sklearn.metrics.auc integrates it with direction -1
    return float(-np.trapezoid(pro[keep], f))


def pro_of(ranked: Ranked, limit: float, mode: str, num_thresholds: int = 100,
           metric: str = "aupro") -> float:
    limit = check_limit(limit, metric)
    if mode == "exact":
        return ranked.pro_exact(limit, metric)
    if mode == "mvtec3d_sampled":
        return sampled_pro(ranked, limit, num_thresholds, metric)
    if mode == "cflow200":
        return cflow_pro(ranked, limit, CFLOW_STEPS, metric)
    raise ValueError(f"{metric}: mode must be one of {AUPRO_MODES}, got {mode!r}")


def aupro(maps: np.ndarray | Sequence, gts: np.ndarray | Sequence, limit: float = 0.3,
          valid: np.ndarray | Sequence | None = None, mode: str = "exact",
          num_thresholds: int = 100) -> float:
    """AUPRO@``limit`` of a class's maps (sequence of (H, W) or one (N, H, W) array; GT non-zero =
    anomalous; regions = 8-connected GT components per map). ``mode``: ``"exact"`` (default),
    ``"mvtec3d_sampled"`` (uses ``num_thresholds``, default 100 as the official script; CFM
    uses 99) or ``"cflow200"``. No GT region -> NaN and an UndefinedMetricWarning."""
    if mode not in AUPRO_MODES:
        raise ValueError(f"aupro: mode must be one of {AUPRO_MODES}, got {mode!r}")
    check_limit(limit, "aupro")
    return pro_of(pool_maps(maps, gts, valid, regions=True), limit, mode, num_thresholds)
