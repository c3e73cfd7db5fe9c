"""Exact, tie-correct, bounded-memory evaluation metrics for 3D industrial anomaly detection.

Pure numpy/scipy. Definitions: specs/metrics.md §8; algorithm: §6 (one sort of the normal scores,
closed-form AUROC / AUPRO from two ``searchsorted`` per anomalous score). Compatibility modes
reproduce published routines on purpose: ``aupro(mode="mvtec3d_sampled")`` (MVTec 3D-AD official,
BTF, M3DM) and ``aupro(mode="cflow200")`` (PointAD, AnomalyCLIP family).

Provenance: written for this framework from the definitions and algorithm descriptions in
specs/metrics.md (MVTec AD / MVTec 3D-AD evaluation scripts, cflow-ad / PointAD ``cal_pro_score``,
sklearn semantics); no code is copied. ``point_aupro`` is defined by this framework (regions =
radius-graph components) and is not comparable to published numbers. Every metric warns and
returns NaN when undefined (one class only, no GT region).
"""

from metrics._checks import UndefinedMetricWarning
from metrics.evaluate import MetricResult, evaluate
from metrics.image import image_ap, image_auroc
from metrics.pixel import pixel_aupr, pixel_auroc
from metrics.points import point_aupr, point_aupro, point_auroc
from metrics.pro import AUPRO_MODES, aupro

__all__ = [
    "AUPRO_MODES",
    "MetricResult",
    "UndefinedMetricWarning",
    "aupro",
    "evaluate",
    "image_ap",
    "image_auroc",
    "pixel_aupr",
    "pixel_auroc",
    "point_aupr",
    "point_aupro",
    "point_auroc",
]
