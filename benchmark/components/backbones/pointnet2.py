"""PointNet++ single-scale-grouping (SSG) set abstraction and a small encoder for point patches.

Own implementation of Qi et al., "PointNet++" (NeurIPS 2017), SSG variant: each set-abstraction
level picks centres by farthest point sampling (`pointops.farthest_point_sample`), groups the
points of each centre's ball (`pointops.ball_query`), expresses them relative to the centre,
concatenates the previous level's features and applies a shared MLP (1x1 conv + BatchNorm + ReLU)
followed by a max over the group; the last level groups everything. Untrained: the weights come
from the method that trains it (no pretrained checkpoint is used anywhere).

Gradients flow to the input coordinates (the gathered coordinates are differentiable; only the
centre choice and the grouping indices are not), which adversarial input perturbations need.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from benchmark.components.geometry.pointops import ball_query, farthest_point_sample
from benchmark.errors import ConfigError, ContractError


def _gather(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """x (B,N,C), idx (B,...) -> (B,...,C)."""
    b = x.shape[0]
    flat = idx.reshape(b, -1)
    out = torch.gather(x, 1, flat[..., None].expand(-1, -1, x.shape[-1]))
    return out.reshape(*idx.shape, x.shape[-1])


class SetAbstraction(nn.Module):
    """One SSG level: (xyz (B,N,3), feats (B,N,C) | None) -> (centres (B,S,3), feats (B,S,C')).

    ``n_centers=None`` groups all points around the origin (PointNet++'s "group all" level).
    """

    def __init__(
        self,
        n_centers: int | None,
        radius: float | None,
        n_neighbors: int | None,
        in_channels: int,
        mlp: Sequence[int],
    ) -> None:
        super().__init__()
        if n_centers is not None and (radius is None or n_neighbors is None):
            raise ConfigError("SetAbstraction: radius and n_neighbors are needed with centres")
        self.n_centers = n_centers
        self.radius = radius
        self.n_neighbors = n_neighbors
        layers: list[nn.Module] = []
        last = in_channels + 3
        for width in mlp:
            layers += [nn.Conv2d(last, width, 1), nn.BatchNorm2d(width), nn.ReLU(inplace=True)]
            last = width
        self.mlp = nn.Sequential(*layers)
        self.out_channels = last

    def forward(
        self, xyz: torch.Tensor, feats: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if self.n_centers is None:
            centres = xyz.new_zeros(xyz.shape[0], 1, 3)
            grouped = xyz[:, None]  # (B,1,N,3)
            gfeat = feats[:, None] if feats is not None else None
        else:
            s = min(self.n_centers, xyz.shape[1])
            cidx = farthest_point_sample(xyz.detach(), s)
            centres = _gather(xyz, cidx)
            nidx = ball_query(xyz.detach(), centres.detach(), self.radius, self.n_neighbors)
            grouped = _gather(xyz, nidx) - centres[:, :, None]
            gfeat = _gather(feats, nidx) if feats is not None else None
        x = grouped if gfeat is None else torch.cat([grouped, gfeat], dim=-1)
        x = self.mlp(x.permute(0, 3, 1, 2))  # (B,C,S,K)
        return centres, x.max(dim=-1).values.permute(0, 2, 1)


class PointNet2SSG(nn.Module):
    """PointNet++ SSG encoder: set-abstraction levels, the last one grouping all points, then
    FC hidden (BatchNorm + ReLU) -> ``out_dim``. ``forward(points (B,N,3)) -> (B, out_dim)``.

    Defaults: the classification net of the paper scaled to small patches (32 and 8 centres,
    radii in the caller's units); every level is a constructor argument.
    """

    def __init__(
        self,
        out_dim: int,
        centers: Sequence[int] = (32, 8),
        radii: Sequence[float] = (0.2, 0.4),
        neighbors: Sequence[int] = (16, 16),
        mlps: Sequence[Sequence[int]] = ((64, 64, 128), (128, 128, 256), (256, 512, 1024)),
        fc_hidden: int = 256,
    ) -> None:
        super().__init__()
        if not (len(centers) == len(radii) == len(neighbors) == len(mlps) - 1):
            raise ConfigError(
                "PointNet2SSG: centers, radii and neighbors need one entry per level and mlps "
                "one more (the group-all level)"
            )
        levels = []
        channels = 0
        for s, r, k, mlp in zip(list(centers) + [None], list(radii) + [None],
                                list(neighbors) + [None], mlps):
            level = SetAbstraction(s, r, k, channels, mlp)
            levels.append(level)
            channels = level.out_channels
        self.levels = nn.ModuleList(levels)
        self.head = nn.Sequential(
            nn.Linear(channels, fc_hidden), nn.BatchNorm1d(fc_hidden), nn.ReLU(inplace=True),
            nn.Linear(fc_hidden, out_dim),
        )
        self.out_dim = out_dim

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        if points.ndim != 3 or points.shape[-1] != 3:
            raise ContractError(f"PointNet2SSG: expected points (B,N,3), got {tuple(points.shape)}")
        xyz, feats = points, None
        for level in self.levels:
            xyz, feats = level(xyz, feats)
        return self.head(feats[:, 0])
