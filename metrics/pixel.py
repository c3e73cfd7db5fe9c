"""Pixel-level (organized grid) metrics pooled over a class: P-AUROC and pixel AUPR."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from metrics._pooling import pool_maps
from metrics._ranking import Ranked

AUPR_VARIANTS = ("ap", "trapezoid")


def aupr_of(ranked: Ranked, variant: str, metric: str) -> float:
    if variant == "ap":
        return ranked.average_precision(metric)
    if variant == "trapezoid":
        return ranked.aupr_trapezoid(metric)
    raise ValueError(f"{metric}: variant must be one of {AUPR_VARIANTS}, got {variant!r}")


def pixel_auroc(maps: np.ndarray | Sequence, gts: np.ndarray | Sequence,
                valid: np.ndarray | Sequence | None = None) -> float:
    """Mann-Whitney AUC (ties 1/2) over every cell of every map (= roc_auc_score on the flattened
    arrays); with ``valid`` only valid cells count. GT non-zero = anomalous."""
    return pool_maps(maps, gts, valid, regions=False).auroc("pixel_auroc")


def pixel_aupr(maps: np.ndarray | Sequence, gts: np.ndarray | Sequence,
               valid: np.ndarray | Sequence | None = None, variant: str = "ap") -> float:
    """Pooled-cell AUPR: ``"ap"`` = step AP (average_precision_score), ``"trapezoid"`` =
    auc(recall, precision) of precision_recall_curve."""
    if variant not in AUPR_VARIANTS:
        raise ValueError(f"pixel_aupr: variant must be one of {AUPR_VARIANTS}, got {variant!r}")
    return aupr_of(pool_maps(maps, gts, valid, regions=False), variant, "pixel_aupr")
