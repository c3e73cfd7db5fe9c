"""The normal scores of a class as sorted runs of order-preserving integer keys.

Every rank metric needs, for a few query values (the anomalous scores, a few thresholds), how
many normal scores lie above them. That needs the normal scores in order; sorting them is almost
all of the work. Two exact speed-ups:

* integer keys: a float maps to the unsigned integer of the same width whose order is the float
  order (flip every bit of a negative float, only the sign bit of a non-negative one; ``-0.0`` is
  first made ``+0.0`` so that equal floats keep equal keys). numpy sorts integers about twice as
  fast as floats, and denormals, ties and last-ulp differences keep their exact order.
* runs sorted in parallel: the buffer is split into runs sorted in threads (numpy releases the
  GIL while sorting). Counts are sums over the runs and order statistics a search over the key
  space, so the runs are never merged.

The keys overwrite the caller's buffer (no extra copy of the normal scores). Other dtypes (e.g.
long double) fall back to one float sort.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

KEY_DTYPES = {np.dtype(np.float16): np.dtype(np.uint16), np.dtype(np.float32): np.dtype(np.uint32),
              np.dtype(np.float64): np.dtype(np.uint64)}
MIN_RUN = 1 << 20  # below this many scores per run, threads cost more than they save
TRANSFORM_CHUNK = 1 << 21  # keys are made in chunks: bounded temporaries


def sort_threads() -> int:
    """Threads used to sort runs: the CPUs this process may use, at most 8."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    return max(1, min(8, cpus))


def _masks(key_dtype: np.dtype) -> tuple[np.generic, np.generic]:
    bits = key_dtype.itemsize * 8
    sign = key_dtype.type(1 << (bits - 1))
    return sign, key_dtype.type((1 << (bits - 1)) - 1)


def _to_keys_in_place(u: np.ndarray) -> None:
    """Float bit patterns (viewed as unsigned ints) -> order-preserving keys, in place."""
    sign, rest = _masks(u.dtype)
    shift = u.dtype.itemsize * 8 - 1
    for start in range(0, u.size, TRANSFORM_CHUNK):
        chunk = u[start:start + TRANSFORM_CHUNK]
        chunk[chunk == sign] = 0  # -0.0 -> +0.0
        flip = chunk >> shift  # 1 for negative floats
        flip *= rest
        flip |= sign
        chunk ^= flip


def float_keys(values: np.ndarray) -> np.ndarray:
    """Order-preserving keys of a (small) float array, as a new array."""
    values = np.asarray(values)
    u = np.array(values, copy=True).view(KEY_DTYPES[values.dtype])
    _to_keys_in_place(u.reshape(-1))
    return u


def floats_from_keys(keys: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Inverse of :func:`float_keys` (``-0.0`` comes back as ``+0.0``)."""
    keys = np.array(keys, dtype=KEY_DTYPES[np.dtype(dtype)], copy=True)
    sign, rest = _masks(keys.dtype)
    negative = keys < sign  # keys of negative floats have the top bit clear
    keys ^= np.where(negative, sign | rest, sign)
    return keys.view(dtype)


def nearest_in_dtype(values: np.ndarray, dtype: np.dtype, *, strict: bool) -> np.ndarray:
    """Values of another (wider) dtype mapped to the neighbouring value of ``dtype`` that gives
    the same comparison with every ``dtype`` number: for ``x > v`` (strict) the largest
    representable value <= v, for ``x >= v`` the smallest representable value >= v."""
    values = np.asarray(values)
    if values.dtype == dtype:
        return values
    wide = values.astype(np.float64)
    cast = wide.astype(dtype)
    if strict:
        cast = np.where(cast.astype(np.float64) > wide, np.nextafter(cast, dtype.type(-np.inf)),
                        cast)
    else:
        cast = np.where(cast.astype(np.float64) < wide, np.nextafter(cast, dtype.type(np.inf)),
                        cast)
    return cast.astype(dtype)


class SortedScores:
    """Sorted runs of the normal scores (see module doc). ``buffer`` is consumed: its memory
    holds the keys afterwards."""

    def __init__(self, buffer: np.ndarray, threads: int | None = None) -> None:
        if buffer.ndim != 1:
            raise ValueError("SortedScores needs a 1-D buffer")
        self.dtype = buffer.dtype
        self.size = int(buffer.size)
        key_dtype = KEY_DTYPES.get(self.dtype)
        self._keyed = key_dtype is not None
        data = buffer.view(key_dtype) if self._keyed else buffer
        if self._keyed:
            _to_keys_in_place(data)
        threads = sort_threads() if threads is None else max(1, int(threads))
        n_runs = max(1, min(threads, self.size // MIN_RUN)) if self._keyed else 1
        self.runs = [r for r in np.array_split(data, n_runs) if r.size] if n_runs > 1 else [data]
        if len(self.runs) > 1:
            with ThreadPoolExecutor(len(self.runs)) as pool:
                list(pool.map(np.ndarray.sort, self.runs))
        else:
            data.sort()

    def _as_keys(self, values: np.ndarray, strict: bool) -> np.ndarray:
        values = nearest_in_dtype(values, self.dtype, strict=strict)
        return float_keys(values) if self._keyed else values

    def count_above(self, values: np.ndarray, *, strict: bool) -> np.ndarray:
        """``#{scores > v}`` (strict) or ``>= v`` for each v, as int64."""
        keys = self._as_keys(np.asarray(values), strict)
        side = "right" if strict else "left"
        total = np.full(keys.shape, self.size, dtype=np.int64)
        for run in self.runs:
            total -= np.searchsorted(run, keys, side=side).astype(np.int64)
        return total

    def _values(self, keys: np.ndarray) -> np.ndarray:
        return floats_from_keys(keys, self.dtype) if self._keyed else np.asarray(keys)

    def min(self) -> np.generic:
        return self._values(np.array([min(r[0] for r in self.runs)]))[0]

    def max(self) -> np.generic:
        return self._values(np.array([max(r[-1] for r in self.runs)]))[0]

    def at_ranks(self, ranks: np.ndarray) -> np.ndarray:
        """The scores at 0-based ascending ranks (order statistics), without merging the runs:
        per rank, the smallest key with more than ``rank`` keys at or below it."""
        ranks = np.asarray(ranks, dtype=np.int64)
        if len(self.runs) == 1:
            return self._values(self.runs[0][ranks])
        lo = np.array([min(r[0] for r in self.runs)] * ranks.size)
        hi = np.array([max(r[-1] for r in self.runs)] * ranks.size)
        while np.any(lo < hi):
            mid = lo + (hi - lo) // 2
            at_or_below = sum(np.searchsorted(r, mid, side="right").astype(np.int64)
                              for r in self.runs)
            enough = at_or_below > ranks
            hi = np.where(enough, mid, hi)
            lo = np.where(enough, lo, mid + 1)
        return self._values(lo)

    def sorted_values(self) -> np.ndarray:
        """All scores in ascending order as one new float array (for plots; costs a merge)."""
        if len(self.runs) == 1:
            return self._values(self.runs[0])
        return np.sort(self._values(np.concatenate(self.runs)))
