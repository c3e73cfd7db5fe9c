"""Patch-centre samplers: GPS on a hand-made plane with a bump, the Table 4 alternatives."""

from __future__ import annotations

import numpy as np
import pytest

from benchmark.components.geometry.sampling import (
    SAMPLERS,
    gps_counts,
    normals_and_curvature,
    rate_of_change,
    sample_centers,
)
from benchmark.errors import ContractError

BUMP_CENTRE = np.array([0.3, 0.2])


@pytest.fixture(scope="module")
def plane_with_bump() -> tuple[np.ndarray, np.ndarray]:
    """A flat 2x2 square with one Gaussian bump; returns (points, on-bump mask)."""
    rng = np.random.default_rng(0)
    xy = rng.uniform(-1, 1, (4000, 2))
    r = np.linalg.norm(xy - BUMP_CENTRE, axis=1)
    z = 0.25 * np.exp(-(r**2) / (2 * 0.25**2))
    return np.c_[xy, z].astype(np.float32), r < 0.6


def test_normals_and_curvature_of_a_plane() -> None:
    rng = np.random.default_rng(1)
    pts = np.c_[rng.uniform(-1, 1, (500, 2)), np.zeros(500)].astype(np.float32)
    normals, curv = normals_and_curvature(pts)
    np.testing.assert_allclose(np.abs(normals[:, 2]), 1.0, atol=1e-5)
    assert curv.max() < 1e-6
    assert rate_of_change(pts).max() < 1e-4


def test_gps_counts_follow_tau_and_density() -> None:
    k_sal, k_oth = gps_counts(4000, 256, tau=0.3, density_ratio=2.0)
    assert k_sal + k_oth == 256
    # per-point density of the salient set (1200 points) twice that of the others (2800)
    assert abs((k_sal / 1200) / (k_oth / 2800) - 2.0) < 0.05
    assert gps_counts(4000, 256, tau=0.0) == (0, 256)
    assert gps_counts(10, 10, tau=0.3) == (3, 7)  # every point used


def test_gps_concentrates_on_the_bump(plane_with_bump) -> None:
    pts, bump = plane_with_bump
    rate = rate_of_change(pts)
    assert np.median(rate[bump]) > 10 * np.median(rate[~bump])
    idx = sample_centers(pts, 128, "gps")
    assert len(idx) == 128 and len(np.unique(idx)) == 128
    k_sal, _ = gps_counts(len(pts), 128)
    salient = np.argsort(-rate, kind="stable")[: int(0.3 * len(pts))]
    assert set(idx[:k_sal]) <= set(salient)  # the salient share comes from the top tau ranks
    share = bump.mean()
    assert bump[idx[:k_sal]].mean() > 2 * share  # salient centres sit on the bump
    assert bump[idx].mean() > 1.3 * share
    fps = sample_centers(pts, 128, "fps")
    assert bump[idx].mean() > bump[fps].mean()


@pytest.mark.parametrize("method", SAMPLERS)
def test_every_sampler_returns_distinct_indices(plane_with_bump, method: str) -> None:
    pts, _ = plane_with_bump
    a = sample_centers(pts, 100, method, seed=3)
    assert a.dtype == np.int64 and len(np.unique(a)) == 100 and a.max() < len(pts)
    np.testing.assert_array_equal(a, sample_centers(pts, 100, method, seed=3))
    if method == "random":
        assert not np.array_equal(a, sample_centers(pts, 100, method, seed=4))


def test_sampler_errors(plane_with_bump) -> None:
    pts, _ = plane_with_bump
    with pytest.raises(ContractError, match="unknown method"):
        sample_centers(pts, 10, "poisson")
    with pytest.raises(ContractError, match="must lie in"):
        sample_centers(pts[:5], 10, "fps")
    with pytest.raises(ContractError, match="gps"):
        sample_centers(pts, 10, "fps", tau=0.2)
