"""Input coercion and validation shared by every metric (pure numpy)."""

from __future__ import annotations

import sys
import warnings
from collections.abc import Sequence

import numpy as np


class UndefinedMetricWarning(RuntimeWarning):
    """A metric is undefined for its input (one class only, no GT region, ...); NaN is returned."""


def warn(message: str, category: type[Warning] = UndefinedMetricWarning) -> None:
    """warnings.warn attributed to the first caller outside this package."""
    level, frame = 1, sys._getframe(0)
    while frame is not None and frame.f_globals.get("__name__", "").split(".")[0] == "metrics":
        frame, level = frame.f_back, level + 1
    warnings.warn(message, category, stacklevel=level)


def undefined(metric: str, reason: str) -> float:
    """Warn and return NaN: an undefined metric is never replaced by a made-up value such as 0.5."""
    warn(f"{metric} is undefined: {reason}; returning NaN")
    return float("nan")


def as_array_list(x: np.ndarray | Sequence, name: str, ndim: int) -> list[np.ndarray]:
    """A sequence of ``ndim``-D arrays, or one array of ``ndim + 1`` dims (its first axis indexes
    samples), or one ``ndim``-D array (a single sample) -> list of arrays (views, no copies)."""
    if isinstance(x, np.ndarray):
        if x.ndim == ndim + 1:
            return list(x)
        if x.ndim == ndim:
            return [x]
        raise ValueError(f"{name}: expected {ndim}-D arrays or one {ndim + 1}-D stack, "
                         f"got an array of shape {x.shape}")
    if x is None:
        raise ValueError(f"{name}: got None")
    items = [np.asarray(a) for a in x]
    if items and all(a.ndim == ndim - 1 for a in items):  # e.g. a plain list of floats
        return [np.asarray(x)]
    for i, a in enumerate(items):
        if a.ndim != ndim:
            raise ValueError(f"{name}[{i}]: expected a {ndim}-D array, got shape {a.shape}")
    return items


def check_same_length(a: list, b: list, name_a: str, name_b: str) -> None:
    if len(a) != len(b):
        raise ValueError(f"{len(a)} {name_a} but {len(b)} {name_b}")


def check_finite(a: np.ndarray, name: str, index: int) -> None:
    """Raise ValueError naming the sample when ``a`` holds NaN or inf (two reductions, no temp)."""
    if a.size == 0 or a.dtype.kind in "biu":
        return
    if not (np.isfinite(a.min()) and np.isfinite(a.max())):
        bad = int(np.count_nonzero(~np.isfinite(a)))
        raise ValueError(f"{name}: sample {index} contains {bad} NaN/inf value(s)")


def check_finite_flat(a: np.ndarray, name: str) -> None:
    """Same for one score per sample: the message names the offending sample indices."""
    if a.dtype.kind in "biu" or a.size == 0:
        return
    if not (np.isfinite(a.min()) and np.isfinite(a.max())):
        idx = np.flatnonzero(~np.isfinite(a))
        shown = ", ".join(str(i) for i in idx[:10]) + (" ..." if idx.size > 10 else "")
        raise ValueError(f"{name}: NaN/inf score at sample index {shown}")


def check_shape(a: np.ndarray, b: np.ndarray, name_a: str, name_b: str, index: int) -> None:
    if a.shape != b.shape:
        raise ValueError(f"sample {index}: {name_a} shape {a.shape} != {name_b} shape {b.shape}")


def check_limit(limit: float, metric: str) -> float:
    limit = float(limit)
    if not 0.0 < limit <= 1.0:
        raise ValueError(f"{metric}: integration limit must be in (0, 1], got {limit}")
    return limit


def score_dtype(arrays: Sequence[np.ndarray]) -> np.dtype:
    """The common dtype scores are pooled in: the widest input float type (exact upcast);
    integer or boolean scores are pooled as float64."""
    dtype = np.result_type(*[a.dtype for a in arrays]) if len(arrays) else np.dtype(np.float64)
    return dtype if dtype.kind == "f" else np.dtype(np.float64)
