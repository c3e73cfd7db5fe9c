"""metrics._sorted: order-preserving keys and sorted runs, and every metric on adversarial inputs
with the runs forced small (so the multi-run, multi-thread path is the one under test)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score
from test_metrics_reference import (
    reference_cflow_aupro,
    reference_exact_aupro,
    reference_sampled_aupro,
)

import metrics
from metrics import _pooling, _sorted
from metrics._ranking import Ranked
from metrics._sorted import SortedScores, float_keys, floats_from_keys


@pytest.fixture
def small_runs(monkeypatch):
    """Runs of at least 8 scores and batches of 64 cells, so a few hundred cells give several
    runs and batches in several threads."""
    monkeypatch.setattr(_sorted, "MIN_RUN", 8)
    monkeypatch.setattr(_pooling, "BATCH_CELLS", 64)
    monkeypatch.setattr(_sorted, "sort_threads", lambda: 3)


def _awkward_floats(dtype) -> np.ndarray:
    info = np.finfo(dtype)
    one = dtype(1.0)
    values = [0.0, -0.0, info.smallest_subnormal, -info.smallest_subnormal, info.tiny, -info.tiny,
              one, np.nextafter(one, dtype(2)), np.nextafter(one, dtype(0)), -one,
              np.nextafter(-one, dtype(0)), info.max, -info.max, 3.5, -3.5, 1e-3, -1e-3]
    return np.array(values, dtype=dtype)


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_keys_order_like_the_floats(dtype):
    rng = np.random.default_rng(0)
    x = np.concatenate([_awkward_floats(dtype), rng.standard_normal(500).astype(dtype)])
    keys = float_keys(x)
    order_f, order_k = np.argsort(x, kind="stable"), np.argsort(keys, kind="stable")
    np.testing.assert_array_equal(x[order_f], x[order_k])  # same order (ties: equal values)
    # equality is preserved exactly, -0.0 == +0.0 included
    np.testing.assert_array_equal(keys[:, None] == keys[None, :], x[:, None] == x[None, :])
    back = floats_from_keys(keys, np.dtype(dtype))
    np.testing.assert_array_equal(back, x)  # -0.0 returns as +0.0, which compares equal


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sorted_runs_answer_like_one_sorted_array(small_runs, dtype):
    rng = np.random.default_rng(1)
    x = np.round(rng.standard_normal(1000) * 3).astype(dtype)  # heavy ties
    x[:17] = _awkward_floats(dtype)
    reference = np.sort(x)
    runs = SortedScores.from_buffer(x.copy())
    assert len(runs.runs) == 3
    with np.errstate(over="ignore"):
        above = np.nextafter(np.unique(x), np.inf)
    queries = np.concatenate([np.unique(x), above, [-np.inf, np.inf]])
    for strict, side in ((True, "right"), (False, "left")):
        expected = x.size - np.searchsorted(reference, queries.astype(dtype), side=side)
        np.testing.assert_array_equal(runs.count_above(queries.astype(dtype), strict=strict),
                                      expected)
    ranks = np.array([0, 1, 17, 499, 500, 998, 999])
    np.testing.assert_array_equal(runs.at_ranks(ranks), reference[ranks])
    assert runs.min() == reference[0] and runs.max() == reference[-1]
    np.testing.assert_array_equal(runs.sorted_values(), reference)


def test_wider_queries_compare_like_floats(small_runs):
    x = np.array([0.1, 0.2, 0.3] * 10, np.float32)
    runs = SortedScores.from_buffer(x.copy())
    q = np.array([0.1, 0.2, float(np.float32(0.2)), 0.30000001], np.float64)  # float64 queries
    for strict in (True, False):
        expected = [int(np.sum(x > v) if strict else np.sum(x >= v)) for v in q]
        np.testing.assert_array_equal(runs.count_above(q, strict=strict), expected)


def _adversarial_cases():
    rng = np.random.default_rng(2)
    shape = (6, 9, 11)
    gts = np.zeros(shape, np.uint8)
    gts[0, 2:5, 3:6] = 1
    gts[2, 0, 0] = 1
    gts[3, 4:9, 7:11] = 1
    gts[3, 0:2, 0:2] = 1
    base = rng.standard_normal(shape).astype(np.float32) + gts
    f32 = np.float32
    tiny = np.finfo(np.float32).smallest_subnormal
    cases = {
        "all equal": np.full(shape, 0.25, f32),
        "two values": np.where(rng.random(shape) < 0.5, f32(1), f32(2)),
        "denormals": (rng.integers(-3, 4, shape) * tiny).astype(f32),
        "signed zeros": np.where(rng.random(shape) < 0.5, f32(0.0), f32(-0.0)),
        "last ulp": np.nextafter(f32(1), f32(2)) * (rng.random(shape) < 0.5) + f32(1)
        * (rng.random(shape) >= 0.5),
        "random": base,
    }
    return gts, cases


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", list(_adversarial_cases()[1]))
@pytest.mark.filterwarnings("ignore::metrics.UndefinedMetricWarning")
def test_metrics_on_adversarial_maps(small_runs, name, dtype):
    gts, cases = _adversarial_cases()
    maps = cases[name].astype(dtype)
    y, s = gts.ravel(), maps.ravel().astype(np.float64)
    assert metrics.pixel_auroc(maps, gts) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert metrics.pixel_aupr(maps, gts) == pytest.approx(average_precision_score(y, s),
                                                          abs=1e-12)
    for limit in (0.05, 0.3, 1.0):
        assert metrics.aupro(maps, gts, limit=limit) == pytest.approx(
            reference_exact_aupro(maps, gts, limit), abs=1e-12)
    if np.unique(maps).size > 1:  # the sampled and cflow routines need a score range
        assert metrics.aupro(maps, gts, mode="mvtec3d_sampled") == pytest.approx(
            reference_sampled_aupro(maps, gts, 0.3, 100), abs=1e-12)
        cflow = metrics.aupro(maps, gts, mode="cflow200")
        try:
            expected = reference_cflow_aupro(maps, gts)
        except ValueError:  # the routine has fewer than 2 points below the limit: undefined
            expected = float("nan")
        np.testing.assert_allclose(cflow, expected, rtol=0, atol=1e-12)


def test_compatibility_modes_identical_with_one_run_or_many(monkeypatch):
    """Forcing several runs changes nothing: the answers are identical to the last bit."""
    gts, cases = _adversarial_cases()
    maps = cases["random"]
    one = [metrics.aupro(maps, gts, mode=m) for m in ("exact", "mvtec3d_sampled", "cflow200")]
    one.append(metrics.pixel_auroc(maps, gts))
    monkeypatch.setattr(_sorted, "MIN_RUN", 4)
    monkeypatch.setattr(_sorted, "sort_threads", lambda: 5)
    many = [metrics.aupro(maps, gts, mode=m) for m in ("exact", "mvtec3d_sampled", "cflow200")]
    many.append(metrics.pixel_auroc(maps, gts))
    assert one == many
    assert many[2] == pytest.approx(reference_cflow_aupro(maps, gts), abs=1e-12)


def test_one_anomalous_pixel(small_runs):
    maps = np.random.default_rng(3).standard_normal((2, 20, 20)).astype(np.float32)
    gts = np.zeros(maps.shape, np.uint8)
    gts[1, 7, 7] = 1
    normals = np.sort(maps[gts == 0])
    maps[1, 7, 7] = (normals[-4] + normals[-5]) / 2  # 4 normals above it, none tied
    n = maps.size - 1
    assert metrics.pixel_auroc(maps, gts) == pytest.approx(1 - 4 / n, abs=1e-15)
    assert metrics.pixel_aupr(maps, gts) == pytest.approx(1 / 5, abs=1e-15)
    # PRO jumps to 1 at FPR 4/n: exact AUPRO@0.3 = (0.3 - 4/n) / 0.3
    assert metrics.aupro(maps, gts) == pytest.approx((0.3 - 4 / n) / 0.3, abs=1e-12)


class _ManyNormals:
    """Stand-in for a billion normal scores (4 GB do not fit a CI machine): ``count`` copies of
    each value, answering the two questions Ranked asks."""

    def __init__(self, values: np.ndarray, counts: np.ndarray) -> None:
        self.values, self.counts = values, counts.astype(np.int64)
        self.size = int(self.counts.sum())

    def count_above(self, q, *, strict):
        q = np.asarray(q)[..., None]
        above = self.values > q if strict else self.values >= q
        return (above * self.counts).sum(axis=-1)

    def count_above_both(self, q):
        return self.count_above(q, strict=True), self.count_above(q, strict=False)


def test_billion_to_one_imbalance_stays_exact():
    n = 10**9
    normals = _ManyNormals(np.array([0.0, 1.0, 2.0]), np.array([n - 3, 2, 1]))
    ranked = Ranked(normals, np.array([1.5]), np.array([1.0]), 1)
    assert ranked.auroc() == 1 - (1 + 1) / (2 * n)  # one normal above, none tied
    assert ranked.average_precision() == 1 / 2
    # PRO is 1 from FPR 1/n on: AUPRO@0.3 = (0.3 - 1/n) / 0.3 (relative error ~1e-16)
    assert ranked.pro_exact(0.3) == pytest.approx((0.3 - 1 / n) / 0.3, rel=1e-15)
    tied = Ranked(normals, np.array([1.0]), np.array([1.0]), 1)
    assert tied.auroc() == 1 - (1 + 3) / (2 * n)  # one above, two tied (1/2 each)


@pytest.mark.filterwarnings("ignore::metrics.UndefinedMetricWarning")
def test_keyed_path_equals_the_selection_path(small_runs):
    """Without ``valid`` every cell is sorted and the anomalous ones subtracted; with an all-true
    ``valid`` only the normal cells are selected first. Both give the same numbers to the bit."""
    gts, cases = _adversarial_cases()
    for maps in cases.values():
        everything = np.ones(maps.shape, np.uint8)
        for mode in ("exact", "mvtec3d_sampled", "cflow200"):
            if mode != "exact" and np.unique(maps).size == 1:
                continue
            np.testing.assert_array_equal(  # NaN (undefined cflow200) equals NaN here
                metrics.aupro(maps, gts, mode=mode),
                metrics.aupro(maps, gts, valid=everything, mode=mode))
        a = metrics.evaluate(None, None, maps=maps, gts=gts)
        b = metrics.evaluate(None, None, maps=maps, gts=gts, valid=everything)
        np.testing.assert_array_equal([r.value for r in a], [r.value for r in b])


def test_threaded_pooling_reports_the_first_bad_map(small_runs):
    gts, cases = _adversarial_cases()
    maps = cases["random"].copy()
    maps[4, 0, 0] = np.nan
    maps[1, 3, 3] = np.inf
    with pytest.raises(ValueError, match="sample 1 "):
        metrics.pixel_auroc(maps, gts)
