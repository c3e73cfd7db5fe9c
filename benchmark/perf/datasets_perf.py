"""Performance of the dataset layer: synthetic generation per format and size, and per-sample load
time through each adapter (reached through the registry, as everywhere in benchmark/)."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from benchmark.perf import peak_rss_mb, suite

FORMATS = ("mvtec3d", "eyecandies", "real3d", "anomaly_shapenet")


@suite("datasets")
def datasets_suite(quick: bool) -> list[dict]:
    from benchmark.registry import DATASETS

    create = DATASETS.get("synthetic").factory
    sizes = [("small", None)] if quick else [("small", None), ("medium", 2)]
    rows = []
    for size, categories in sizes:
        for fmt in FORMATS:
            with tempfile.TemporaryDirectory() as tmp:
                out = Path(tmp) / "tree"
                cpu, wall = time.process_time(), time.perf_counter()
                ds = create(format=fmt, size=size, categories=categories, root=out)
                gen_cpu, gen_wall = time.process_time() - cpu, time.perf_counter() - wall
                cat = ds.categories[0]
                wall = time.perf_counter()
                test = ds.test(cat)  # the first access of eyecandies converts the category
                first = test[0]
                conv_wall = time.perf_counter() - wall
                wall = time.perf_counter()
                n = sum(1 for _ in test)
                load_ms = (time.perf_counter() - wall) / max(n, 1) * 1000
                rows.append(
                    {
                        "format": fmt,
                        "size": size,
                        "categories": len(ds.categories),
                        "generate_cpu_s": round(gen_cpu, 2),
                        "generate_wall_s": round(gen_wall, 2),
                        "first_access_s": round(conv_wall, 2),
                        "load_ms_per_sample": round(load_ms, 1),
                        "points_per_sample": len(first.points),
                        "peak_rss_mb": round(peak_rss_mb(), 1),
                    }
                )
    return rows
