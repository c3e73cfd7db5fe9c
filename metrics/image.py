"""Sample-level metrics: I-AUROC and AP (one score and one label per test sample)."""

from __future__ import annotations

import numpy as np

from metrics._checks import check_finite_flat
from metrics._ranking import Ranked


def rank_samples(labels: np.ndarray, scores: np.ndarray, metric: str) -> Ranked:
    labels = np.asarray(labels)
    scores = np.asarray(scores)
    if labels.ndim != 1 or scores.ndim != 1 or labels.shape != scores.shape:
        raise ValueError(f"{metric}: labels shape {labels.shape} and scores shape {scores.shape} "
                         "must be equal and 1-D")
    check_finite_flat(scores, f"{metric} scores")
    if scores.dtype.kind != "f":
        scores = scores.astype(np.float64)
    return Ranked.from_flat(scores, labels)


def image_auroc(labels: np.ndarray, scores: np.ndarray) -> float:
    """P(s+ > s-) + 1/2 P(s+ = s-) over (anomalous, normal) sample pairs (= roc_auc_score).
    Labels: non-zero = anomalous. One class only -> NaN and an UndefinedMetricWarning."""
    return rank_samples(labels, scores, "image_auroc").auroc("image_auroc")


def image_ap(labels: np.ndarray, scores: np.ndarray) -> float:
    """Step average precision over distinct scores, no interpolation (= average_precision_score)."""
    return rank_samples(labels, scores, "image_ap").average_precision("image_ap")
