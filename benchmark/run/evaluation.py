"""From stored scores to metric rows, per dataset kind (DESIGN §6-7, specs/metrics.md §8, §10).

Organized data (MVTec 3D-AD, Eyecandies) is evaluated on a grid chosen per table:
- ``native``: the dataset's own resolution (the official protocol),
- ``224`` / ``336``: square grids (BTF/M3DM use 224, PointAD 336).
GT masks are resized with nearest (then > 0.5), score maps bilinearly; the method's
``pixel_scores`` are used when given, otherwise its ``point_scores`` are put back on the native grid
(cells without a point get the sample's lowest point score, so they never rank above a scored
cell). Domain ``all`` scores every grid cell, ``valid`` only cells with a 3D point.

Unorganized data (Real3D-AD, Anomaly-ShapeNet) is evaluated per point, pooled over the category.

Every row carries the metric's variant (from `metrics`, plus the grid and domain of dense
metrics) and the evaluation's id, so numbers made under different settings never mix.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from benchmark.errors import ConfigError
from benchmark.run.spec import EvalConfig
from benchmark.run.store import CategoryScores

PIXEL_METRICS = ("pixel_auroc", "aupro", "pixel_aupr")
POINT_METRICS = ("point_auroc", "point_aupr", "point_aupro")


def _grid_size(cfg: EvalConfig, native: tuple[int, int]) -> tuple[int, int]:
    if cfg.grid == "native":
        return native
    side = int(cfg.grid)
    return side, side


def organized_inputs(cs: CategoryScores, cfg: EvalConfig) -> dict[str, np.ndarray] | None:
    """Stacked (n, h, w) maps, GT and validity of one category on the evaluation grid, or None
    when the method produced no dense output."""
    from benchmark.components.geometry.organized import points_to_grid, resize_maps

    has_pixel = cs.pixel_scores is not None
    has_point = cs.point_scores is not None
    if not (has_pixel or has_point):
        return None
    shapes = {tuple(int(v) for v in s) for s in cs.grid_shapes}
    if cfg.grid == "native" and len(shapes) > 1:
        raise ConfigError(
            f"category {cs.category}: samples have different native grids {sorted(shapes)}; "
            f"evaluate on a fixed grid (--grid 224 or 336)"
        )
    n = len(cs)
    size = _grid_size(cfg, tuple(int(v) for v in cs.grid_shapes[0]))
    maps = np.empty((n, *size), np.float32)
    gts = np.empty((n, *size), np.uint8)
    valid = np.empty((n, *size), bool)
    for i in range(n):
        native = tuple(int(v) for v in cs.grid_shapes[i])
        gt = cs.sample_grid("pixel_masks", i)
        ok = cs.sample_grid("valid", i).astype(bool)
        if has_pixel:
            smap = cs.sample_pixel_scores(i)
            maps[i] = smap if smap.shape == size else resize_maps(smap, size, mode="bilinear")
        else:
            ps = cs.sample_points_scores(i)
            fill = float(ps.min()) if len(ps) else 0.0
            smap = points_to_grid(ps, cs.sample_grid_index(i), native, fill=fill)
            maps[i] = smap if native == size else resize_maps(smap, size, mode="bilinear")
        if native == size:
            gts[i] = gt > 0
            valid[i] = ok
        else:
            gts[i] = resize_maps(gt.astype(np.float32), size, mode="nearest") > 0.5
            valid[i] = resize_maps(ok.astype(np.float32), size, mode="nearest") > 0.5
    return {"maps": maps, "gts": gts, "valid": valid}


def point_inputs(cs: CategoryScores) -> dict[str, list[np.ndarray]] | None:
    if cs.point_scores is None or cs.point_masks is None:
        return None
    n = len(cs)
    out: dict[str, list[np.ndarray]] = {
        "point_scores": [cs.point_scores[cs.point_slice(i)] for i in range(n)],
        "point_masks": [cs.point_masks[cs.point_slice(i)] for i in range(n)],
    }
    if cs.points is not None:
        out["points"] = [cs.points[cs.point_slice(i)] for i in range(n)]
    return out


def evaluate_category(cs: CategoryScores, cfg: EvalConfig) -> list[dict[str, Any]]:
    """Metric rows ``{metric, value, variant, evaluation}`` of one test category."""
    import metrics

    kwargs: dict[str, Any] = {"aupro_mode": cfg.aupro_mode, "aupro_limit": cfg.aupro_limit,
                              "aupr_variant": cfg.aupr_variant,
                              "num_thresholds": cfg.num_thresholds}
    dense_tag = ""
    if cs.organized:
        org = organized_inputs(cs, cfg)
        if org is not None:
            kwargs.update(maps=org["maps"], gts=org["gts"],
                          valid=org["valid"] if cfg.domain == "valid" else None)
            dense_tag = f",grid={cfg.grid}"  # metrics names the domain itself
    else:
        pts = point_inputs(cs)
        if pts is not None:
            kwargs.update(pts)
    labels = cs.labels.astype(np.int64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # undefined metrics come back as NaN
        results = metrics.evaluate(labels, cs.scores, **kwargs)
    rows = []
    for r in results:
        dense = r.name in PIXEL_METRICS or r.name in POINT_METRICS
        variant = (r.variant or "") + (dense_tag if dense else "")
        row = {"metric": r.name, "value": float(r.value), "variant": variant,
               "evaluation": cfg.id}
        if not np.isfinite(row["value"]):
            row["note"] = nan_reason(r.name, labels, kwargs)
        rows.append(row)
    return rows


def nan_reason(metric: str, labels: np.ndarray, inputs: dict[str, Any]) -> str:
    """Why a metric is undefined (NaN) on one category, in words for the tables."""
    if not (labels == 1).any():
        return "no anomalous sample"
    if not (labels == 0).any():
        return "no normal sample"
    if metric in PIXEL_METRICS and "gts" in inputs:
        gts = inputs["gts"]
        if inputs.get("valid") is not None:
            gts = gts[inputs["valid"]]
        return "no anomalous pixel" if not np.any(gts) else "no normal pixel"
    if metric in POINT_METRICS and "point_masks" in inputs:
        masks = inputs["point_masks"]
        if not any(np.any(m) for m in masks):
            return "no anomalous point"
        if metric == "point_aupro" and "points" not in inputs:
            return "coordinates not stored"
    return "undefined"


def evaluate_scores(categories: list[CategoryScores], cfg: EvalConfig
                    ) -> dict[str, list[dict[str, Any]]]:
    """Rows per test category of one job."""
    return {cs.category: evaluate_category(cs, cfg) for cs in categories}
