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
from metrics._sorted import SortedScores, float_keys, key_dtype, keys_into

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


def _pool_keyed(maps_l: list[np.ndarray], gts_l: list[np.ndarray], dtype: np.dtype,
                regions: bool) -> Ranked:
    """Every cell's key into one buffer, maps split into ranges pooled and sorted in threads."""
    kd = key_dtype(dtype)
    sizes = np.array([m.size for m in maps_l], np.int64)
    ends = np.cumsum(sizes)
    buffer = np.empty(int(ends[-1]), kd)
    n_ranges = max(1, min(_sorted.sort_threads(), len(maps_l), buffer.size // _sorted.MIN_RUN))
    # contiguous map ranges of about equal cell counts: [bounds[j], bounds[j + 1])
    cuts = np.searchsorted(ends, np.arange(1, n_ranges) * buffer.size / n_ranges) + 1
    bounds = np.unique(np.concatenate([[0], cuts, [len(maps_l)]])).tolist()

    def pool_range(lo: int, hi: int) -> list[tuple[np.ndarray, np.ndarray | None, int]]:
        found = []
        for i in range(lo, hi):
            m, g = maps_l[i], gts_l[i]
            check_shape(m, g, "map", "GT", i)
            check_finite(m, "maps", i)
            bits = np.ascontiguousarray(m, dtype=dtype).reshape(-1).view(kd)
            keys_into(bits, buffer[ends[i] - sizes[i]:ends[i]])
            found.append(_anomalous_cells(m, g, None, dtype, regions))
        run(lo, hi).sort()
        return found

    def run(lo: int, hi: int) -> np.ndarray:
        return buffer[int(ends[lo] - sizes[lo]):int(ends[hi - 1])]

    spans = list(zip(bounds[:-1], bounds[1:]))
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
    normals = SortedScores([run(lo, hi) for lo, hi in spans], dtype, np.sort(float_keys(pos)))
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
