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


def keys_into(bits: np.ndarray, out: np.ndarray) -> None:
    """Order-preserving keys of float bit patterns ``bits`` (viewed as unsigned ints, 1-D) written
    to ``out`` (same shape and dtype; may be ``bits`` itself), in chunks."""
    sign, rest = _masks(bits.dtype)
    shift = bits.dtype.itemsize * 8 - 1
    for start in range(0, bits.size, TRANSFORM_CHUNK):
        src = bits[start:start + TRANSFORM_CHUNK]
        dst = out[start:start + TRANSFORM_CHUNK]
        flip = src >> shift  # 1 for negative floats
        flip *= rest
        flip |= sign
        np.bitwise_xor(src, flip, out=dst)
        dst[dst == rest] = sign  # -0.0 -> the key of +0.0


def key_dtype(dtype: np.dtype) -> np.dtype | None:
    """The unsigned key type of a float dtype (None: no integer keys for it)."""
    return KEY_DTYPES.get(np.dtype(dtype))


def float_keys(values: np.ndarray) -> np.ndarray:
    """Order-preserving keys of a (small) float array, as a new array."""
    values = np.asarray(values)
    u = np.array(values, copy=True).view(KEY_DTYPES[values.dtype])
    flat = u.reshape(-1)
    keys_into(flat, flat)
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
    """The normal scores as sorted runs (see module doc): ``runs`` are sorted arrays of keys (or
    of floats for dtypes without keys); ``excluded`` (sorted keys) are entries of the runs that
    are not normal scores (the anomalous cells, when a whole map was sorted) and are subtracted
    from every count."""

    def __init__(self, runs: list[np.ndarray], dtype: np.dtype,
                 excluded: np.ndarray | None = None) -> None:
        self.runs = [r for r in runs if r.size] or [runs[0]]
        self.dtype = np.dtype(dtype)
        self._keyed = key_dtype(self.dtype) is not None
        self.excluded = excluded if excluded is not None and excluded.size else None
        n_excluded = 0 if self.excluded is None else int(self.excluded.size)
        self.size = sum(int(r.size) for r in self.runs) - n_excluded

    @classmethod
    def from_buffer(cls, buffer: np.ndarray, threads: int | None = None) -> SortedScores:
        """Sorts ``buffer`` (1-D, consumed: it holds the keys afterwards) as runs in threads."""
        if buffer.ndim != 1:
            raise ValueError("SortedScores needs a 1-D buffer")
        kd = key_dtype(buffer.dtype)
        data = buffer
        if kd is not None:
            data = buffer.view(kd)
            keys_into(data, data)
        threads = sort_threads() if threads is None else max(1, int(threads))
        n_runs = max(1, min(threads, buffer.size // MIN_RUN)) if kd is not None else 1
        runs = np.array_split(data, n_runs) if n_runs > 1 else [data]
        sort_runs(runs)
        return cls(runs, buffer.dtype)

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
        if self.excluded is not None:
            total += np.searchsorted(self.excluded, keys, side=side).astype(np.int64)
        return total

    def count_above_both(self, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(``#{scores > v}``, ``#{scores >= v}``) for each v."""
        return self.count_above(values, strict=True), self.count_above(values, strict=False)

    def _count_at_or_below(self, keys: np.ndarray) -> np.ndarray:
        total = sum(np.searchsorted(r, keys, side="right").astype(np.int64) for r in self.runs)
        if self.excluded is not None:
            total -= np.searchsorted(self.excluded, keys, side="right").astype(np.int64)
        return total

    def _values(self, keys: np.ndarray) -> np.ndarray:
        return floats_from_keys(keys, self.dtype) if self._keyed else np.asarray(keys)

    def at_ranks(self, ranks: np.ndarray) -> np.ndarray:
        """The scores at 0-based ascending ranks (order statistics), without merging the runs:
        per rank, the smallest key with more than ``rank`` scores at or below it."""
        ranks = np.asarray(ranks, dtype=np.int64)
        if len(self.runs) == 1 and self.excluded is None:
            return self._values(self.runs[0][ranks])
        if not self._keyed:
            return self.sorted_values()[ranks]
        lo = np.full(ranks.shape, min(r[0] for r in self.runs))
        hi = np.full(ranks.shape, max(r[-1] for r in self.runs))
        while np.any(lo < hi):
            mid = lo + (hi - lo) // 2
            enough = self._count_at_or_below(mid) > ranks
            hi = np.where(enough, mid, hi)
            lo = np.where(enough, lo, mid + 1)
        return self._values(lo)

    def min(self) -> np.generic:
        return self.at_ranks(np.array([0]))[0]

    def max(self) -> np.generic:
        return self.at_ranks(np.array([self.size - 1]))[0]

    def sorted_values(self) -> np.ndarray:
        """All scores in ascending order as one new float array (for plots; costs a merge)."""
        merged = self.runs[0] if len(self.runs) == 1 else np.sort(np.concatenate(self.runs))
        if self.excluded is not None:
            merged = remove_sorted(merged, self.excluded)
        return self._values(merged)


def remove_sorted(values: np.ndarray, drop: np.ndarray) -> np.ndarray:
    """``values`` (sorted) without the multiset ``drop`` (each of its entries occurs in
    ``values`` at least as often)."""
    if not drop.size:
        return values
    distinct, counts = np.unique(drop, return_counts=True)
    starts = np.searchsorted(values, distinct, side="left")
    index = np.repeat(starts - np.cumsum(counts) + counts, counts) + np.arange(counts.sum())
    return np.delete(values, index)


def sort_runs(runs: list[np.ndarray]) -> None:
    """Sorts each array in place, in parallel threads when there are several."""
    if len(runs) > 1:
        with ThreadPoolExecutor(len(runs)) as pool:
            list(pool.map(np.ndarray.sort, runs))
    elif runs:
        runs[0].sort()
