"""Perf suite "baselines": per-sample fit / predict time and peak memory of the BTF port to
unorganized clouds and of M3DM, at their default sizes.

- ``btf_fpfh_real3d`` (Real3D-AD's BTF(FPFH): per-point FPFH, every 100th / 500th point, no
  coreset) on clouds of 12k and 100k points (the official code takes 0.23 s per 12k-point test
  sample on 2 cores, specs/methods.md §O); also ``sampling="density"`` at 12k.
- ``m3dm_pointmae`` and ``m3dm_pointbert`` (16384 groups of 128, official train-mode extractor)
  on a 100k-point cloud (quick: 1024 groups, 20k points).
- ``m3dm`` full (224x224, DINO ViT-B/8, Point-MAE 1024 groups, UFF, three banks + OCSVMs) on an
  800x800 organized RGB scan (quick: tiny ViT, 200x200).
Weights are random (``pretrained=False``: same arithmetic as the real checkpoints). Fit on 2
samples, predict 1 (BTF: timed after one warm-up prediction, which pays Open3D's import and the
thread pools' start); each case runs in a fresh process (spawn) so that its peak RSS is its own.
"""

from __future__ import annotations

import sys

import numpy as np

from benchmark.perf import suite
from benchmark.perf.methods_perf import in_child, organized_scan, surface_cloud, time_fit_predict


def _rgb_scan(i: int, size: int):
    s = organized_scan(i, size)
    yy, xx = np.mgrid[0:size, 0:size]
    rgb = np.stack([120 + 80 * np.sin(xx / 9), 90 + 40 * np.cos(yy / 7), 60 + 0 * xx], -1)
    s.rgb = rgb.clip(0, 255).astype(np.uint8)
    return s


def _run_case(case: dict, conn) -> None:
    make = {"cloud": lambda i: surface_cloud(i, case["points"]),
            "rgbscan": lambda i: _rgb_scan(i, case["size"])}[case["kind"]]
    _, row = time_fit_predict(case, [make(i) for i in range(3)], warmup=case.get("warmup", False))
    conn.send(row)


@suite("baselines")
def baselines(quick: bool = False) -> list[dict]:
    cases = []
    for n in ([12_000] if quick else [12_000, 100_000]):
        cases.append({"preset": "btf_fpfh_real3d", "kind": "cloud", "points": n,
                      "label": f"{n:,} points", "args": {}, "warmup": True})  # fmt: skip
    cases.append({"preset": "btf_fpfh_real3d", "kind": "cloud", "points": 12_000,
                  "label": "12,000 points, sampling=density", "args": {"sampling": "density"},
                  "warmup": True})
    groups, points = (1024, 20_000) if quick else (16384, 100_000)
    for preset in ("m3dm_pointmae", "m3dm_pointbert"):
        cases.append({"preset": preset, "kind": "cloud", "points": points,
                      "label": f"{points:,} points, {groups} groups x 128",
                      "args": {"pretrained": False, "num_group": groups}})  # fmt: skip
    full = {"pretrained": False, "fusion": "train", "uff_batch_size": 2}
    if quick:
        full.update(rgb_arch={"img_size": 224, "embed_dim": 64, "depth": 2, "num_heads": 2})
    size = 200 if quick else 800
    cases.append({"preset": "m3dm", "kind": "rgbscan", "size": size,
                  "label": f"{size}x{size} RGB scan", "args": full})
    rows = []
    for case in cases:
        rows.append(in_child(case, _run_case))
        print(f"baselines perf: {rows[-1]}", file=sys.stderr, flush=True)
    return rows
