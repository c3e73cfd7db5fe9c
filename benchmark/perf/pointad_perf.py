"""Perf suite "pointad": PointAD / PointAD+ per-sample inference time on the CPU.

One MVTec-3D-like organized sample (a 336x336 grid, about 50k valid points, rendered from the
official 9 MVTec views at the CLIP input size). Rows: the tiny random CLIP config always; with
``quick=False`` also the full ViT-L-14-336 architecture with RANDOM weights (pretrained=False:
the timing does not depend on the weights, and no weights are needed). ``first_s`` is the first
prediction (rendering included, render cache empty), ``cached_s`` the mean of the following ones
(render read from the cache), which is what the paper's Table 5 compares (0.40 s PointAD, 0.46 s
PointAD+ on an RTX 3090).
"""

from __future__ import annotations

import os
import tempfile
import time

import numpy as np

from benchmark.perf import peak_rss_mb, suite


def _sample(size: int = 336, seed: int = 0):
    from benchmark.sample import Sample

    yy, xx = np.meshgrid(np.linspace(-1, 1, size), np.linspace(-1, 1, size), indexing="ij")
    inside = xx**2 + yy**2 < 0.55
    z = np.where(inside, 0.3 * np.exp(-(xx**2 + yy**2) * 2) + 1.0, 0.0)
    grid = np.stack([xx * inside, yy * inside, z], -1).astype(np.float32)
    cells = np.flatnonzero(inside.reshape(-1)).astype(np.int64)
    mask = np.zeros(size * size, np.uint8)
    mask[cells[: len(cells) // 50]] = 1
    return Sample(id=f"perf{seed}", dataset="mvtec3d", category="cookie", split="test",
                  defect="crack", points=grid.reshape(-1, 3)[cells], label=1,
                  point_mask=mask[cells], xyz_grid=grid, grid_index=cells)


def _time(preset: str, clip_model: str, repeats: int, note: str) -> dict:
    from benchmark.registry import METHODS

    det = METHODS.create(preset, clip_model=clip_model, pretrained=False, checkpoint=None)
    det.trained = True  # prompts at their (seeded) initial values: timing only
    sample = _sample()
    t0 = time.perf_counter()
    det.predict(sample)
    first = time.perf_counter() - t0
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        det.predict(sample)
        times.append(time.perf_counter() - t0)
    return {"suite": "pointad", "method": preset, "clip": clip_model, "weights": note,
            "points": len(sample.points), "views": 9, "device": "cpu",
            "first_s": first, "cached_s": float(np.mean(times)), "peak_rss_mb": peak_rss_mb()}


def _cold_cache_row(*args) -> dict:
    """One row with its own empty cache, so that `first_s` includes the rendering."""
    old = os.environ.get("BENCHMARK_CACHE")
    with tempfile.TemporaryDirectory(prefix="pointad_perf_") as tmp:
        os.environ["BENCHMARK_CACHE"] = tmp
        try:
            return _time(*args)
        finally:
            if old is None:
                os.environ.pop("BENCHMARK_CACHE", None)
            else:
                os.environ["BENCHMARK_CACHE"] = old


@suite("pointad")
def run(quick: bool = True) -> list[dict]:
    rows = [_cold_cache_row(p, "pointad-tiny", 2, "random init (tiny config)")
            for p in ("pointad", "pointad_plus")]
    if not quick:
        rows += [_cold_cache_row(p, "ViT-L-14-336", 1, "random init (pretrained=False)")
                 for p in ("pointad", "pointad_plus")]
    return rows
