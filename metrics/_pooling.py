"""Pool the cells of a class's maps into a :class:`Ranked`, one map at a time (bounded memory).

Without a ``valid`` mask every cell's order-preserving key is written straight into one buffer
(no selection of the normal cells: the anomalous cells, which are few and collected anyway, are
subtracted from every count instead), and the maps are split into contiguous ranges that threads
pool and sort in parallel (``metrics._sorted``). With ``valid`` only the valid normal cells are
copied. Memory: one buffer of the cells' scores, per-map temporaries, the anomalous cells with
their region ids.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from scipy import ndimage

from metrics import _sorted
from metrics._checks import (
    as_array_list,
    check_finite,
    check_same_length,
    check_shape,
    score_dtype,
)
from metrics._ranking import Ranked
from metrics._sorted import float_keys, floats_from_keys, key_dtype, keys_into

EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)


def _bbox(mask: np.ndarray) -> tuple[slice, slice]:
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    return slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)


def label_regions(gt: np.ndarray) -> tuple[np.ndarray, int]:
    """8-connected components of ``gt != 0`` (MVTec: scipy.ndimage.label with a 3x3 ones kernel);
    0 = background, 1..k = regions."""
    return ndimage.label(gt != 0, structure=EIGHT_CONNECTED)


def _anomalous_cells(m: np.ndarray, g: np.ndarray, v: np.ndarray | None, dtype: np.dtype,
                     regions: bool) -> tuple[np.ndarray, np.ndarray | None, int]:
    """Scores of the (valid) anomalous cells of one map, their 0-based local region labels (with
    ``regions``) and the number of labels used."""
    anomalous = g != 0
    if not anomalous.any():
        return np.zeros(0, dtype), np.zeros(0, np.int64) if regions else None, 0
    box = _bbox(anomalous)  # every anomalous cell lies inside this box
    sub_gt = g[box]
    if regions:
        lab, n_lab = label_regions(sub_gt)
        sel = lab > 0
    else:
        lab, n_lab, sel = None, 0, sub_gt != 0
    if v is not None:
        sel &= v[box]
    scores = m[box][sel].astype(dtype, copy=False)
    ids = lab[sel].astype(np.int64) - 1 if regions else None
    return scores, ids, n_lab


BATCH_CELLS = 1 << 24  # cells keyed and sorted at once per thread (64 MB of float32 keys)


class MapNormals:
    """The normal cells of a class's maps, answered by streaming over the maps (no copy of all
    normal scores): each request keys and sorts the maps batch by batch in threads, counts against
    every batch and sums. Every cell is sorted; the anomalous cells (``excluded``, sorted keys)
    are subtracted. Same interface as :class:`metrics._sorted.SortedScores`."""

    def __init__(self, maps_l: list[np.ndarray], dtype: np.dtype, excluded: np.ndarray) -> None:
        self.maps, self.dtype, self.excluded = maps_l, np.dtype(dtype), excluded
        self.key_dtype = key_dtype(self.dtype)
        self.size = sum(int(m.size) for m in maps_l) - int(excluded.size)
        self.batches: list[tuple[int, int]] = []
        start, cells = 0, 0
        for i, m in enumerate(maps_l):
            if cells and cells + m.size > BATCH_CELLS:
                self.batches.append((start, i))
                start, cells = i, 0
            cells += int(m.size)
        self.batches.append((start, len(maps_l)))

    def _sorted_batch(self, lo: int, hi: int) -> np.ndarray:
        maps = self.maps[lo:hi]
        keys = np.empty(sum(int(m.size) for m in maps), self.key_dtype)
        at = 0
        for m in maps:
            bits = np.ascontiguousarray(m, dtype=self.dtype).reshape(-1).view(self.key_dtype)
            keys_into(bits, keys[at:at + bits.size])
            at += bits.size
        keys.sort()
        return keys

    def _stream(self, fn):
        """Sum over batches of ``fn(sorted keys of the batch)``, batches sorted in threads."""
        def one(span):
            return fn(self._sorted_batch(*span))

        threads = min(_sorted.sort_threads(), len(self.batches))
        if threads > 1:
            with ThreadPoolExecutor(threads) as pool:
                parts = list(pool.map(one, self.batches))
        else:
            parts = [one(span) for span in self.batches]
        return sum(parts[1:], parts[0])

    def _keys(self, values: np.ndarray, strict: bool) -> np.ndarray:
        return float_keys(_sorted.nearest_in_dtype(np.asarray(values), self.dtype, strict=strict))

    def count_above_both(self, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(``#{normals > v}``, ``#{normals >= v}``) for each v, in one pass over the maps."""
        strict, loose = self._keys(values, True), self._keys(values, False)

        def at_or_below(run: np.ndarray) -> np.ndarray:
            return np.stack([np.searchsorted(run, strict, side="right"),
                             np.searchsorted(run, loose, side="left")]).astype(np.int64)

        below = self._stream(at_or_below)
        below[0] -= np.searchsorted(self.excluded, strict, side="right")
        below[1] -= np.searchsorted(self.excluded, loose, side="left")
        return self.size - below[0], self.size - below[1]

    def count_above(self, values: np.ndarray, *, strict: bool) -> np.ndarray:
        return self.count_above_both(values)[0 if strict else 1]

    def at_ranks(self, ranks: np.ndarray) -> np.ndarray:
        """Order statistics: a histogram of the keys' top 16 bits finds each rank's bucket, a
        second pass collects only those buckets' keys."""
        ranks = np.asarray(ranks, dtype=np.int64)
        shift = self.key_dtype.itemsize * 8 - 16
        hist = self._stream(lambda run: np.bincount((run >> shift).astype(np.int64),
                                                  minlength=1 << 16))
        hist -= np.bincount((self.excluded >> shift).astype(np.int64), minlength=1 << 16)
        cum = np.cumsum(hist)
        buckets = np.searchsorted(cum, ranks, side="right")
        wanted = np.unique(buckets)
        lo_keys = (wanted.astype(self.key_dtype) << shift).astype(self.key_dtype)

        def collect(run: np.ndarray) -> list:
            starts = np.searchsorted(run, lo_keys, side="left")
            ends = np.searchsorted(run, lo_keys + (1 << shift) - 1, side="right")
            return [[run[s:e].copy() for s, e in zip(starts, ends)]]

        per_batch = self._stream(collect)
        out = np.empty(ranks.shape, self.key_dtype)
        for j, bucket in enumerate(wanted):
            keys = np.sort(np.concatenate([b[j] for b in per_batch]))
            mine = self.excluded[(self.excluded >> shift) == bucket]
            keys = _sorted.remove_sorted(keys, mine)
            before = int(cum[bucket - 1]) if bucket else 0
            sel = buckets == bucket
            out[sel] = keys[ranks[sel] - before]
        return floats_from_keys(out, self.dtype)

    def min(self) -> np.generic:
        return self.at_ranks(np.array([0]))[0]

    def max(self) -> np.generic:
        return self.at_ranks(np.array([self.size - 1]))[0]

    def sorted_values(self) -> np.ndarray:
        """Every normal score in ascending order (one full array: for plots of small runs)."""
        keys = np.sort(np.concatenate(self._stream(lambda run: [run])))
        return floats_from_keys(_sorted.remove_sorted(keys, self.excluded), self.dtype)


def _pool_keyed(maps_l: list[np.ndarray], gts_l: list[np.ndarray], dtype: np.dtype,
                regions: bool) -> Ranked:
    """Checks every map and collects the anomalous cells (in threads over map ranges); the
    normal cells stay in the maps and are streamed (:class:`MapNormals`)."""
    n_ranges = max(1, min(_sorted.sort_threads(), len(maps_l)))
    bounds = np.linspace(0, len(maps_l), n_ranges + 1).astype(int).tolist()

    def pool_range(lo: int, hi: int) -> list[tuple[np.ndarray, np.ndarray | None, int]]:
        found = []
        for i in range(lo, hi):
            m, g = maps_l[i], gts_l[i]
            check_shape(m, g, "map", "GT", i)
            check_finite(m, "maps", i)
            found.append(_anomalous_cells(m, g, None, dtype, regions))
        return found

    spans = [(lo, hi) for lo, hi in zip(bounds[:-1], bounds[1:]) if hi > lo]
    if len(spans) > 1:
        with ThreadPoolExecutor(len(spans)) as pool:
            futures = [pool.submit(pool_range, lo, hi) for lo, hi in spans]
            parts = [p for f in futures for p in f.result()]  # in map order; first error first
    else:
        parts = pool_range(*spans[0])
    pos = np.concatenate([p[0] for p in parts])
    ids = None
    if regions:
        offsets = np.cumsum([0] + [p[2] for p in parts[:-1]])
        ids = np.concatenate([p[1] + o for p, o in zip(parts, offsets)])
    normals = MapNormals(maps_l, dtype, np.sort(float_keys(pos)))
    return Ranked.from_sorted(normals, pos, ids)


def pool_maps(maps: np.ndarray | Sequence, gts: np.ndarray | Sequence,
              valid: np.ndarray | Sequence | None = None, *, regions: bool = True) -> Ranked:
    """Normal cells (GT == 0) and anomalous cells (GT != 0) of all maps, restricted to ``valid``
    cells when given. With ``regions`` the anomalous cells get the 8-connected GT region they
    belong to (labelled on the full GT; under ``valid`` a region keeps only its valid cells and a
    region without any valid cell disappears)."""
    maps_l = as_array_list(maps, "maps", 2)
    gts_l = as_array_list(gts, "gts", 2)
    check_same_length(maps_l, gts_l, "maps", "GT masks")
    dtype = score_dtype(maps_l)
    if valid is None and key_dtype(dtype) is not None and maps_l:
        return _pool_keyed(maps_l, gts_l, dtype, regions)
    valid_l = None
    if valid is not None:
        valid_l = as_array_list(valid, "valid", 2)
        check_same_length(maps_l, valid_l, "maps", "valid masks")
    buffer = np.empty(sum(m.size for m in maps_l), dtype=dtype)
    n_neg = 0
    pos_parts: list[np.ndarray] = []
    id_parts: list[np.ndarray] = []
    next_id = 0
    for i, (m, g) in enumerate(zip(maps_l, gts_l)):
        check_shape(m, g, "map", "GT", i)
        check_finite(m, "maps", i)
        v = None
        if valid_l is not None:
            check_shape(m, valid_l[i], "map", "valid", i)
            v = valid_l[i] != 0
        normal = g == 0
        if v is not None:
            normal &= v
        k = int(np.count_nonzero(normal))
        if m.dtype == dtype:  # straight into the buffer, no per-map temporary
            np.compress(normal.ravel(), m.ravel(), out=buffer[n_neg:n_neg + k])
        else:
            buffer[n_neg:n_neg + k] = m[normal]
        n_neg += k
        scores, ids, n_lab = _anomalous_cells(m, g, v, dtype, regions)
        pos_parts.append(scores)
        if regions:
            id_parts.append(ids + next_id)
            next_id += n_lab
    pos = np.concatenate(pos_parts) if pos_parts else np.zeros(0, dtype)
    ids = None
    if regions:
        ids = np.concatenate(id_parts) if id_parts else np.zeros(0, np.int64)
    return Ranked.from_parts(buffer[:n_neg], pos, ids)


def pool_flat(scores: np.ndarray | Sequence, masks: np.ndarray | Sequence,
              name: str = "scores") -> tuple[np.ndarray, list[np.ndarray], list[np.ndarray]]:
    """Validate per-sample 1-D scores and masks; returns the pooled dtype and the two lists."""
    scores_l = as_array_list(scores, name, 1)
    masks_l = as_array_list(masks, "masks", 1)
    check_same_length(scores_l, masks_l, name, "masks")
    for i, (s, m) in enumerate(zip(scores_l, masks_l)):
        check_shape(s, m, name, "mask", i)
        check_finite(s, name, i)
    return score_dtype(scores_l), scores_l, masks_l


def pool_points(scores: np.ndarray | Sequence, masks: np.ndarray | Sequence,
                region_ids: Sequence[np.ndarray] | None = None) -> Ranked:
    """Pool per-cloud point scores (normal = mask 0). ``region_ids``: per cloud, one region label
    (0..k_i-1) per positive point, in the cloud's point order."""
    dtype, scores_l, masks_l = pool_flat(scores, masks)
    buffer = np.empty(sum(s.size for s in scores_l), dtype=dtype)
    n_neg = 0
    pos_parts, id_parts = [], []
    next_id = 0
    for i, (s, m) in enumerate(zip(scores_l, masks_l)):
        positive = m != 0
        k = s.size - int(np.count_nonzero(positive))
        buffer[n_neg:n_neg + k] = s[~positive]
        n_neg += k
        pos_parts.append(s[positive].astype(dtype, copy=False))
        if region_ids is not None:
            ids = np.asarray(region_ids[i], np.int64)
            id_parts.append(ids + next_id)
            next_id += int(ids.max()) + 1 if ids.size else 0
    pos = np.concatenate(pos_parts) if pos_parts else np.zeros(0, dtype)
    ids = None
    if region_ids is not None:
        ids = np.concatenate(id_parts) if id_parts else np.zeros(0, np.int64)
    return Ranked.from_parts(buffer[:n_neg], pos, ids)
