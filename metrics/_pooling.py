"""Pool the cells of a class's maps into a :class:`Ranked`, one map at a time (bounded memory).

Memory: the normal scores are copied once into a buffer sized for every cell (only the pages that
are written become resident) and sorted in place; per-map temporaries are a few boolean masks;
the anomalous cells (few) carry their score and a region id.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from metrics._checks import (
    as_array_list,
    check_finite,
    check_same_length,
    check_shape,
    score_dtype,
)
from metrics._ranking import Ranked

EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)


def _bbox(mask: np.ndarray) -> tuple[slice, slice]:
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    return slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)


def label_regions(gt: np.ndarray) -> tuple[np.ndarray, int]:
    """8-connected components of ``gt != 0`` (MVTec: scipy.ndimage.label with a 3x3 ones kernel);
    0 = background, 1..k = regions."""
    return ndimage.label(gt != 0, structure=EIGHT_CONNECTED)


def pool_maps(maps: np.ndarray | Sequence, gts: np.ndarray | Sequence,
              valid: np.ndarray | Sequence | None = None, *, regions: bool = True) -> Ranked:
    """Normal cells (GT == 0) and anomalous cells (GT != 0) of all maps, restricted to ``valid``
    cells when given. With ``regions`` the anomalous cells get the 8-connected GT region they
    belong to (labelled on the full GT; under ``valid`` a region keeps only its valid cells and a
    region without any valid cell disappears)."""
    maps_l = as_array_list(maps, "maps", 2)
    gts_l = as_array_list(gts, "gts", 2)
    check_same_length(maps_l, gts_l, "maps", "GT masks")
    valid_l = None
    if valid is not None:
        valid_l = as_array_list(valid, "valid", 2)
        check_same_length(maps_l, valid_l, "maps", "valid masks")
    dtype = score_dtype(maps_l)
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
        anomalous = g != 0
        normal = ~anomalous
        if v is not None:
            normal &= v
        k = int(np.count_nonzero(normal))
        if m.dtype == dtype:  # straight into the buffer, no per-map temporary
            np.compress(normal.ravel(), m.ravel(), out=buffer[n_neg:n_neg + k])
        else:
            buffer[n_neg:n_neg + k] = m[normal]
        n_neg += k
        if not anomalous.any():
            continue
        box = _bbox(anomalous)  # every anomalous cell lies inside this box
        sub_gt = g[box]
        if regions:
            lab, n_lab = label_regions(sub_gt)
            sel = lab > 0
        else:
            sel = sub_gt != 0
        if v is not None:
            sel &= v[box]
        pos_parts.append(m[box][sel].astype(dtype, copy=False))
        if regions:
            id_parts.append(lab[sel].astype(np.int64) + (next_id - 1))
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
