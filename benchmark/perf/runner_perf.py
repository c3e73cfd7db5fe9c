"""Runner overhead: packing, storing and evaluating one category's scores (no model involved).

Organized: MVTec 3D-AD-sized grids (800x800, ~60% valid cells) with per-point scores, evaluated on
the native grid and on 224; unorganized: Real3D-AD-sized clouds with per-point scores.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

from benchmark.perf import peak_rss_mb, suite


def _organized(n: int, side: int, rng: np.random.Generator):
    from benchmark.sample import Prediction, Sample

    for i in range(n):
        valid = rng.random(side * side) < 0.6
        index = np.flatnonzero(valid).astype(np.int64)
        grid = np.zeros((side * side, 3), np.float32)
        grid[index] = rng.random((len(index), 3), dtype=np.float32) + 0.1
        label = i % 2
        mask = np.zeros(side * side, np.uint8)
        if label:
            r0 = rng.integers(0, side - 40)
            block = (np.arange(side * side) // side - r0) % side < 30
            mask[block & valid & (np.arange(side * side) % side < 60)] = 1
        s = Sample(id=f"s{i}", dataset="perf", category="c", split="test",
                   defect="x" if label else "good", points=grid[index], label=label,
                   point_mask=mask[index], xyz_grid=grid.reshape(side, side, 3),
                   grid_index=index, pixel_mask=mask.reshape(side, side))
        scores = (rng.random(len(index)) + mask[index]).astype(np.float32)
        yield s, Prediction(score=float(scores.max()), point_scores=scores)


def _unorganized(n: int, points: int, rng: np.random.Generator):
    from benchmark.sample import Prediction, Sample

    for i in range(n):
        pts = rng.random((points, 3), dtype=np.float32)
        label = i % 2
        mask = ((pts[:, 0] < 0.05) & (label == 1)).astype(np.uint8)
        s = Sample(id=f"s{i}", dataset="perf", category="c", split="test",
                   defect="x" if label else "good", points=pts, label=label, point_mask=mask)
        scores = (rng.random(points) + mask).astype(np.float32)
        yield s, Prediction(score=float(scores.max()), point_scores=scores)


def _measure(name: str, pairs, configs) -> list[dict]:
    from benchmark.run.evaluation import evaluate_category
    from benchmark.run.store import ScoreCollector, load_scores, save_scores

    rows = []
    t0 = time.perf_counter()
    col = ScoreCollector("c")
    n = 0
    for sample, pred in pairs:
        col.add(sample, pred)
        n += 1
    cs = col.finish()
    pack_s = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "scores.npz"
        t0 = time.perf_counter()
        save_scores(path, [cs])
        save_s = time.perf_counter() - t0
        size_mb = path.stat().st_size / 2**20
        t0 = time.perf_counter()
        [cs] = load_scores(path)
        load_s = time.perf_counter() - t0
    for cfg in configs:
        t0 = time.perf_counter()
        evaluate_category(cs, cfg)
        rows.append({"case": name, "samples": n, "evaluation": f"grid={cfg.grid},{cfg.aupro_mode}",
                     "pack_s": pack_s, "save_s": save_s, "npz_mb": size_mb, "load_s": load_s,
                     "evaluate_s": time.perf_counter() - t0, "peak_rss_mb": peak_rss_mb()})
    return rows


@suite("runner")
def runner_suite(quick: bool = False) -> list[dict]:
    from benchmark.run.spec import EvalConfig

    rng = np.random.default_rng(0)
    n, side, points = (6, 400, 100_000) if quick else (24, 800, 400_000)
    configs = [EvalConfig(), EvalConfig(grid="224", aupro_mode="mvtec3d_sampled")]
    rows = _measure(f"organized {side}x{side}", _organized(n, side, rng), configs)
    rows += _measure(f"unorganized {points} pts", _unorganized(n, points, rng), [EvalConfig()])
    return rows
