"""The shared harness of the method perf suites (benchmark/perf/methods_perf.py), on tiny clouds
with a fast preset (the full suites are `make perf ARGS=methods|baselines|group3ad|imrnet`)."""

from __future__ import annotations

import os
import re
from pathlib import Path

from benchmark.perf import SUITES, discover
from benchmark.perf.methods_perf import in_child, surface_cloud, time_fit_predict


def test_fit_predict_row_times_the_preset_and_reports_its_timers():
    case = {"preset": "btf_raw_real3d", "label": "2,000 points", "args": {}}
    data = [surface_cloud(i, 2000) for i in range(3)]
    det, row = time_fit_predict(case, data, warmup=True)
    assert row["preset"] == "btf_raw_real3d" and row["input"] == "2,000 points"
    assert row["fit_s_per_sample"] > 0 and row["predict_s_per_sample"] > 0
    assert row["peak_rss_mb"] > 0 and row["base_rss_mb"] > 0
    assert row["score"] == det.predict(data[2]).score
    assert row["scoring_s"] > 0  # the detector's own stage timers, per sample


def test_skipped_timers_leave_the_row():
    case = {"preset": "btf_raw_real3d", "label": "x", "args": {}}
    det, row = time_fit_predict(case, [surface_cloud(i, 1500) for i in range(3)],
                                skip_timers=("scoring",))
    assert "scoring_s" not in row and det.timer.total["scoring"] > 0


def test_each_case_runs_in_its_own_process():
    row = in_child({"label": "child"}, _send_pid)
    assert row["pid"] != os.getpid()


def _send_pid(case: dict, conn) -> None:
    import os

    conn.send({"pid": os.getpid(), "label": case["label"]})


def test_readme_lists_every_perf_suite():
    discover()
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    listed = re.search(r"\(suites: ([a-z0-9_, ]+)\)", readme)
    assert listed, "README's make perf row lost its list of suites"
    assert sorted(s.strip() for s in listed.group(1).split(",")) == sorted(SUITES)
