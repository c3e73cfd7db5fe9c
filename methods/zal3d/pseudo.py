"""3DzAL pseudo anomalies (specs/3dzal.md §4): the inductive-bias map of an untrained ResNet-50 on
organized xyz, and the "adding" / "removing" pseudo-anomaly patches.

Everything here is a re-implementation from the project-page figures and the supplement (no
official code); the guessed choices are listed in ``methods/zal3d/__init__.py``.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from scipy.spatial import cKDTree

from benchmark.errors import ContractError


def random_resnet50(seed: int, arch: str = "resnet50") -> torch.nn.Module:
    """An untrained torchvision ResNet-50 (or ResNeXt-50 32x4d / WRN-50-2: supplement G) whose
    initialisation is fixed by `seed`, in eval mode, without gradients."""
    from benchmark.compat import import_torchvision

    tv = import_torchvision()
    if tv is None:
        raise ContractError("3DzAL inductive bias: torchvision is not installed")
    builders = {"resnet50": tv.models.resnet50, "resnext50_32x4d": tv.models.resnext50_32x4d,
                "wide_resnet50_2": tv.models.wide_resnet50_2}
    if arch not in builders:
        raise ContractError(f"3DzAL inductive bias: unknown arch {arch!r}; known {list(builders)}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        net = builders[arch](weights=None)
    net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return net


@torch.no_grad()
def inductive_bias_map(net: torch.nn.Module, grid: np.ndarray) -> np.ndarray:
    """Attention of an untrained CNN on an organized xyz grid (H,W,3), (0,0,0) = missing.

    Input: each channel standardised over the valid cells, background 0, as a (1,3,H,W) image;
    attention = sum over channels of |layer4 activation| (SCDA-style), bilinearly upsampled to
    (H,W), min-max normalised to [0,1]; 0 on missing cells. Returns (H,W) float32.
    """
    if grid.ndim != 3 or grid.shape[2] != 3:
        raise ContractError(f"inductive_bias_map: expected an (H,W,3) grid, got {grid.shape}")
    valid = np.any(grid != 0, axis=-1)
    x = np.zeros_like(grid, dtype=np.float32)
    if valid.any():
        v = grid[valid].astype(np.float64)
        std = v.std(0)
        std[std == 0] = 1.0
        x[valid] = ((v - v.mean(0)) / std).astype(np.float32)
    t = torch.from_numpy(x).permute(2, 0, 1)[None]
    device = next(net.parameters()).device
    t = t.to(device)
    f = net.maxpool(net.relu(net.bn1(net.conv1(t))))
    f = net.layer4(net.layer3(net.layer2(net.layer1(f))))
    att = f.abs().sum(1, keepdim=True)
    att = F.interpolate(att, size=grid.shape[:2], mode="bilinear", align_corners=False)[0, 0]
    att = att.cpu().numpy().astype(np.float32)
    att[~valid] = 0
    if valid.any():
        lo, hi = att[valid].min(), att[valid].max()
        att[valid] = (att[valid] - lo) / (hi - lo) if hi > lo else 0.0
    return att


class AddSource:
    """The part of one task-irrelevant cloud that "adding" pseudo anomalies draw from: the
    top-`top_fraction` attention points (the candidates for q) and, for each, its n_add nearest
    points, where n_add = ceil(tau * number of valid points). Only the union of these
    neighbourhoods is kept (bounded memory; the n_add-NN of a candidate within the union equal
    those within the whole cloud)."""

    def __init__(self, points: np.ndarray, attention: np.ndarray, tau: float,
                 top_fraction: float = 0.01) -> None:
        if len(points) == 0:
            raise ContractError("AddSource: empty task-irrelevant cloud")
        self.n_add = max(1, min(len(points), math.ceil(tau * len(points))))
        n_top = max(1, int(round(top_fraction * len(points))))
        top = np.argsort(-attention, kind="stable")[:n_top]
        _, nn = cKDTree(points).query(points[top], k=self.n_add)
        nn = np.asarray(nn).reshape(len(top), self.n_add)
        keep, inverse = np.unique(nn, return_inverse=True)
        self.points = points[keep].astype(np.float32)
        self.neighbourhoods = inverse.reshape(nn.shape)  # (n_top, n_add) rows of self.points

    def draw(self, rng: np.random.Generator) -> np.ndarray:
        """N_T of a random top-attention point q: (n_add, 3)."""
        return self.points[self.neighbourhoods[rng.integers(len(self.neighbourhoods))]]


def local_frame(patch: np.ndarray) -> np.ndarray:
    """(3,3) rows: two tangent directions and the normal (smallest principal axis) of a patch."""
    c = patch - patch.mean(0)
    _, vecs = np.linalg.eigh(c.T @ c)
    return np.stack([vecs[:, 2], vecs[:, 1], vecs[:, 0]])


def add_points(
    cloud: np.ndarray,
    tree: cKDTree,
    anchor: int,
    foreign: np.ndarray,
    k: int,
    rng: np.random.Generator,
    offset_max: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """"Adding" pseudo anomaly: `foreign` (N_T) is shifted so its centroid lands on the anchor p
    (plus r ~ U(0, offset_max) along p's local normal; default offset_max = the normal patch's
    radius) and rotated by a random angle about that normal; the patch is the k nearest points of
    p in cloud ∪ N_T'. Returns (patch (k,3), is_foreign (k,) bool)."""
    p = cloud[anchor]
    kk = min(k, len(cloud))
    d, nn = tree.query(p, k=kk)
    nn = np.atleast_1d(nn)
    normal_patch = cloud[nn]
    frame = local_frame(normal_patch)
    n = frame[2]
    radius = float(np.max(np.atleast_1d(d))) if offset_max is None else float(offset_max)
    theta = rng.uniform(0.0, 2.0 * np.pi)
    r = rng.uniform(0.0, radius)
    # rotation about n (Rodrigues)
    kx = np.array([[0, -n[2], n[1]], [n[2], 0, -n[0]], [-n[1], n[0], 0]])
    rot = np.eye(3) + np.sin(theta) * kx + (1 - np.cos(theta)) * (kx @ kx)
    moved = (foreign - foreign.mean(0)) @ rot.T + p + r * n
    # the k nearest of p in S are among its kk nearest: search S-candidates ∪ N_T'
    pool = np.concatenate([normal_patch, moved]).astype(np.float32)
    dist = np.linalg.norm(pool - p, axis=1)
    pick = np.argsort(dist, kind="stable")[:k]
    return pool[pick], pick >= len(normal_patch)


def remove_points(
    cloud: np.ndarray,
    tree: cKDTree,
    anchor: int,
    k: int,
    rng: np.random.Generator,
    hole_fraction: tuple[float, float] = (0.2, 0.5),
    centre_radius: float = 0.5,
) -> tuple[np.ndarray, np.ndarray]:
    """"Removing" pseudo anomaly: the k + n_rm nearest points of the anchor p, minus the n_rm of
    them nearest to a random point c within centre_radius x (patch radius) of p (n_rm ~ U(0.2k,
    0.5k) by default), so the patch keeps k points and has a hole. Returns (patch (k,3), removed
    points (n_rm,3))."""
    lo, hi = hole_fraction
    n_rm = int(rng.integers(max(1, int(round(lo * k))), max(2, int(round(hi * k))) + 1))
    total = min(k + n_rm, len(cloud))
    n_rm = max(0, total - k)
    d, nn = tree.query(cloud[anchor], k=total)
    cand = cloud[np.atleast_1d(nn)]
    radius = float(np.max(np.atleast_1d(d)))
    p = cloud[anchor]
    u = rng.normal(size=3)
    u /= max(np.linalg.norm(u), 1e-12)
    c = p + u * rng.uniform(0.0, centre_radius * radius)
    order = np.argsort(np.linalg.norm(cand - c, axis=1), kind="stable")
    removed = np.zeros(len(cand), bool)
    removed[order[:n_rm]] = True
    return cand[~removed], cand[removed]
