"""Perf suite "rendering": 9 views (the paper's recipe) of a 100k-point torus at the official
window 1036 -> 336, render + point->pixel correspondence + visibility, each backend side by side,
plus how far the two backends agree. ``quick=True``: 10k points. ``cpu_seconds`` is this
process's CPU time (Mesa's llvmpipe threads of the open3d backend included). Normals are
estimated once beforehand (their time is its own row) so that both backends render the same
input."""

from __future__ import annotations

import time

import numpy as np

from benchmark.perf import peak_rss_mb, suite


def _torus(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    u, v = rng.uniform(0, 2 * np.pi, (2, n))
    x = (1 + 0.35 * np.cos(v)) * np.cos(u)
    y = (1 + 0.35 * np.cos(v)) * np.sin(u)
    return np.stack([x, y, 0.28 * np.sin(v)], 1).astype(np.float32)


@suite("rendering")
def rendering(quick: bool = False) -> list[dict]:
    from benchmark.components.render import camera
    from benchmark.components.render import multiview as R

    n = 10_000 if quick else 100_000
    pts = _torus(n)
    t0 = time.perf_counter()
    normals = R._normals(pts.astype(np.float64), None, 30)
    rows = [{"step": "normal estimation (once)", "points": n, "views": 0,
             "seconds": time.perf_counter() - t0}]
    renders = {}
    for backend in ("torch", "open3d"):
        kw = dict(image_size=336, window=1036, point_size=12, normals=normals, backend=backend)
        try:
            R.render_views(pts[:500], [np.eye(3)], **{**kw, "normals": normals[:500]})  # warm-up
            t0, c0 = time.perf_counter(), time.process_time()
            renders[backend] = R.render_views(pts, "pointad", **kw)
            sec, cpu = time.perf_counter() - t0, time.process_time() - c0
        except camera.RenderError as err:
            rows.append({"step": f"render {backend}", "points": n, "note": str(err)})
            continue
        rows.append({"step": f"render+correspondence {backend}", "points": n, "views": 9,
                     "seconds": sec, "cpu_seconds": cpu, "ms_per_view": 1000 * sec / 9,
                     "visible_frac": float(renders[backend].visible.mean()),
                     "peak_rss_mb": peak_rss_mb()})
    if len(renders) == 2:
        a, b = renders["torch"], renders["open3d"]
        ya, xa = np.divmod(a.projected_index, 336)
        yb, xb = np.divmod(b.projected_index, 336)
        near = (np.abs(ya - yb) <= 1) & (np.abs(xa - xb) <= 1)
        fg = (a.depth > 0) & (b.depth > 0)
        diff = np.abs(a.images.astype(float) - b.images.astype(float))[fg].mean()
        rows.append({"step": "agreement torch vs open3d", "points": n, "views": 9,
                     "pixel_same_or_adjacent": float(near.mean()),
                     "visibility_agree": float((a.visible == b.visible).mean()),
                     "image_mean_abs_diff_fg": float(diff)})
    return rows
