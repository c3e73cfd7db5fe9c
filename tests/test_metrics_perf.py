"""benchmark/perf/metrics_perf.py on a tiny map set (the full suite is `python -m benchmark perf
metrics`)."""

from __future__ import annotations

import numpy as np
import pytest

from benchmark.perf import metrics_perf


def test_synthetic_class_is_seeded_and_mostly_anomalous():
    maps, gts = metrics_perf.make_class(16, 64)
    again, gts_again = metrics_perf.make_class(16, 64)
    assert maps.dtype == np.float32 and gts.dtype == np.uint8 and maps.shape == (16, 64, 64)
    assert np.array_equal(maps, again) and np.array_equal(gts, gts_again)
    anomalous = gts.reshape(16, -1).any(1).mean()
    assert 0.4 <= anomalous <= 1.0


def test_contenders_agree_on_the_same_pixels():
    maps, gts = metrics_perf.make_class(6, 48)
    values = {w: metrics_perf._compute(w, maps, gts) for w in ("evaluate", "separate", "sklearn")}
    for w in ("evaluate", "separate"):
        assert values[w]["pixel_auroc"] == pytest.approx(values["sklearn"]["pixel_auroc"],
                                                         abs=1e-12)
    assert values["evaluate"]["aupro"] == values["separate"]["aupro"]


def test_worker_subprocess_reports_time_and_memory():
    row = metrics_perf._run("evaluate", 3, 40)
    assert row["seconds"] > 0 and row["peak_mb"] >= row["data_mb"] > 0
    assert 0.5 < row["pixel_auroc"] <= 1.0
