"""Visual outputs of a stored run: per-point heat maps (PLY + PNG render), anomaly-map overlays for
organized data, and ROC / PRO curves per category.

- ``<out>/<job>/<category>/<sample>.ply``: the test cloud with a heat colour per point (red/green/
  blue, colour map ``jet`` scaled to the category's score range) and the scalar properties
  ``anomaly_score`` (float) and ``gt`` (0/1 when known); opens in Open3D, MeshLab, CloudCompare.
- ``<sample>_render.png``: three views of the coloured cloud (components.render).
- ``<sample>_overlay.png`` (organized data): image | anomaly map over the image | GT outline.
- ``roc.png``, ``pro.png`` per category: object- and pixel/point-level ROC; PRO curve with the
  integration limit marked.

The clouds and images come from the dataset again (the run's result.json names it); scores come
from scores.npz, so nothing is recomputed.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from benchmark.errors import ConfigError
from benchmark.run.spec import EvalConfig, Job, import_plugins, open_dataset
from benchmark.run.store import CategoryScores, RunStore, StoreError, warn

CMAP = "jet"


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "x"


def heat_colors(values: np.ndarray, vmin: float, vmax: float, cmap: str = CMAP) -> np.ndarray:
    """uint8 (N,3) colours of `values` on `cmap`, scaled to [vmin, vmax]."""
    import matplotlib

    span = vmax - vmin if vmax > vmin else 1.0
    t = np.clip((np.asarray(values, np.float64) - vmin) / span, 0.0, 1.0)
    rgba = matplotlib.colormaps[cmap](t)
    return (rgba[..., :3] * 255 + 0.5).astype(np.uint8)


def _rot(axis: str, deg: float) -> np.ndarray:
    a = np.radians(deg)
    c, s = np.cos(a), np.sin(a)
    if axis == "x":
        return np.array([[1, 0, 0], [0, c, -s], [0, s, c]], np.float64)
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]], np.float64)


EXPORT_VIEWS = (np.eye(3), _rot("x", -60.0), _rot("y", 90.0))


def point_scores_of(cs: CategoryScores, i: int, sample: Any) -> np.ndarray | None:
    """Per-point scores of sample i: stored point scores, else the pixel map (bilinearly
    resized to the native grid) read at each point's cell."""
    from benchmark.components.geometry.organized import resize_maps

    if cs.point_scores is not None:
        return cs.sample_points_scores(i)
    smap = cs.sample_pixel_scores(i)
    if smap is None or not sample.organized:
        return None
    native = sample.grid_shape
    if smap.shape != native:
        smap = resize_maps(smap, native, mode="bilinear")
    return smap.reshape(-1)[sample.grid_index].astype(np.float32)


def native_map(cs: CategoryScores, i: int, sample: Any) -> np.ndarray | None:
    from benchmark.components.geometry.organized import points_to_grid, resize_maps

    smap = cs.sample_pixel_scores(i)
    if smap is not None:
        return smap if smap.shape == sample.grid_shape else resize_maps(
            smap, sample.grid_shape, mode="bilinear")
    if cs.point_scores is None:
        return None
    ps = cs.sample_points_scores(i)
    return points_to_grid(ps, sample.grid_index, sample.grid_shape, fill=float(ps.min()))


def write_heat_ply(path: Path, points: np.ndarray, scores: np.ndarray, vmin: float, vmax: float,
                   gt: np.ndarray | None = None) -> Path:
    from benchmark.components.pointcloud_io import write_ply

    scalars = {"anomaly_score": np.asarray(scores, np.float32)}
    if gt is not None:
        scalars["gt"] = np.asarray(gt, np.uint8)
    write_ply(path, points, colors=heat_colors(scores, vmin, vmax), scalars=scalars)
    return path


def write_render_png(path: Path, points: np.ndarray, colors: np.ndarray, size: int = 384) -> Path:
    from PIL import Image

    from benchmark.components.render.multiview import render_views

    render = render_views(points, views=list(EXPORT_VIEWS), image_size=size, colors=colors,
                          light_on=False, window=size, point_size=max(2.0, size / 80))
    Image.fromarray(np.concatenate(list(render.images), axis=1)).save(path)
    return path


def write_overlay_png(path: Path, sample: Any, smap: np.ndarray, vmin: float, vmax: float) -> Path:
    from PIL import Image

    if sample.rgb is not None:
        base = sample.rgb.astype(np.float32)
    else:  # no colour image: the depth channel as grey
        z = sample.xyz_grid[..., 2]
        ok = sample.xyz_grid.any(-1)
        lo, hi = (float(z[ok].min()), float(z[ok].max())) if ok.any() else (0.0, 1.0)
        g = np.where(ok, (z - lo) / (hi - lo + 1e-12), 0.0) * 255
        base = np.repeat(g[..., None], 3, -1).astype(np.float32)
    heat = heat_colors(smap, vmin, vmax).astype(np.float32)
    overlay = (0.5 * base + 0.5 * heat).astype(np.uint8)
    gt = np.zeros(sample.grid_shape, bool) if sample.pixel_mask is None else sample.pixel_mask > 0
    edge = gt & ~(np.roll(gt, 1, 0) & np.roll(gt, -1, 0) & np.roll(gt, 1, 1) & np.roll(gt, -1, 1))
    outline = base.astype(np.uint8).copy()
    outline[edge] = (255, 0, 0)
    Image.fromarray(np.concatenate([base.astype(np.uint8), overlay, outline], axis=1)).save(path)
    return path


def _pro_curve(cs: CategoryScores, cfg: EvalConfig) -> tuple[np.ndarray, np.ndarray] | None:
    """(FPR, PRO) at 400 score thresholds, from the metrics package's pooled ranking."""
    from benchmark.run.evaluation import organized_inputs, point_inputs
    from metrics._pooling import pool_maps, pool_points
    from metrics.points import cloud_regions

    if cs.organized:
        org = organized_inputs(cs, cfg)
        if org is None:
            return None
        ranked = pool_maps(org["maps"], org["gts"],
                           org["valid"] if cfg.domain == "valid" else None, regions=True)
    else:
        pts = point_inputs(cs)
        if pts is None or "points" not in pts:
            return None
        regions = cloud_regions(pts["points"], pts["point_masks"], 2.0)
        ranked = pool_points(pts["point_scores"], pts["point_masks"], regions)
    if ranked.n == 0 or ranked.n_regions == 0:
        return None
    thresholds = np.unique(np.quantile(ranked.neg, np.linspace(0.0, 1.0, 401)))
    fpr = 1.0 - np.searchsorted(ranked.neg, thresholds, side="right") / ranked.n
    pro = ranked.pro_at_thresholds(thresholds)
    order = np.argsort(fpr)
    return np.concatenate([[0.0], fpr[order], [1.0]]), np.concatenate([[0.0], pro[order], [1.0]])


def write_curves(folder: Path, cs: CategoryScores, cfg: EvalConfig, title: str) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import roc_curve

    from benchmark.run.evaluation import organized_inputs, point_inputs

    out = []
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    if len(np.unique(cs.labels)) == 2:
        f, t, _ = roc_curve(cs.labels, cs.scores)
        ax.plot(f, t, label="object / image")
    dense = None
    if cs.organized:
        org = organized_inputs(cs, cfg)
        if org is not None:
            keep = org["valid"] if cfg.domain == "valid" else np.ones_like(org["gts"], bool)
            dense = (org["gts"][keep].ravel(), org["maps"][keep].ravel(), f"pixel ({cfg.grid})")
    else:
        pts = point_inputs(cs)
        if pts is not None:
            dense = (np.concatenate(pts["point_masks"]), np.concatenate(pts["point_scores"]),
                     "point")
    if dense is not None and len(np.unique(dense[0] > 0)) == 2:
        f, t, _ = roc_curve(dense[0] > 0, dense[1])
        ax.plot(f, t, label=dense[2])
    ax.plot([0, 1], [0, 1], ":", color="grey")
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title=f"ROC {title}")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(folder / "roc.png", dpi=100)
    plt.close(fig)
    out.append(folder / "roc.png")
    curve = _pro_curve(cs, cfg)
    if curve is not None:
        fig, ax = plt.subplots(figsize=(4.5, 4.5))
        ax.plot(*curve, label="PRO")
        ax.axvline(cfg.aupro_limit, ls="--", color="grey", label=f"limit {cfg.aupro_limit:g}")
        ax.set(xlabel="false positive rate", ylabel="per-region overlap", title=f"PRO {title}",
               xlim=(0, 1), ylim=(0, 1.02))
        ax.legend(loc="lower right")
        fig.tight_layout()
        fig.savefig(folder / "pro.png", dpi=100)
        plt.close(fig)
        out.append(folder / "pro.png")
    return out


def _pick(cs: CategoryScores, limit: int | None) -> list[int]:
    """Anomalous samples first (highest score first), then normal ones."""
    order = sorted(range(len(cs)), key=lambda i: (-int(cs.labels[i]), -float(cs.scores[i])))
    return order if limit is None else order[:limit]


def _sample_at(seq: Any, i: int, sample_id: str) -> Any:
    if i < len(seq):
        s = seq[i]
        if s.id == sample_id:
            return s
    for s in seq:  # order differs from when the run was made
        if s.id == sample_id:
            return s
    raise ConfigError(f"sample {sample_id!r} is no longer in the dataset")


def export_run(run_dir: str | Path, out_dir: str | Path, *, job: str | None = None,
               category: str | None = None, limit: int | None = 4, ply: bool = True,
               png: bool = True, curves: bool = True, render_size: int = 384) -> list[Path]:
    """Writes the visual outputs of the run's successful jobs (or one job); returns the files.
    A damaged job is skipped with a warning naming it."""
    store = RunStore(run_dir).require()
    keys = [k for k, v in store.current(warn) if v.done]
    if job is not None:
        matches = [k for k in keys if k.startswith(job)]
        if not matches:
            raise ConfigError(f"no successful job '{job}' in {run_dir}; jobs: {keys}")
        keys = matches
    manifest = store.read_manifest()
    cfg = EvalConfig.from_dict((manifest.get("config") or {}).get("evaluation"))
    written: list[Path] = []
    for key in keys:
        try:
            j = Job.from_dict(store.load_result(key)["job"])
            scores = store.load_scores(key)
        except StoreError as err:  # damaged since it was verified: skip it, not the run
            warn(f"job {key} skipped: {err}")
            continue
        import_plugins(j.plugins)
        for cs in scores:
            if category is not None and cs.category != category:
                continue
            folder = Path(out_dir) / f"{_safe(j.method_label)}_{key[:8]}" / _safe(cs.category)
            folder.mkdir(parents=True, exist_ok=True)
            title = f"{j.method_label} {cs.category}"
            if curves:
                written += write_curves(folder, cs, cfg, title)
            if not (ply or png):
                continue
            seq = open_dataset(j.dataset, j.root, j.dataset_options).test(cs.category)
            picked = _pick(cs, limit)
            samples = {i: _sample_at(seq, i, str(cs.ids[i])) for i in picked}
            per_point = {i: point_scores_of(cs, i, samples[i]) for i in picked}
            pooled = [v for v in per_point.values() if v is not None]
            if not pooled:
                continue
            vmin = float(min(v.min() for v in pooled))
            vmax = float(max(v.max() for v in pooled))
            for i in picked:
                sample, scores = samples[i], per_point[i]
                if scores is None:
                    continue
                stem = folder / _safe(sample.id)
                if ply:
                    written.append(write_heat_ply(stem.with_suffix(".ply"), sample.points,
                                                  scores, vmin, vmax, sample.point_mask))
                if png:
                    colors = heat_colors(scores, vmin, vmax)
                    written.append(write_render_png(Path(f"{stem}_render.png"), sample.points,
                                                    colors, render_size))
                    if sample.organized:
                        smap = native_map(cs, i, sample)
                        written.append(write_overlay_png(Path(f"{stem}_overlay.png"), sample,
                                                         smap, vmin, vmax))
    return written
