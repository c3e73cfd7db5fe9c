"""PointNet++ SSG pieces of the toolkit: ball query and the set-abstraction encoder."""

from __future__ import annotations

import pytest
import torch

from benchmark.components.backbones.pointnet2 import PointNet2SSG, SetAbstraction
from benchmark.components.geometry.pointops import ball_query
from benchmark.errors import ConfigError, ContractError


def test_ball_query_first_k_in_index_order_padded() -> None:
    pts = torch.tensor([[[0.0, 0, 0], [3, 0, 0], [0.1, 0, 0], [0, 0.2, 0], [0.05, 0, 0]]])
    centres = torch.tensor([[[0.0, 0, 0], [3.0, 0, 0], [9.0, 9, 9]]])
    idx = ball_query(pts, centres, radius=0.15, k=4)
    assert idx.shape == (1, 3, 4)
    assert idx[0, 0].tolist() == [0, 2, 4, 0]  # in index order, padded with the first found
    assert idx[0, 1].tolist() == [1, 1, 1, 1]
    assert idx[0, 2].tolist() == [1, 1, 1, 1]  # empty ball: the nearest point
    big = ball_query(pts, centres[:, :1], radius=10.0, k=8)
    assert big[0, 0].tolist() == [0, 1, 2, 3, 4, 0, 0, 0]
    with pytest.raises(ContractError):
        ball_query(pts[0], centres[0], 0.1, 2)


def test_pointnet2_ssg_shapes_invariance_and_gradients() -> None:
    torch.manual_seed(0)
    net = PointNet2SSG(8, centers=(8, 4), radii=(0.5, 1.0), neighbors=(4, 4),
                       mlps=((8,), (16,), (32,)), fc_hidden=16).eval()
    x = torch.randn(3, 20, 3, requires_grad=True)
    y = net(x)
    assert y.shape == (3, 8)
    # a max-pooled set function: permuting the points leaves the output unchanged up to the
    # farthest-point start (index 0 is kept in place)
    perm = torch.cat([torch.tensor([0]), torch.randperm(19) + 1])
    assert torch.allclose(net(x[:, perm]), y, atol=1e-5)
    y.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    # a different cloud gives a different feature
    assert not torch.allclose(net(x + 0.3 * torch.randn_like(x)), y)
    with pytest.raises(ConfigError):
        PointNet2SSG(4, centers=(8,), radii=(0.5, 1.0), neighbors=(4,), mlps=((8,), (16,)))
    with pytest.raises(ContractError):
        net(torch.zeros(2, 5, 2))
    with pytest.raises(ConfigError):
        SetAbstraction(8, None, None, 0, (8,))
