"""Group3AD clustering and losses (paper §3.2.1-3.2.2, eq. 7-14).

K-means is scikit-learn's; K is the elbow of the within-cluster sum of squares (eq. 7-8) over a
range of K, found with the Kneedle rule of the ``kneed`` package (convex, decreasing curve). The
losses take the group features with gradients and the K-means labels (fixed, no gradient):

- IUN, eq. 9-11: L_uniformity = 1 / min_{i<j} ||mu_i - mu_j||_2, mu_k = mean feature of cluster k;
- IAN, eq. 12-14: L_alignment = T / K * sum_k max_{a,b in C_k} ||f_a - f_b||_2^2.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
from kneed import KneeLocator
from sklearn.cluster import KMeans

from benchmark.errors import ConfigError


def wcss_curve(
    features: np.ndarray, ks: list[int], seed: int, n_init: int = 3
) -> tuple[np.ndarray, dict[int, np.ndarray]]:
    """WCSS W(K) (eq. 8) for each K of `ks`, and the K-means labels of each K."""
    x = np.asarray(features, dtype=np.float64)
    wcss, labels = [], {}
    for k in ks:
        km = KMeans(n_clusters=k, n_init=n_init, random_state=seed).fit(x)
        wcss.append(float(km.inertia_))
        labels[k] = km.labels_.astype(np.int64)
    return np.asarray(wcss), labels


def elbow(ks: list[int], wcss: np.ndarray) -> int:
    """The elbow K of a decreasing WCSS curve (kneed's Kneedle, sensitivity 1); the smallest K
    when the curve has no knee (e.g. a straight line: no cluster structure)."""
    if len(ks) < 3:
        return int(ks[0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # kneed warns when it finds no knee
        knee = KneeLocator(ks, list(wcss), curve="convex", direction="decreasing").knee
    return int(ks[0]) if knee is None else int(knee)


def cluster_features(
    features: np.ndarray, k_range: tuple[int, int], seed: int, n_init: int = 3
) -> tuple[int, np.ndarray]:
    """(K chosen by the elbow method over k_range (inclusive), K-means labels (G,))."""
    k_lo, k_hi = int(k_range[0]), int(k_range[1])
    if not 2 <= k_lo <= k_hi:
        raise ConfigError(f"group3ad: k_range must satisfy 2 <= min <= max, got {k_range}")
    n = len(features)
    ks = list(range(k_lo, min(k_hi, n - 1) + 1))
    if not ks:
        raise ConfigError(f"group3ad: {n} group features are too few to cluster with K >= {k_lo}")
    wcss, labels = wcss_curve(features, ks, seed, n_init)
    k = elbow(ks, wcss)
    return k, labels[k]


def _as_labels(labels: np.ndarray | torch.Tensor, device: torch.device) -> torch.Tensor:
    lab = torch.as_tensor(np.asarray(labels) if not isinstance(labels, torch.Tensor) else labels)
    _, lab = torch.unique(lab.to(device), return_inverse=True)  # 0..K-1, no empty cluster
    return lab


def uniformity_loss(features: torch.Tensor, labels: np.ndarray | torch.Tensor) -> torch.Tensor:
    """Eq. 9-11: 1 / (minimum Euclidean distance between two cluster centres)."""
    lab = _as_labels(labels, features.device)
    k = int(lab.max()) + 1
    if k < 2:
        raise ConfigError("group3ad: the uniformity loss needs at least 2 clusters")
    sums = features.new_zeros(k, features.shape[1]).index_add(0, lab, features)
    counts = torch.bincount(lab, minlength=k).to(features.dtype)
    centres = sums / counts[:, None]
    return 1.0 / torch.pdist(centres).min()


def alignment_loss(
    features: torch.Tensor, labels: np.ndarray | torch.Tensor, temperature: float = 1.0
) -> torch.Tensor:
    """Eq. 12-14: T / K * sum over clusters of the squared largest distance between two of its
    members (a one-member cluster contributes 0)."""
    lab = _as_labels(labels, features.device)
    k = int(lab.max()) + 1
    total = features.new_zeros(())
    for c in range(k):
        members = features[lab == c]
        if len(members) > 1:
            sq = members.pow(2).sum(1)
            d2 = (sq[:, None] + sq[None, :] - 2.0 * members @ members.T).clamp_min(0)  # (m,m)
            total = total + d2.max()
    return temperature / k * total
