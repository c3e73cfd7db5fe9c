"""metrics/ against straightforward (slow, loop) re-implementations of the published algorithms,
written here from their descriptions in specs/metrics.md: MVTec AD exact PRO (§2.2), MVTec 3D-AD
sampled PRO (§2.3) and the cflow-ad / PointAD routine (§3)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage
from sklearn.metrics import auc, roc_auc_score
from test_metrics import _tie_stress_set

import metrics

EIGHT = np.ones((3, 3), dtype=int)


def _reference_trapezoid(x, y, x_max):
    """Area under the polyline up to x_max with linear interpolation (loop version)."""
    area = 0.0
    for i in range(1, len(x)):
        x0, x1, y0, y1 = x[i - 1], x[i], y[i - 1], y[i]
        if x0 >= x_max:
            break
        if x1 > x_max:
            y1 = y0 + (y1 - y0) * (x_max - x0) / (x1 - x0)
            x1 = x_max
        area += 0.5 * (y0 + y1) * (x1 - x0)
    return area


def reference_exact_aupro(maps, gts, limit, valid=None):
    """MVTec AD's exact PRO, written out: descending argsort of all cells, cumulative FP count
    and cumulative region share, keep the last cell of each tie run, (0,0) and (1,1) added."""
    scores, fp_inc, pro_inc, region_of = [], [], [], []
    offset = 0
    for i, (m, g) in enumerate(zip(maps, gts)):
        lab, k = ndimage.label(g != 0, structure=EIGHT)
        keep = np.ones(g.shape, bool) if valid is None else valid[i].astype(bool)
        scores.append(m[keep].astype(np.float64))
        fp_inc.append((lab[keep] == 0).astype(np.int64))
        region_of.append(np.where(lab[keep] > 0, lab[keep] + offset, 0))
        offset += k
    scores, fp_inc = np.concatenate(scores), np.concatenate(fp_inc)
    region_of = np.concatenate(region_of)
    sizes = np.bincount(region_of, minlength=offset + 1)
    n_regions = np.count_nonzero(sizes[1:])
    pro_inc = np.where(region_of > 0, 1.0 / np.maximum(sizes[region_of], 1), 0.0) / n_regions
    order = np.argsort(-scores, kind="stable")
    s = scores[order]
    fpr = np.cumsum(fp_inc[order]) / fp_inc.sum()
    pro = np.cumsum(pro_inc[order])
    last = np.append(s[1:] != s[:-1], True)
    x = np.concatenate([[0.0], fpr[last], [1.0]])
    y = np.concatenate([[0.0], np.minimum(pro[last], 1.0), [1.0]])
    return _reference_trapezoid(x, y, limit) / limit


@pytest.mark.parametrize("quantise", [None, 3, 1])
def test_exact_aupro_limit_sweep_matches_reference(quantise):
    maps, gts = _tie_stress_set(40, quantise)
    for limit in (0.01, 0.05, 0.1, 0.3, 0.5, 0.77, 1.0):
        ref = reference_exact_aupro(maps, gts, limit)
        assert metrics.aupro(maps, gts, limit=limit) == pytest.approx(ref, abs=1e-9)


def test_valid_mask_restricts_cells_and_regions():
    maps, gts = _tie_stress_set(41, 3)
    rng = np.random.default_rng(41)
    valid = rng.random(gts.shape) < 0.8
    valid[2] = False  # a whole sample without valid points
    ref = reference_exact_aupro(maps, gts, 0.3, valid=valid)
    assert metrics.aupro(maps, gts, valid=valid) == pytest.approx(ref, abs=1e-9)
    assert metrics.pixel_auroc(maps, gts, valid=valid) == pytest.approx(
        roc_auc_score(gts[valid], maps[valid]), abs=1e-12)
    everywhere = np.ones(gts.shape, bool)
    assert metrics.aupro(maps, gts, valid=everywhere) == metrics.aupro(maps, gts)


def test_exact_aupro_with_varied_map_sizes_and_dtypes():
    rng = np.random.default_rng(42)
    maps = [rng.standard_normal((9, 13)).astype(np.float32), rng.standard_normal((20, 7))]
    gts = [np.zeros((9, 13), np.uint8), np.zeros((20, 7), bool)]
    gts[0][2:4, 3:8] = 255
    gts[1][10:15, 1:3] = True
    ref = reference_exact_aupro(maps, gts, 0.3)
    assert metrics.aupro(maps, gts) == pytest.approx(ref, abs=1e-12)


# ---------------------------------------------------------------- MVTec 3D-AD sampled routine


def reference_sampled_aupro(maps, gts, limit, num_thresholds):
    """Per-region score lists and one sorted list of normal scores; thresholds are the normal
    scores at evenly spaced integer ranks; FPR from the rank; overlap = share of a region's
    cells strictly above the threshold; curve = (1,1) plus one point per threshold, reversed;
    MVTec trapezoid to the limit, divided by it."""
    regions, normal = [], []
    for m, g in zip(maps, gts):
        lab, k = ndimage.label(g != 0, structure=EIGHT)
        normal.extend(m[lab == 0].astype(np.float64).tolist())
        regions.extend(m[lab == r] for r in range(1, k + 1))
    normal = sorted(normal)
    count = len(normal)
    xs, ys = [1.0], [1.0]
    for rank in np.linspace(0, count - 1, num=num_thresholds, dtype=int):
        threshold = normal[rank]
        xs.append(1.0 - (rank + 1) / count)
        ys.append(sum(float(np.mean(r > threshold)) for r in regions) / len(regions))
    xs.reverse()
    ys.reverse()
    return _reference_trapezoid(xs, ys, limit) / limit


@pytest.mark.parametrize("quantise", [None, 3, 1])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sampled_mode_matches_loop_reference(quantise, dtype):
    maps, gts = _tie_stress_set(60, quantise)
    maps = maps.astype(dtype)
    for limit, thresholds in ((0.3, 100), (0.3, 512), (0.1, 99), (0.05, 99), (0.01, 99)):
        ref = reference_sampled_aupro(maps, gts, limit, thresholds)
        got = metrics.aupro(maps, gts, limit=limit, mode="mvtec3d_sampled",
                            num_thresholds=thresholds)
        assert got == pytest.approx(ref, abs=1e-12), (limit, thresholds)


def test_sampled_mode_with_fewer_normals_than_thresholds():
    rng = np.random.default_rng(61)
    maps = rng.standard_normal((2, 3, 4))
    gts = np.zeros((2, 3, 4), np.uint8)
    gts[0, :, 1:] = 1
    gts[1, 1:, :3] = 1
    ref = reference_sampled_aupro(maps, gts, 0.3, 100)
    assert metrics.aupro(maps, gts, mode="mvtec3d_sampled") == pytest.approx(ref, abs=1e-12)


def test_sampled_mode_is_biased_low_on_ties():
    maps, gts = _tie_stress_set(62, 1)
    assert metrics.aupro(maps, gts, mode="mvtec3d_sampled") < metrics.aupro(maps, gts) - 0.01


# ---------------------------------------------------------------- cflow-ad / PointAD routine


def reference_cflow_aupro(maps, gts, limit=0.3, steps=200):
    """200 linear thresholds from the stacked maps' min (inclusive) to max (exclusive); at each,
    binarise with score > threshold, label every GT map (8-connected) and average the per-region
    hit share; FPR over all GT-zero cells; keep FPR < limit, min-max rescale it, sklearn auc."""
    amaps = np.stack(maps)
    masks = np.stack(gts) != 0
    lo, hi = amaps.min(), amaps.max()
    fprs, pros = [], []
    for threshold in np.arange(lo, hi, (hi - lo) / steps):
        binary = amaps > threshold
        shares = []
        for b, mask in zip(binary, masks):
            lab, k = ndimage.label(mask, structure=EIGHT)
            for r in range(1, k + 1):
                cells = lab == r
                shares.append(b[cells].sum() / cells.sum())
        fprs.append(np.logical_and(~masks, binary).sum() / (~masks).sum())
        pros.append(np.mean(shares))
    fprs, pros = np.array(fprs), np.array(pros)
    keep = fprs < limit
    f = fprs[keep]
    f = (f - f.min()) / (f.max() - f.min())
    return auc(f, pros[keep])


@pytest.mark.parametrize("quantise", [None, 3])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cflow_mode_matches_loop_reference(quantise, dtype):
    maps, gts = _tie_stress_set(70, quantise)
    maps = maps[:4, :20, :20].astype(dtype)
    gts = gts[:4, :20, :20]
    for limit in (0.3, 0.1):
        ref = reference_cflow_aupro(list(maps), list(gts), limit)
        got = metrics.aupro(maps, gts, limit=limit, mode="cflow200")
        assert got == pytest.approx(ref, abs=1e-12), limit


def test_modes_differ_as_documented_on_tied_scores():
    maps, gts = _tie_stress_set(71, 1)
    exact = metrics.aupro(maps, gts)
    assert metrics.aupro(maps, gts, mode="cflow200") != pytest.approx(exact, abs=1e-3)
    sk = roc_auc_score(gts.ravel(), maps.ravel())
    assert metrics.pixel_auroc(maps, gts) == pytest.approx(sk, abs=1e-12)
