"""Perf suite "methods": per-sample fit / predict time and peak memory of the memory-bank presets.

- ``btf_fpfh`` on an MVTec-sized organized scan (800x800 synthetic height field; quick: 200x200):
  fit on 2 scans, predict 1.
- ``patchcore_fpfh`` (official Real3D-AD settings: registration with 100000 RANSAC iterations,
  FPFH, 10000-row coreset) on clouds of 100k and 1M points (quick: 20k points, 10000 iterations):
  fit on 2 clouds, predict 1.
Each case runs in a fresh process (spawn) so that its peak RSS is its own; ``base_rss_mb`` is that
process's RSS after imports and data generation, ``peak_rss_mb`` its high-water mark.
"""

from __future__ import annotations

import multiprocessing as mp
import sys
import time

import numpy as np

from benchmark.perf import suite


def organized_scan(i: int, size: int):
    from benchmark.sample import Sample

    rng = np.random.default_rng(i)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    x, y = (xx / size - 0.5) * 0.1, (yy / size - 0.5) * 0.1
    z = 0.3 + 0.004 * np.sin(x * 90) * np.cos(y * 70) + rng.normal(scale=2e-5, size=x.shape)
    inside = (x / 0.045) ** 2 + (y / 0.04) ** 2 < 1
    grid = np.stack([x, y, z], -1).astype(np.float32)
    grid[~inside] = 0
    idx = np.flatnonzero(inside.reshape(-1)).astype(np.int64)
    return Sample(id=f"scan{i}", dataset="perf", category="c", split="train", defect="good",
                  points=grid.reshape(-1, 3)[idx].copy(), label=0, xyz_grid=grid, grid_index=idx,
                  unit="m")


def surface_cloud(i: int, n: int):
    """A lumpy closed surface of radius ~50 mm sampled with n points (Real3D-AD-like density)."""
    from benchmark.sample import Sample

    rng = np.random.default_rng(i)
    d = rng.normal(size=(n, 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    x, y, z = d.T
    r = 50 * (1 + 0.25 * x * y + 0.2 * np.sin(3 * x + 1) * z + 0.15 * np.cos(4 * y) * x)
    pts = (d * r[:, None]).astype(np.float32)
    return Sample(id=f"cloud{i}", dataset="perf", category="c", split="train", defect="good",
                  points=pts - pts.mean(0), label=0, unit="mm")


def time_fit_predict(case: dict, data: list, *, many: bool = False, warmup: bool = False,
                     skip_timers: tuple[str, ...] = ()) -> tuple[object, dict]:
    """Creates ``case["preset"]`` with ``case["args"]``, fits it on data[:2] and predicts
    data[2] (``many``: through predict_many; ``warmup``: one untimed prediction first, which
    pays lazy imports and thread-pool starts). Returns the detector and the common row."""
    from benchmark.perf import peak_rss_mb
    from benchmark.registry import METHODS

    base = rss_now_mb()
    det = METHODS.create(case["preset"], **case["args"])
    t0 = time.perf_counter()
    det.fit(data[:2])
    fit_s = (time.perf_counter() - t0) / 2
    if warmup:
        det.predict(data[2])
    t0 = time.perf_counter()
    pred = next(iter(det.predict_many(data[2:]))) if many else det.predict(data[2])
    predict_s = time.perf_counter() - t0
    row = {"preset": case["preset"], "input": case["label"], "fit_s_per_sample": fit_s,
           "predict_s_per_sample": predict_s, "base_rss_mb": base, "peak_rss_mb": peak_rss_mb(),
           "score": pred.score}
    row.update({f"{k}_s": v for k, v in det.timer.per_sample().items() if k not in skip_timers})
    return det, row


def _run_case(case: dict, conn) -> None:
    if case["kind"] == "scan":
        data = [organized_scan(i, case["size"]) for i in range(3)]
    else:
        data = [surface_cloud(i, case["points"]) for i in range(3)]
    det, row = time_fit_predict(case, data)
    row["bank"] = len(getattr(det, "bank", None) or next(iter(det.banks.values())))
    conn.send(row)


def rss_now_mb() -> float:
    import os

    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return float("nan")


def in_child(case: dict, target=_run_case) -> dict:
    """Runs ``target(case, conn)`` in a fresh (spawned) process; returns the row it sends."""
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=target, args=(case, child))
    proc.start()
    child.close()
    try:
        row = parent.recv()
    except EOFError:
        row = {"preset": case.get("preset", ""), "input": case["label"], "error": "child failed"}
    proc.join()
    return row


@suite("methods")
def methods(quick: bool = False) -> list[dict]:
    scan = 200 if quick else 800
    cases = [
        {"preset": "btf_fpfh", "kind": "scan", "size": scan, "label": f"{scan}x{scan} scan",
         "args": {}},
    ]  # fmt: skip
    for n in ([20_000] if quick else [100_000, 1_000_000]):
        args = {"ransac_iterations": 10_000} if quick else {}
        cases.append({"preset": "patchcore_fpfh", "kind": "cloud", "points": n,
                      "label": f"{n:,} points", "args": args})  # fmt: skip
    rows = []
    for case in cases:
        rows.append(in_child(case))
        print(f"methods perf: {rows[-1]}", file=sys.stderr, flush=True)  # progress, case by case
    return rows
