"""Group3AD fake anomalies (paper §3.2.1, eq. 1-6): FPFH-chosen centre, a local region holding a
fraction r of the points, Gaussian noise on it.

"The point with the highest FPFH feature" (eq. 2) is not defined for a 33-d histogram; the
scalar "response" of a histogram h is chosen by `RESPONSES` (default ``"l2"``: ||h||_2). Open3D's
FPFH sub-histograms each sum to 100, so the L1 norm is the same for every point; the L2 norm is
largest for the most concentrated (peaked) histograms. ``"max_bin"`` (the largest bin) and
``"distinct"`` (L2 distance to the cloud's mean histogram) are the alternatives offered.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from benchmark.components.geometry.pointops import knn
from benchmark.errors import ConfigError

RESPONSES: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "l2": lambda h: np.linalg.norm(h, axis=1),
    "max_bin": lambda h: h.max(axis=1),
    "distinct": lambda h: np.linalg.norm(h - h.mean(axis=0, keepdims=True), axis=1),
}
MODES = ("replace", "union")


def fpfh_response(hist: np.ndarray, rule: str = "l2") -> np.ndarray:
    """Scalar response (N,) of FPFH histograms (N,33) under `rule` (see `RESPONSES`)."""
    if rule not in RESPONSES:
        raise ConfigError(f"group3ad: unknown FPFH response {rule!r}; known: {sorted(RESPONSES)}")
    return RESPONSES[rule](np.asarray(hist, dtype=np.float64))


@dataclass
class FakeAnomaly:
    """A cloud with one fake anomaly. ``moved``: indices (into the input) of the disturbed
    points; in ``"union"`` mode their displaced copies are appended after the input points."""

    points: np.ndarray
    moved: np.ndarray
    centre: int
    ratio: float
    variance: float


def fake_anomaly(
    points: np.ndarray,
    centre: int,
    rng: np.random.Generator,
    ratio_range: tuple[float, float] = (0.01, 0.10),
    variance_range: tuple[float, float] = (0.01, 0.05),
    noise_unit: float = 1.0,
    mode: str = "replace",
) -> FakeAnomaly:
    """Eq. 3-6: the round(r * N) points nearest to ``points[centre]`` (r ~ U(ratio_range); a
    distance threshold holding that fraction of the points) get N(0, sigma^2) noise on each
    coordinate, sigma^2 ~ U(variance_range) in squared `noise_unit` (noise std = sqrt(sigma^2) *
    noise_unit, in the cloud's units). ``mode="replace"`` moves those points; ``"union"`` keeps
    them and appends the noisy copies (eq. 6 read literally, P u A)."""
    if mode not in MODES:
        raise ConfigError(f"group3ad: fake anomaly mode must be one of {MODES}, got {mode!r}")
    lo, hi = ratio_range
    if not 0 < lo <= hi <= 1:
        raise ConfigError(f"group3ad: fake ratio range must lie in (0, 1], got {ratio_range}")
    if not 0 <= variance_range[0] <= variance_range[1]:
        raise ConfigError(f"group3ad: bad fake noise variance range {variance_range}")
    pts = np.asarray(points, dtype=np.float32)
    n = len(pts)
    ratio = float(rng.uniform(lo, hi))
    variance = float(rng.uniform(*variance_range))
    m = int(np.clip(round(ratio * n), 1, n))
    _, idx = knn(pts[centre : centre + 1], pts, m)
    moved = np.sort(np.asarray(idx[0], dtype=np.int64))
    noise = rng.normal(0.0, np.sqrt(variance) * noise_unit, size=(m, 3)).astype(np.float32)
    if mode == "replace":
        out = pts.copy()
        out[moved] += noise
    else:
        out = np.concatenate([pts, pts[moved] + noise])
    return FakeAnomaly(out, moved, int(centre), ratio, variance)
