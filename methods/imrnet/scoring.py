"""IMRNet test-time pieces that are new in the method: the iterative mask-and-reconstruct loop
(Algorithm 1), its mask schedule, template regularisation and the patch -> point score maps
(DFC, Sec. 4.3). The network, Chamfer and grouping come from the toolkit."""

from __future__ import annotations

import numpy as np
import torch

from benchmark.components.backbones.pointmae_mae import PointMAE
from benchmark.components.geometry.pointops import knn
from benchmark.errors import ConfigError

MASK_SCHEDULES = ("cover", "independent")


def iteration_masks(
    groups: int, ratio: float, iterations: int, rng: np.random.Generator, schedule: str = "cover"
) -> np.ndarray:
    """(iterations, G) bool, ``int(ratio*G)`` masked patches per iteration.

    ``independent``: a fresh random subset each iteration. ``cover``: one random permutation cut
    into consecutive slices (wrapping around), so successive iterations mask different patches and
    every patch is masked at least once when ratio * iterations >= 1."""
    if not 0.0 < ratio < 1.0:
        raise ConfigError(f"imrnet: mask_ratio {ratio} must lie in (0, 1)")
    m = max(1, int(ratio * groups))
    out = np.zeros((iterations, groups), bool)
    if schedule == "independent":
        for t in range(iterations):
            out[t, rng.permutation(groups)[:m]] = True
    elif schedule == "cover":
        perm = rng.permutation(groups)
        for t in range(iterations):
            out[t, perm[(t * m + np.arange(m)) % groups]] = True
    else:
        raise ConfigError(f"imrnet: mask_schedule {schedule!r} not in {MASK_SCHEDULES}")
    return out


@torch.no_grad()
def iterative_reconstruction(
    model: PointMAE, neighborhood: torch.Tensor, center: torch.Tensor, masks: np.ndarray
) -> torch.Tensor:
    """Algorithm 1, lines 5-10: for each iteration mask, the masked patches are replaced by the
    network's prediction and the result is fed back. neighborhood (G,K,3) relative points,
    center (G,3) -> the final (G,K,3) patches (K = the head's point count)."""
    cur = neighborhood.clone()
    for mask_np in masks:
        mask = torch.from_numpy(mask_np).to(cur.device)
        pred = model.reconstruct(cur[None], center[None], mask[None])[0]
        cur = cur.clone()
        cur[mask] = pred
    return cur


def regularize(
    features: torch.Tensor, template: torch.Tensor, threshold: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Template regularisation (eq. 19): each feature vector's distance to its corresponding
    template vector (the nearest one in feature space); vectors farther than `threshold` are
    replaced by it. Returns (regularised features, distances, replaced mask)."""
    dist, idx = knn(features.float(), template.float(), 1, backend="torch")
    dist, idx = dist[:, 0], idx[:, 0]
    replaced = dist > threshold
    out = features.clone()
    out[replaced] = template[idx[replaced]].to(out.dtype)
    return out, dist, replaced


def point_to_patch_distances(inputs: torch.Tensor, recon: torch.Tensor) -> torch.Tensor:
    """(G,K,3) input patches, (G,K',3) reconstructed patches -> (G,K) squared distance of every
    input point to the nearest reconstructed point of its own patch (the input->output half of
    the patch Chamfer, kept per point)."""
    return torch.cdist(inputs, recon).pow(2).min(2).values


def point_values_to_points(values: np.ndarray, group_idx: np.ndarray, centers: np.ndarray,
                           points: np.ndarray) -> np.ndarray:  # fmt: skip
    """Per-point map from per-(patch, member) values (G,K): the mean over the patch memberships
    of a point; points in no patch take the mean value of the nearest centre's patch."""
    n = len(points)
    flat = group_idx.reshape(-1)
    sums = np.bincount(flat, weights=values.reshape(-1), minlength=n)
    counts = np.bincount(flat, minlength=n)
    out = np.empty(n, np.float64)
    hit = counts > 0
    out[hit] = sums[hit] / counts[hit]
    if (~hit).any():
        _, near = knn(points[~hit], centers, 1)
        out[~hit] = values.mean(1)[near[:, 0]]
    return out.astype(np.float32)


def patches_to_points(
    values: np.ndarray, group_idx: np.ndarray, centers: np.ndarray, points: np.ndarray
) -> np.ndarray:
    """Per-point map from per-patch values: the mean over the patches a point belongs to;
    points in no patch take the value of the nearest patch centre."""
    n = len(points)
    flat = group_idx.reshape(-1)
    sums = np.bincount(flat, weights=np.repeat(values, group_idx.shape[1]), minlength=n)
    counts = np.bincount(flat, minlength=n)
    out = np.empty(n, np.float64)
    hit = counts > 0
    out[hit] = sums[hit] / counts[hit]
    if (~hit).any():
        _, near = knn(points[~hit], centers, 1)
        out[~hit] = values[near[:, 0]]
    return out.astype(np.float32)
