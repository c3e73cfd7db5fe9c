"""One entry point for the runner: every metric whose inputs are given, each with its variant name,
sharing one sort of the normal scores per level (image / pixel / point)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from metrics._checks import as_array_list, check_limit, warn
from metrics._pooling import pool_maps, pool_points
from metrics.image import rank_samples
from metrics.pixel import AUPR_VARIANTS, aupr_of
from metrics.points import cloud_regions
from metrics.pro import AUPRO_MODES, pro_of


class MetricResult(NamedTuple):
    name: str
    value: float
    variant: str


def _limits(aupro_limit: float | Sequence[float]) -> list[float]:
    values = [aupro_limit] if np.ndim(aupro_limit) == 0 else list(aupro_limit)
    return [check_limit(v, "aupro") for v in values]


def _pro_variant(mode: str, limit: float, num_thresholds: int) -> str:
    if mode == "mvtec3d_sampled":
        return f"mvtec3d_sampled,thresholds={int(num_thresholds)},limit={limit:g}"
    return f"{mode},limit={limit:g}"


def _check_labels_vs_gt(labels: np.ndarray, gts: list[np.ndarray]) -> None:
    """specs §8.1: the dataset label should equal any(GT > 0); a mismatch is reported, not fatal
    (resizing GT to a coarse grid can erase a tiny defect)."""
    if labels.shape[0] != len(gts):
        raise ValueError(f"{labels.shape[0]} image labels but {len(gts)} GT masks")
    has_gt = np.array([bool(np.any(g != 0)) for g in gts])
    bad = np.flatnonzero(has_gt != (labels != 0))
    if bad.size:
        warn(f"image label differs from any(GT != 0) for {bad.size} sample(s), first indices "
             f"{bad[:10].tolist()}", RuntimeWarning)


def evaluate(labels: np.ndarray | None, scores: np.ndarray | None, *,
             maps: np.ndarray | Sequence | None = None, gts: np.ndarray | Sequence | None = None,
             valid: np.ndarray | Sequence | None = None,
             point_scores: np.ndarray | Sequence | None = None,
             point_masks: np.ndarray | Sequence | None = None,
             points: np.ndarray | Sequence | None = None,
             aupro_mode: str = "exact", aupro_limit: float | Sequence[float] = 0.3,
             aupr_variant: str = "ap", num_thresholds: int = 100,
             point_radius_factor: float = 2.0) -> list[MetricResult]:
    """Metrics of one class's test set; only those whose inputs are given.

    * ``labels`` + ``scores`` (one per sample): image_auroc, image_ap. ``scores=None`` with
      ``maps`` uses the max of each map (variant ``score=map_max``); ``labels=None`` with ``gts``
      uses any(GT != 0).
    * ``maps`` + ``gts`` (+ ``valid``): pixel_auroc, aupro (``aupro_mode``; one result per limit
      when ``aupro_limit`` is a sequence), pixel_aupr (``aupr_variant``).
    * ``point_scores`` + ``point_masks``: point_auroc, point_aupr; with ``points`` also
      point_aupro (framework-defined radius-graph regions).
    """
    if aupro_mode not in AUPRO_MODES:
        raise ValueError(f"aupro_mode must be one of {AUPRO_MODES}, got {aupro_mode!r}")
    if aupr_variant not in AUPR_VARIANTS:
        raise ValueError(f"aupr_variant must be one of {AUPR_VARIANTS}, got {aupr_variant!r}")
    limits = _limits(aupro_limit)
    out: list[MetricResult] = []
    has_maps = maps is not None and gts is not None
    domain = "valid" if valid is not None else "all"

    maps_l = as_array_list(maps, "maps", 2) if maps is not None else None
    gts_l = as_array_list(gts, "gts", 2) if gts is not None else None
    score_source = "method"
    if scores is None and maps_l is not None:
        scores = np.array([float(np.max(m)) if m.size else np.nan for m in maps_l])
        score_source = "map_max"
    if labels is None and gts_l is not None:
        labels = np.array([bool(np.any(g != 0)) for g in gts_l], dtype=np.int8)
    elif labels is not None and gts_l is not None:
        _check_labels_vs_gt(np.asarray(labels), gts_l)
    if labels is not None and scores is not None:
        ranked = rank_samples(labels, scores, "image_auroc")
        variant = f"exact,score={score_source}"
        out.append(MetricResult("image_auroc", ranked.auroc("image_auroc"), variant))
        out.append(MetricResult("image_ap", ranked.average_precision("image_ap"),
                                f"step_ap,score={score_source}"))

    if has_maps:
        ranked = pool_maps(maps_l, gts_l, valid, regions=True)
        out.append(MetricResult("pixel_auroc", ranked.auroc("pixel_auroc"),
                                f"exact,domain={domain}"))
        for limit in limits:
            out.append(MetricResult(
                "aupro", pro_of(ranked, limit, aupro_mode, num_thresholds),
                f"{_pro_variant(aupro_mode, limit, num_thresholds)},domain={domain}"))
        out.append(MetricResult("pixel_aupr", aupr_of(ranked, aupr_variant, "pixel_aupr"),
                                f"{aupr_variant},domain={domain}"))
        del ranked

    if point_scores is not None and point_masks is not None:
        masks_l = as_array_list(point_masks, "point_masks", 1)
        regions = None
        if points is not None:
            regions = cloud_regions(points, masks_l, point_radius_factor)
        ranked = pool_points(point_scores, masks_l, regions)
        out.append(MetricResult("point_auroc", ranked.auroc("point_auroc"), "exact"))
        out.append(MetricResult("point_aupr", aupr_of(ranked, aupr_variant, "point_aupr"),
                                aupr_variant))
        if regions is not None:
            for limit in limits:
                out.append(MetricResult(
                    "point_aupro", ranked.pro_exact(limit, "point_aupro"),
                    f"framework_radius_graph,radius_factor={point_radius_factor:g},"
                    f"limit={limit:g}"))
    return out
