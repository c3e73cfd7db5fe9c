"""Perf suite "imrnet": Point-MAE pre-training throughput and IMRNet fit / predict per sample.

- pretrain: the IMRNet recipe of ``python -m benchmark pretrain`` (8192 points per cloud, 256
  patches of 64, full Point-MAE) for one epoch over 8 synthetic clouds, batch 4 (quick: 4 clouds
  of 2048 points, 64 x 32 patches); clouds/s.
- imrnet: the paper configuration (256 x 64 patches, 3 iterations, GPS) on clouds of 12k, 100k
  and 1M points (quick: 12k only): fit on 2 clouds with ``finetune_epochs=2`` (the default is
  100: fit time grows linearly with it; the row gives seconds per fine-tuning epoch as well),
  predict 1. Every cloud is sub-sampled at random to ``input_points=8192`` before GPS, so the
  network and GPS cost do not grow with the cloud; only centring, the sub-sample and the 1-NN
  copy of the scores back to every point do (KD-tree), so memory stays bounded.
Random weights (timings do not depend on them). Each case runs in a fresh process (spawn) so its
peak RSS is its own.
"""

from __future__ import annotations

import sys
import tempfile

from benchmark.perf import suite
from benchmark.perf.methods_perf import in_child, rss_now_mb, surface_cloud, time_fit_predict


def _pretrain_case(case: dict, conn) -> None:
    from benchmark.components.backbones.pointmae_mae import PretrainConfig, pretrain_pointmae
    from benchmark.perf import peak_rss_mb

    clouds = [surface_cloud(i, case["points"]).points for i in range(case["clouds"])]
    base = rss_now_mb()
    with tempfile.TemporaryDirectory() as tmp:
        cfg = PretrainConfig(epochs=1, batch_size=4, npoints=case["npoints"],
                             num_group=case["num_group"], group_size=case["group_size"],
                             mask_ratio=0.4, warmup_epochs=0)  # fmt: skip
        out = pretrain_pointmae(clouds, f"{tmp}/p.pth", cfg, show_progress=False)
    conn.send({"preset": "Point-MAE pre-training", "input": case["label"],
               "clouds_per_s": out["clouds_per_s"], "seconds": out["seconds"],
               "base_rss_mb": base, "peak_rss_mb": peak_rss_mb()})  # fmt: skip


def _imrnet_case(case: dict, conn) -> None:
    data = [surface_cloud(i, case["points"]) for i in range(3)]
    det, row = time_fit_predict(case, data, skip_timers=("finetune",))
    epochs = max(1, case["args"]["finetune_epochs"])
    row["finetune_s_per_epoch"] = det.timer.total.get("finetune", 0.0) / epochs
    conn.send(row)


@suite("imrnet")
def imrnet(quick: bool = False) -> list[dict]:
    if quick:
        cases = [{"kind": "pretrain", "label": "pretrain 4 x 2048 pts (64x32)", "clouds": 4,
                  "points": 4096, "npoints": 2048, "num_group": 64, "group_size": 32}]
    else:
        cases = [{"kind": "pretrain", "label": "pretrain 8 x 8192 pts (256x64)", "clouds": 8,
                  "points": 12000, "npoints": 8192, "num_group": 256, "group_size": 64}]
    for n in [12_000] if quick else [12_000, 100_000, 1_000_000]:
        cases.append({"kind": "imrnet", "preset": "imrnet", "label": f"{n:,} points",
                      "points": n, "args": {"pretrained": False, "finetune_epochs": 2}})
    rows = []
    for case in cases:
        rows.append(in_child(case, _pretrain_case if case["kind"] == "pretrain" else _imrnet_case))
        print(f"imrnet perf: {rows[-1]}", file=sys.stderr, flush=True)
    return rows
