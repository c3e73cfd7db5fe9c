"""Anomalies of the synthetic dataset, with exact ground truth.

Each anomaly is placed on the object and sized so that its ground-truth region covers a drawn
fraction (1-10%) of the object's points / pixels. Ground truth is the set of points (pixels) the
anomaly actually changes: geometric displacement above 10% of its peak (or removed neighbourhood
for holes), or colour weight above 10% for stains.

Height-field version (organized formats): works in object coordinates (u, v) on a reference grid
and returns a function giving (height change, colour weight, GT) anywhere.
Surface version (unorganized formats): displaces / removes sampled points directly.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from datasets.synthetic._surfaces import cap

Rng = np.random.Generator
GT_LEVEL = 0.1  # a point is anomalous where the anomaly reaches 10% of its peak
BEND_LEVER = 0.5  # a bent tip moves by at least amp * 0.5 object units, however short it is
_CAP_AT_GT = float(np.sqrt(1 - GT_LEVEL ** (2 / 3)))  # cap(x) == GT_LEVEL at this x

# strengths in object units (objects span ~[-1,1], heights up to ~0.5)
AMPLITUDE = {
    "bulge": (0.05, 0.08),
    "dent": (0.05, 0.08),
    "crack": (0.05, 0.07),
    "scratch": (0.025, 0.04),
    "bend": (0.18, 0.26),  # radians for surfaces; slope for height fields
    "hole": (1.0, 1.0),
    "stain": (0.5, 0.8),  # colour blend weight
}


def _segment_distance(q: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    ab = b - a
    t = np.clip(((q - a) @ ab) / max(float(ab @ ab), 1e-12), 0.0, 1.0)
    return np.linalg.norm(q - (a + t[:, None] * ab), axis=1)


# ------------------------------------------------------------------------------------------------
# height fields

HeightAnomaly = Callable[
    [np.ndarray, np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray]
]


def height_anomaly(kind: str, height: Callable, fraction: float, rng: Rng) -> HeightAnomaly:
    """Builds anomaly `kind` for the height field `height` (object units) covering `fraction`
    of the object's area. Returns f(u, v, h) -> (dh, colour weight, gt bool)."""
    g = np.linspace(-1.3, 1.3, 160)
    uu, vv = np.meshgrid(g, g)
    hh = height(uu, vv)
    obj = hh > 0.01 * hh.max()
    q = np.stack([uu[obj], vv[obj]], axis=1)
    hq = hh[obj]
    top = q[hq > 0.35 * hq.max()]
    centre = top[rng.integers(len(top))]
    lo, hi = AMPLITUDE[kind]
    amp = rng.uniform(lo, hi)
    dist = np.linalg.norm(q - centre, axis=1)

    if kind in ("bulge", "dent", "stain"):
        r = np.quantile(dist, fraction) / _CAP_AT_GT
        sign = -1.0 if kind == "dent" else 1.0

        def f(u, v, h):
            w = cap(np.hypot(u - centre[0], v - centre[1]) / r) * (h > 0)
            if kind == "stain":
                return np.zeros_like(u), amp * w, w > GT_LEVEL
            return sign * amp * w, np.zeros_like(u), w > GT_LEVEL

        return f
    if kind == "hole":
        r = np.quantile(dist, fraction)

        def f(u, v, h):
            inside = (np.hypot(u - centre[0], v - centre[1]) < r) & (h > 0)
            return np.where(inside, -h, 0.0), np.zeros_like(u), inside

        return f
    if kind in ("crack", "scratch"):
        ang = rng.uniform(0, np.pi)
        half = rng.uniform(0.25, 0.4)
        d = np.array([np.cos(ang), np.sin(ang)]) * half
        a, b = centre - d, centre + d
        width = max(np.quantile(_segment_distance(q, a, b), fraction), 0.012)
        colour = 0.6 if kind == "scratch" else 0.0

        def f(u, v, h):
            pts = np.stack([u.ravel(), v.ravel()], axis=1)
            x = (_segment_distance(pts, a, b) / width).reshape(u.shape)
            w = np.clip(1.0 - x, 0.0, None) * (h > 0)  # V-shaped groove
            return -amp * w, colour * w, w > GT_LEVEL

        return f
    if kind == "bend":
        ang = rng.uniform(0, 2 * np.pi)
        n = np.array([np.cos(ang), np.sin(ang)])
        proj = q @ n
        off = np.quantile(proj, 1 - fraction)
        span = max(proj.max() - off, 1e-6)
        lever = max(span, BEND_LEVER)

        def f(u, v, h):
            s = np.clip((u * n[0] + v * n[1] - off) / span, 0.0, None) * (h > 0)
            dh = amp * lever * s * s  # the tip lifts progressively
            return dh, np.zeros_like(u), s > np.sqrt(GT_LEVEL)

        return f
    raise ValueError(f"unknown anomaly kind {kind!r}")


# ------------------------------------------------------------------------------------------------
# surfaces


def surface_anomaly(
    kind: str, points: np.ndarray, normals: np.ndarray, fraction: float, rng: Rng
) -> tuple[np.ndarray, np.ndarray]:
    """Applies anomaly `kind` to sampled surface points (object units). Returns the new points
    (holes remove points) and their uint8 labels."""
    lo, hi = AMPLITUDE[kind]
    amp = rng.uniform(lo, hi)
    centre = points[rng.integers(len(points))]
    dist = np.linalg.norm(points - centre, axis=1)
    if kind in ("bulge", "dent"):
        r = np.quantile(dist, fraction) / _CAP_AT_GT
        w = cap(dist / r)
        sign = -1.0 if kind == "dent" else 1.0
        return points + sign * amp * w[:, None] * normals, (w > GT_LEVEL).astype(np.uint8)
    if kind == "hole":
        r_in = np.quantile(dist, 0.8 * fraction)
        r_out = np.quantile(dist, 1.8 * fraction)
        keep = dist >= r_in
        labels = (dist < r_out).astype(np.uint8)  # the rim left around the hole
        return points[keep], labels[keep]
    if kind in ("crack", "scratch"):
        tangent = np.cross(normals[np.argmin(dist)], rng.normal(size=3))
        tangent /= max(np.linalg.norm(tangent), 1e-9)
        half = rng.uniform(0.25, 0.4)
        dseg = _segment_distance(points, centre - half * tangent, centre + half * tangent)
        width = np.quantile(dseg, fraction if kind == "crack" else 0.6 * fraction)
        w = np.clip(1.0 - dseg / max(width, 1e-9), 0.0, None)
        return points - amp * w[:, None] * normals, (w > GT_LEVEL).astype(np.uint8)
    if kind == "bend":
        axis_n = rng.normal(size=3)
        axis_n /= np.linalg.norm(axis_n)
        proj = points @ axis_n
        off = np.quantile(proj, 1 - fraction)
        span = max(proj.max() - off, 1e-6)
        s = np.clip((proj - off) / span, 0.0, None)
        hinge = np.cross(axis_n, rng.normal(size=3))
        hinge /= np.linalg.norm(hinge)
        # rotate the part beyond the plane about the hinge axis, progressively
        # sideways and outwards: a purely sideways shift of a convex tip slides along the surface
        bend_dir = np.cross(hinge, axis_n) + 0.7 * axis_n
        bend_dir /= np.linalg.norm(bend_dir)
        disp = (amp * max(span, BEND_LEVER) * s * s)[:, None] * bend_dir
        return points + disp, (s > np.sqrt(GT_LEVEL)).astype(np.uint8)
    raise ValueError(f"unknown anomaly kind {kind!r}")


__all__ = ["AMPLITUDE", "GT_LEVEL", "height_anomaly", "surface_anomaly"]
