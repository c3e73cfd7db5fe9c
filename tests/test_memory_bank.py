"""components.memory_bank: coreset selection order, NN scoring backends, BTF reweighting."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from benchmark.components.memory_bank import (
    FeatureBank,
    approximate_greedy_coreset,
    btf_reweighted_score,
    coreset_size,
    greedy_coreset_btf,
    has_faiss,
    linear_projection_weight,
    sparse_random_projection,
)
from benchmark.errors import ContractError

LINE = np.array([[0, 0], [1, 0], [2, 0], [10, 0], [5, 0]], np.float32)


def test_approximate_greedy_hand_case() -> None:
    # all 5 rows are starts; mean distances 3.6, 3, 2.8, 6.4, 3.4 -> pick 10, then 0 (3.6 vs
    # d=10), then 5 (min(3.4, 5)), then 2 (min(2.8, 8, 2, 3) = 2), then 1
    idx = approximate_greedy_coreset(LINE, 5, proj_dim=2, n_starts=10, seed=0)
    assert idx.tolist() == [3, 0, 4, 2, 1]
    assert idx.dtype == np.int64


def test_btf_greedy_hand_case() -> None:
    # from row 0: farthest is 10, then 5 (min distances 1, 2, 5), then 2, then 1
    idx = greedy_coreset_btf(LINE[:, :1], 5)
    assert idx.tolist() == [0, 3, 4, 2, 1]
    assert greedy_coreset_btf(LINE[:, :1], 2, float16=True).tolist() == [0, 3]


def _official_approx_reference(x: np.ndarray, n: int, seed: int) -> list[int]:
    """The official sampler's arithmetic: nn.Linear(D,128) after torch.manual_seed, 128-d."""
    torch.manual_seed(seed)
    mapper = torch.nn.Linear(x.shape[1], 128, bias=False)
    with torch.no_grad():
        f = mapper(torch.from_numpy(x))
    starts = np.random.RandomState(seed).choice(len(f), 10, replace=False)
    mind = torch.cdist(f, f[starts]).mean(1)
    out = []
    for _ in range(n):
        pick = int(torch.argmax(mind))
        out.append(pick)
        mind = torch.minimum(mind, torch.cdist(f, f[pick : pick + 1])[:, 0])
    return out


def test_projection_weight_is_nn_linear_default_init() -> None:
    torch.manual_seed(7)
    ref = torch.nn.Linear(33, 128, bias=False).weight.detach()
    torch.testing.assert_close(linear_projection_weight(33, 128, seed=7), ref)


@pytest.mark.parametrize("dim", [3, 33, 200])
def test_approximate_greedy_matches_official_arithmetic(dim: int) -> None:
    x = np.random.default_rng(dim).normal(size=(300, dim)).astype(np.float32)
    ours = approximate_greedy_coreset(x, 40, seed=3).tolist()
    assert ours == _official_approx_reference(x, 40, seed=3)
    assert len(set(ours)) == 40


def test_btf_projection_only_for_wide_features() -> None:
    rng = np.random.default_rng(0)
    assert sparse_random_projection(rng.normal(size=(50, 33))) is None  # JL dim ~97 > 33
    z = sparse_random_projection(rng.normal(size=(50, 200)).astype(np.float32), seed=0)
    assert z is not None and 33 < z.shape[1] < 200
    idx = greedy_coreset_btf(rng.normal(size=(50, 200)).astype(np.float32), 10)
    assert idx[0] == 0 and len(set(idx.tolist())) == 10


def test_coreset_size() -> None:
    assert coreset_size(784 * 3, fraction=0.1) == 235
    assert coreset_size(5000, size=10000) == 5000
    assert coreset_size(50000, size=10000) == 10000
    with pytest.raises(ContractError):
        coreset_size(10, fraction=0.1, size=3)
    with pytest.raises(ContractError):
        approximate_greedy_coreset(LINE, 6)


@pytest.mark.parametrize("backend", ["torch", "faiss"])
def test_feature_bank_search(backend: str) -> None:
    if backend == "faiss" and not has_faiss():
        pytest.skip("faiss not installed")
    rng = np.random.default_rng(0)
    bank = rng.normal(size=(500, 16)).astype(np.float32)
    q = rng.normal(size=(70, 16)).astype(np.float32)
    fb = FeatureBank(bank, backend=backend)
    d, i = fb.search(q, k=3)
    ref = np.sqrt(((q[:, None] - bank[None]) ** 2).sum(-1))
    np.testing.assert_array_equal(i, np.argsort(ref, 1)[:, :3])
    np.testing.assert_allclose(d, np.sort(ref, 1)[:, :3], rtol=1e-4, atol=1e-4)
    d2, _ = fb.search(q, k=1, squared=True)
    np.testing.assert_allclose(d2[:, 0], d[:, 0] ** 2, rtol=1e-4, atol=1e-4)
    with pytest.raises(ContractError, match="dim"):
        fb.search(q[:, :3])


def test_btf_reweighting_hand_case() -> None:
    bank = np.array([[0, 0], [1, 0], [0, 1], [5, 5]], np.float32)
    patches = np.array([[0.1, 0], [3, 0]], np.float32)
    d, i = FeatureBank(bank, backend="torch").search(patches)
    assert i[:, 0].tolist() == [0, 1]
    score = btf_reweighted_score(patches, d[:, 0], i[:, 0], bank)
    # s* = 2 (patch (3,0) vs bank (1,0)); the 3 NN of (1,0) are itself, (0,0), (0,1);
    # distances of (3,0) to the two others: 3 and sqrt(10); D = sqrt(2)
    big_d = math.sqrt(2)
    w = 1 - math.exp(2 / big_d) / (math.exp(3 / big_d) + math.exp(math.sqrt(10) / big_d))
    assert score == pytest.approx(w * 2, rel=1e-5)
    eps = btf_reweighted_score(patches, d[:, 0], i[:, 0], bank, denominator_eps=1e-5)
    assert eps > score


@pytest.mark.parametrize("fn", [approximate_greedy_coreset, greedy_coreset_btf])
def test_pruned_greedy_selects_like_the_plain_loop(fn) -> None:
    # clustered rows, so that the triangle-inequality pruning really skips most of them
    rng = np.random.default_rng(0)
    centres = rng.normal(scale=10, size=(30, 33))
    x = (centres[rng.integers(0, 30, 4000)] + rng.normal(size=(4000, 33))).astype(np.float32)
    fast = fn(x, 400, prune=True)
    plain = fn(x, 400, prune=False)
    np.testing.assert_array_equal(fast, plain)
