"""Perf suite "group3ad": Group3AD (official Reg3D-AD settings: 100000 RANSAC iterations, 16384
groups of 128, 10000-row banks; AGCS; fine-tuning) on clouds of 12k, 100k and 1M points (quick:
12k only, 10000 RANSAC iterations, 2048 groups).

Fit on 2 clouds, predict 1 (``predict_many``: the official test-set normalisation over that one
cloud). Fine-tuning runs ``epochs=2`` (one IUN and one IAN epoch) so that ``train_s_per_epoch``
is measured without the cost of the default 20 epochs; ``fit_s_per_sample`` includes those 2
epochs (add 18 x train_s_per_epoch / 2 per sample for the default E = 20). Random-weight
Point-MAE (``pretrained=False``: the timing does not depend on the weights). Each case runs in a
fresh process (methods_perf.in_child) so its peak RSS is its own.
"""

from __future__ import annotations

import sys

from benchmark.perf import suite
from benchmark.perf.methods_perf import in_child, surface_cloud, time_fit_predict


def _run_case(case: dict, conn) -> None:
    data = [surface_cloud(i, case["points"]) for i in range(3)]
    det, row = time_fit_predict(case, data, many=True, skip_timers=("fine_tune",))
    row["train_s_per_epoch"] = det.timer.total.get("fine_tune", 0.0) / max(1, det.epochs)
    conn.send(row)


@suite("group3ad")
def group3ad(quick: bool = False) -> list[dict]:
    sizes = [12_000] if quick else [12_000, 100_000, 1_000_000]
    rows = []
    for n in sizes:
        args = {"pretrained": False, "epochs": 2, "cache": False}
        if quick:
            args.update(ransac_iterations=10_000, num_group=2048)
        case = {"preset": "group3ad", "points": n, "label": f"{n:,} points", "args": args}
        rows.append(in_child(case, _run_case))
        print(f"group3ad perf: {rows[-1]}", file=sys.stderr, flush=True)
    return rows
