"""metrics/: regression vectors (specs/metrics.md §9), sklearn equivalence, bad input, evaluate"""

from __future__ import annotations

import math
import subprocess
import sys
import warnings

import numpy as np
import pytest
from sklearn.metrics import auc, average_precision_score, precision_recall_curve, roc_auc_score

import metrics
from metrics import UndefinedMetricWarning

# ---------------------------------------------------------------- §9 regression vectors

ANOMALIB_PREDS = (np.arange(2800) / 2800).reshape(400, 7)


def _columns(cols: list[int]) -> np.ndarray:
    gt = np.zeros((400, 7), np.uint8)
    gt[:, cols] = 1
    return gt


@pytest.mark.parametrize(
    "maps_gts, exact, sampled",
    [
        (([ANOMALIB_PREDS], [_columns([3])]), 0.1666656251, 0.16671719),
        (([ANOMALIB_PREDS], [_columns([1, 3, 5])]), 0.1666661458, 0.16694746),
        (([ANOMALIB_PREDS] * 2, [_columns([3]), _columns([1, 3, 5])]), 0.1666660156, 0.16663462),
    ],
    ids=["v1", "v2", "v3"],
)
def test_anomalib_vectors(maps_gts, exact, sampled):
    maps, gts = maps_gts
    # the spec's exact values come from the MVTec reference (float32 FPR, <= 4.4e-9 off); v1's
    # rational value is 53333/320000 = 0.166665625
    assert metrics.aupro(maps, gts, limit=1 / 3) == pytest.approx(exact, abs=1e-9)
    got = metrics.aupro(maps, gts, limit=1 / 3, mode="mvtec3d_sampled", num_thresholds=100)
    assert got == pytest.approx(sampled, abs=1e-8)
    assert abs(got - 1 / 6) < 1e-3  # anomalib's own tolerance


def test_anomalib_v1_is_the_rational_value():
    assert metrics.aupro([ANOMALIB_PREDS], [_columns([3])], limit=1 / 3) == pytest.approx(
        53333 / 320000, abs=1e-15)


def test_anomalib_v3_pixel_auroc():
    gts = [_columns([3]), _columns([1, 3, 5])]
    assert metrics.pixel_auroc([ANOMALIB_PREDS] * 2, gts) == 0.5


def test_hand_checkable_case():
    maps = [np.array([[6, 5, 4, 3, 2, 1]], np.float64)]
    gts = [np.array([[1, 0, 1, 0, 0, 0]])]
    assert metrics.aupro(maps, gts) == pytest.approx(0.5833333333333, abs=1e-12)
    assert metrics.aupro(maps, gts, mode="mvtec3d_sampled") == pytest.approx(0.7916666666667)
    assert metrics.pixel_auroc(maps, gts) == pytest.approx(0.875, abs=1e-15)
    assert metrics.pixel_aupr(maps, gts) == pytest.approx(0.8333333333333)
    assert metrics.pixel_aupr(maps, gts, variant="trapezoid") == pytest.approx(0.7916666666667)


def test_constant_map():
    gt = np.zeros((10, 10), np.uint8)
    gt[2:4, 2:4] = 1
    maps = [np.ones((10, 10), np.float32)]
    assert metrics.aupro(maps, [gt]) == pytest.approx(0.15, abs=1e-15)
    assert metrics.pixel_auroc(maps, [gt]) == 0.5
    assert metrics.aupro(maps, [gt], mode="mvtec3d_sampled") == 0.0


def test_perfect_separation_gives_one():
    rng = np.random.default_rng(1)
    gts = np.zeros((4, 16, 16), np.uint8)
    gts[0, 2:5, 2:5] = 1
    gts[1, 9:12, 3:14] = 1
    maps = np.where(gts > 0, 5.0, 0.0) + rng.random(gts.shape)
    labels = gts.reshape(4, -1).max(1)
    img = maps.reshape(4, -1).max(1)
    assert metrics.image_auroc(labels, img) == 1.0
    assert metrics.image_ap(labels, img) == 1.0
    assert metrics.pixel_auroc(maps, gts) == 1.0
    for mode in metrics.AUPRO_MODES:
        assert metrics.aupro(maps, gts, mode=mode) == pytest.approx(1.0, abs=1e-12)
    for variant in ("ap", "trapezoid"):
        assert metrics.pixel_aupr(maps, gts, variant=variant) == 1.0


def test_random_scores_approach_chance():
    rng = np.random.default_rng(2)
    gts = np.zeros((24, 48, 48), np.uint8)
    for i in range(0, 24, 2):
        gts[i, 10:30, 5 + i:25 + i] = 1
    maps = rng.random(gts.shape)
    assert metrics.pixel_auroc(maps, gts) == pytest.approx(0.5, abs=0.01)
    assert metrics.aupro(maps, gts, limit=0.3) == pytest.approx(0.15, abs=0.01)


# ---------------------------------------------------------------- sklearn equivalence


def _random_case(rng, n, ties):
    y = (rng.random(n) < rng.uniform(0.05, 0.6)).astype(int)
    y[:2] = [1, 0]  # both classes present
    y = rng.permutation(y)
    s = rng.standard_normal(n) + rng.uniform(0, 2) * y
    if ties:
        s = np.round(s * rng.choice([0.5, 1, 2, 4])) / 4
    return y, s.astype(rng.choice([np.float32, np.float64]))


def _sk_trapezoid_aupr(y, s):
    precision, recall, _ = precision_recall_curve(y, s)
    return auc(recall, precision)


@pytest.mark.parametrize("ties", [False, True])
def test_sample_metrics_match_sklearn(ties):
    rng = np.random.default_rng(10 + ties)
    for _ in range(40):
        y, s = _random_case(rng, int(rng.integers(2, 400)), ties)
        assert metrics.image_auroc(y, s) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
        assert metrics.image_ap(y, s) == pytest.approx(average_precision_score(y, s), abs=1e-12)
        assert metrics.point_aupr([s], [y], variant="trapezoid") == pytest.approx(
            _sk_trapezoid_aupr(y, s), abs=1e-12)


@pytest.mark.parametrize("ties", [False, True])
def test_pooled_metrics_match_sklearn(ties):
    rng = np.random.default_rng(20 + ties)
    for _ in range(8):
        n_maps, h, w = int(rng.integers(1, 5)), int(rng.integers(3, 30)), int(rng.integers(3, 30))
        gts = (rng.random((n_maps, h, w)) < 0.15).astype(np.uint8)
        gts[0, 0, 0], gts[0, -1, -1] = 1, 0
        maps = rng.standard_normal(gts.shape) + gts
        if ties:
            maps = np.round(maps * 2) / 2
        y, s = gts.ravel(), maps.ravel()
        assert metrics.pixel_auroc(maps, gts) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
        assert metrics.pixel_aupr(list(maps), list(gts)) == pytest.approx(
            average_precision_score(y, s), abs=1e-12)
        assert metrics.pixel_aupr(maps, gts, variant="trapezoid") == pytest.approx(
            _sk_trapezoid_aupr(y, s), abs=1e-12)
        clouds = [m.ravel() for m in maps]
        masks = [g.ravel() for g in gts]
        assert metrics.point_auroc(clouds, masks) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
        assert metrics.point_aupr(clouds, masks) == pytest.approx(
            average_precision_score(y, s), abs=1e-12)


@pytest.mark.parametrize("ties", [False, True])
def test_aupro_at_limit_one_with_single_pixel_regions_is_pixel_auroc(ties):
    rng = np.random.default_rng(30 + ties)
    gts = np.zeros((5, 30, 30), np.uint8)
    lattice = np.zeros((30, 30), bool)
    lattice[::2, ::2] = True  # isolated cells: every region is one pixel
    for i in range(4):
        gts[i][lattice & (rng.random((30, 30)) < 0.3)] = 1
    maps = rng.standard_normal(gts.shape) + 0.8 * gts
    if ties:
        maps = np.round(maps)
    ref = roc_auc_score(gts.ravel(), maps.ravel())
    assert metrics.aupro(maps, gts, limit=1.0) == pytest.approx(ref, abs=1e-12)
    assert metrics.pixel_auroc(maps, gts) == pytest.approx(ref, abs=1e-12)


def _tie_stress_set(seed, quantise):
    rng = np.random.default_rng(seed)
    gts = np.zeros((8, 32, 32), np.uint8)
    for i in range(0, 8, 2):
        for _ in range(rng.integers(1, 4)):
            r, c = rng.integers(0, 26, 2)
            gts[i, r:r + rng.integers(1, 7), c:c + rng.integers(1, 7)] = 1
    maps = (rng.standard_normal(gts.shape) + 2.0 * gts).astype(np.float32)
    if quantise:
        maps = np.round(maps * quantise) / quantise
    return maps, gts


# ---------------------------------------------------------------- bad inputs


def test_nan_score_names_the_sample():
    maps = np.zeros((4, 5, 5), np.float32)
    gts = np.zeros((4, 5, 5), np.uint8)
    gts[1, 2, 2] = 1
    maps[3, 1, 1] = np.nan
    with pytest.raises(ValueError, match="sample 3"):
        metrics.pixel_auroc(maps, gts)
    with pytest.raises(ValueError, match="sample 3"):
        metrics.aupro(maps, gts)
    with pytest.raises(ValueError, match="index 2"):
        metrics.image_auroc([0, 1, 0], [0.1, 0.2, np.inf])
    with pytest.raises(ValueError, match="sample 1"):
        metrics.point_auroc([np.zeros(3), np.array([0.0, np.nan])], [np.zeros(3), np.ones(2)])


def test_shape_mismatch_names_both_shapes():
    with pytest.raises(ValueError, match=r"\(5, 6\).*\(5, 5\)"):
        metrics.aupro([np.zeros((5, 6))], [np.zeros((5, 5))])
    with pytest.raises(ValueError, match=r"\(4, 4\).*\(4, 3\)"):
        metrics.pixel_auroc([np.zeros((4, 4))], [np.zeros((4, 4))], valid=[np.ones((4, 3))])
    with pytest.raises(ValueError, match=r"\(3,\).*\(2,\)"):
        metrics.image_auroc([0, 1, 1], [0.1, 0.2])
    with pytest.raises(ValueError, match="2 maps but 1 GT"):
        metrics.pixel_auroc([np.zeros((2, 2))] * 2, [np.zeros((2, 2))])


def _nan_with_warning(fn, *args, **kwargs):
    with pytest.warns(UndefinedMetricWarning):
        value = fn(*args, **kwargs)
    assert math.isnan(value)


def test_single_class_or_no_region_is_nan_with_warning():
    _nan_with_warning(metrics.image_auroc, [1, 1, 1], [0.1, 0.5, 0.2])
    _nan_with_warning(metrics.image_ap, [0, 0], [0.1, 0.5])
    empty = np.zeros((3, 4, 4), np.uint8)
    maps = np.random.default_rng(0).random((3, 4, 4))
    _nan_with_warning(metrics.pixel_auroc, maps, empty)
    for mode in metrics.AUPRO_MODES:
        _nan_with_warning(metrics.aupro, maps, empty, mode=mode)
    _nan_with_warning(metrics.aupro, maps, np.ones((3, 4, 4)))  # no normal cell
    _nan_with_warning(metrics.point_auroc, [np.zeros(4)], [np.zeros(4)])
    _nan_with_warning(metrics.point_aupro, [np.random.default_rng(0).random((5, 3))],
                      [np.zeros(5)], [np.zeros(5)])


def test_invalid_options_raise():
    maps, gts = np.zeros((1, 3, 3)), np.eye(3)[None]
    with pytest.raises(ValueError, match="mode"):
        metrics.aupro(maps, gts, mode="pyaupro")
    with pytest.raises(ValueError, match="limit"):
        metrics.aupro(maps, gts, limit=0.0)
    with pytest.raises(ValueError, match="limit"):
        metrics.aupro(maps, gts, limit=1.5)
    with pytest.raises(ValueError, match="variant"):
        metrics.point_aupr([np.zeros(2)], [np.ones(2)], variant="interpolated")
    with pytest.raises(ValueError, match="num_thresholds"):
        metrics.aupro(maps, gts, mode="mvtec3d_sampled", num_thresholds=1)


def test_warning_points_at_the_caller():
    with pytest.warns(UndefinedMetricWarning) as record:
        metrics.image_auroc([1, 1], [0.1, 0.5])
    assert record[0].filename == __file__


def test_metrics_package_does_not_import_torch():
    code = "import sys, metrics; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


# ---------------------------------------------------------------- evaluate()


def test_evaluate_returns_named_variants_matching_the_functions():
    maps, gts = _tie_stress_set(50, 3)
    labels = gts.reshape(len(gts), -1).max(1)
    scores = maps.reshape(len(maps), -1).max(1) + 0.01
    rng = np.random.default_rng(50)
    valid = rng.random(gts.shape) < 0.9
    clouds = [m.ravel() for m in maps]
    masks = [g.ravel() for g in gts]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = metrics.evaluate(labels, scores, maps=maps, gts=gts, valid=valid,
                               point_scores=clouds, point_masks=masks,
                               aupro_limit=(0.3, 0.05), aupr_variant="trapezoid")
    assert all(isinstance(r, metrics.MetricResult) for r in res)
    got = {(r.name, r.variant): r.value for r in res}
    assert got == {
        ("image_auroc", "exact,score=method"): metrics.image_auroc(labels, scores),
        ("image_ap", "step_ap,score=method"): metrics.image_ap(labels, scores),
        ("pixel_auroc", "exact,domain=valid"): metrics.pixel_auroc(maps, gts, valid),
        ("aupro", "exact,limit=0.3,domain=valid"): metrics.aupro(maps, gts, 0.3, valid),
        ("aupro", "exact,limit=0.05,domain=valid"): metrics.aupro(maps, gts, 0.05, valid),
        ("pixel_aupr", "trapezoid,domain=valid"): metrics.pixel_aupr(maps, gts, valid,
                                                                    "trapezoid"),
        ("point_auroc", "exact"): metrics.point_auroc(clouds, masks),
        ("point_aupr", "trapezoid"): metrics.point_aupr(clouds, masks, "trapezoid"),
    }


def test_evaluate_only_given_inputs_and_map_max_default():
    maps, gts = _tie_stress_set(51, None)
    res = metrics.evaluate(None, None, maps=maps, gts=gts, aupro_mode="mvtec3d_sampled",
                           num_thresholds=99)
    names = [r.name for r in res]
    assert names == ["image_auroc", "image_ap", "pixel_auroc", "aupro", "pixel_aupr"]
    by_name = {r.name: r for r in res}
    assert by_name["aupro"].variant == "mvtec3d_sampled,thresholds=99,limit=0.3,domain=all"
    assert by_name["aupro"].value == metrics.aupro(maps, gts, mode="mvtec3d_sampled",
                                                   num_thresholds=99)
    labels = gts.reshape(len(gts), -1).max(1)
    assert by_name["image_auroc"].variant == "exact,score=map_max"
    assert by_name["image_auroc"].value == metrics.image_auroc(labels, maps.max(axis=(1, 2)))
    only_image = metrics.evaluate([0, 1, 1], [0.2, 0.1, 0.9])
    assert [r.name for r in only_image] == ["image_auroc", "image_ap"]
    assert only_image[0].value == 0.5


def test_evaluate_warns_when_labels_disagree_with_gt():
    maps, gts = _tie_stress_set(52, None)
    labels = np.zeros(len(gts), int)  # one class only: image metrics are NaN (warned as well)
    with pytest.warns(RuntimeWarning, match="any\\(GT != 0\\)"), \
            warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        metrics.evaluate(labels, maps.max(axis=(1, 2)), maps=maps, gts=gts)


def test_counts_beyond_float32_integer_range_stay_exact():
    n = 2**24 + 1000  # float32 cumsum of ones stalls at 2**24
    maps = np.zeros((1, 1, n), np.float32)
    gts = np.zeros((1, 1, n), np.uint8)
    gts[0, 0, :3] = 1
    maps[0, 0, :3] = [1.0, 0.0, -1.0]
    assert metrics.pixel_auroc(maps, gts) == pytest.approx((1.0 + 0.5 + 0.0) / 3, abs=1e-15)
    assert metrics.aupro(maps, gts, limit=1.0) == pytest.approx(0.5, abs=1e-12)
