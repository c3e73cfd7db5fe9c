"""The shared exact core: every metric of one pooled score set from one sort of the normal scores.

Notation (specs/metrics.md §6): ``neg`` are the normal scores in order (n of them; held as sorted
runs of integer keys, see ``metrics._sorted``), ``pos``
the anomalous scores sorted ascending (n+ of them) with optional region weights
w_i = 1 / (K * |C_k(i)|). For a positive score s the normals strictly above and at-or-above it are
``gt(s) = #{neg > s}`` and ``ge(s) = #{neg >= s}``; inside the tie group of s the (tie-collapsed)
ROC/PRO curve moves linearly from x = gt/n to x = ge/n while rising by the positive's weight, so
every area is a closed-form sum over the positives. Counts are int64 and sums float64.
"""

from __future__ import annotations

from functools import cached_property

import numpy as np

from metrics._checks import undefined
from metrics._sorted import SortedScores


class Ranked:
    """Pooled scores of one class, ready for every rank metric.

    ``normals`` are the normal scores as :class:`SortedScores`; ``pos`` is sorted here together
    with its ``weight``.
    """

    def __init__(self, normals: SortedScores, pos: np.ndarray, weight: np.ndarray | None = None,
                 n_regions: int = 0) -> None:
        self.normals = normals
        order = np.argsort(pos, kind="stable")
        self.pos = pos[order]
        self.weight = None if weight is None else np.asarray(weight, np.float64)[order]
        self.n_regions = int(n_regions)

    @classmethod
    def from_parts(cls, neg_buffer: np.ndarray, pos: np.ndarray, region_ids: np.ndarray | None):
        """``neg_buffer`` is consumed (it holds the sorted keys afterwards, no copy);
        ``region_ids`` (one int per positive, any non-negative labels) become the weights
        1/(K |C|) over the non-empty regions."""
        return cls.from_sorted(SortedScores.from_buffer(neg_buffer), pos, region_ids)

    @classmethod
    def from_sorted(cls, normals: SortedScores, pos: np.ndarray, region_ids: np.ndarray | None):
        """As :meth:`from_parts`, with the normal scores already sorted."""
        if region_ids is None:
            return cls(normals, pos)
        sizes = np.bincount(region_ids) if region_ids.size else np.zeros(0, np.int64)
        k = int(np.count_nonzero(sizes))
        weight = 1.0 / (k * sizes[region_ids].astype(np.float64)) if k else np.zeros(0)
        return cls(normals, pos, weight, k)

    @classmethod
    def from_flat(cls, scores: np.ndarray, positive: np.ndarray) -> Ranked:
        positive = np.asarray(positive) != 0
        return cls.from_parts(np.array(scores[~positive]), np.array(scores[positive]), None)

    @property
    def n(self) -> int:
        return self.normals.size

    @cached_property
    def neg(self) -> np.ndarray:
        """The normal scores as one ascending float array (a merge; for curves and plots)."""
        return self.normals.sorted_values()

    @property
    def n_pos(self) -> int:
        return int(self.pos.size)

    @cached_property
    def _above(self) -> tuple[np.ndarray, np.ndarray]:
        """(#normals > s, #normals >= s) for each positive s, int64, in one request."""
        return self.normals.count_above_both(self.pos)

    @property
    def n_gt(self) -> np.ndarray:
        """#normals strictly above each positive (int64)."""
        return self._above[0]

    @property
    def n_ge(self) -> np.ndarray:
        """#normals at or above each positive (int64)."""
        return self._above[1]

    @cached_property
    def _groups(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Distinct positive scores in descending order, their multiplicities and the number of
        normals above (strict) and at or above each (read off the per-positive counts)."""
        values, first, counts = np.unique(self.pos, return_index=True, return_counts=True)
        rev = slice(None, None, -1)
        return (values[rev], counts[rev].astype(np.int64), self.n_gt[first][rev],
                self.n_ge[first][rev])

    def _two_classes(self, metric: str) -> bool:
        if self.n == 0 or self.n_pos == 0:
            undefined(metric, f"needs both classes, got {self.n_pos} anomalous and {self.n} normal")
            return False
        return True

    def auroc(self, metric: str = "auroc") -> float:
        """Mann-Whitney AUC with ties counted 1/2 (= sklearn roc_auc_score), from integer sums."""
        if not self._two_classes(metric):
            return float("nan")
        # normals ranked above each positive, ties counted 1/2, summed exactly in int64
        above_twice = int(self.n_gt.sum()) + int(self.n_ge.sum())
        return 1.0 - above_twice / (2.0 * self.n * self.n_pos)

    def average_precision(self, metric: str = "ap") -> float:
        """Step AP = sum_j (R_j - R_{j-1}) P_j over distinct thresholds
        (= average_precision_score)."""
        if not self._two_classes(metric):
            return float("nan")
        _, counts, _, fp = self._groups
        tp = np.cumsum(counts)
        precision = tp / (tp + fp)
        return float(np.sum(counts * precision) / self.n_pos)

    def aupr_trapezoid(self, metric: str = "aupr") -> float:
        """Trapezoid under the PR curve (= auc(recall, precision) of precision_recall_curve).

        Only segments where recall grows have area; the segment ending at distinct positive value
        v_j starts at the curve point just above v_j (precision TP_{j-1} / (TP_{j-1} + #neg > v_j),
        or sklearn's appended (R=0, P=1) point when nothing lies above v_1)."""
        if not self._two_classes(metric):
            return float("nan")
        _, counts, above, at_or_above = self._groups
        tp = np.cumsum(counts)
        precision = tp / (tp + at_or_above)
        tp_prev = tp - counts
        den = tp_prev + above
        prev = np.divide(tp_prev, den, out=np.ones(den.shape, np.float64), where=den > 0)
        return float(np.sum(counts * (prev + precision)) / (2.0 * self.n_pos))

    def has_regions(self, metric: str) -> bool:
        if self.n_regions == 0 or self.weight is None:
            undefined(metric, "no anomalous region (GT is empty everywhere)")
            return False
        if self.n == 0:
            undefined(metric, "no normal cell, so the false-positive rate is undefined")
            return False
        return True

    def pro_exact(self, limit: float, metric: str = "aupro") -> float:
        """Exact, tie-collapsed AUPRO at ``limit`` (MVTec AD definition), closed form (§6):
        each positive adds w_i * g(a_i, b_i, L) / L with a = gt/n, b = ge/n."""
        if not self.has_regions(metric):
            return float("nan")
        a = self.n_gt / self.n
        b = self.n_ge / self.n
        width = b - a
        ramp = np.divide((limit - a) ** 2, 2.0 * width, out=np.zeros_like(a), where=width > 0)
        g = np.where(limit <= a, 0.0, np.where(limit >= b, width / 2.0 + (limit - b), ramp))
        return float(np.dot(self.weight, g) / limit)

    def pro_at_thresholds(self, thresholds: np.ndarray) -> np.ndarray:
        """PRO(t) = sum of w_i over positives with score > t (strict, as the sampled routines),
        for ascending ``thresholds``."""
        below = np.searchsorted(thresholds, self.pos, side="left")  # #thresholds < s_i
        mass = np.bincount(below, weights=self.weight, minlength=thresholds.size + 1)
        tail = np.cumsum(mass[::-1])[::-1]  # tail[j] = weight above >= j thresholds
        return tail[1:]
