"""Rigid registration: RANSAC + FPFH global registration (as the Real3D-AD baselines) and ICP.

Ported from the recipe of M-3LAB/Real3D-AD ``feature_extractors/ransac_position.py`` (commit
9a9cd04d39e3; described in our own words in specs/methods.md §4.1): both clouds voxel-down-sampled
(0.5), normals (radius 2*voxel, max_nn 30), FPFH (radius 5*voxel, max_nn 100), Open3D
``registration_ransac_based_on_feature_matching`` with the mutual filter, max correspondence
distance 1.5*voxel, point-to-point estimation without scaling, ransac_n 3, edge-length (0.9) and
distance (1.5*voxel) checkers, 100000 iterations / confidence 0.999. The official code never seeds
Open3D's RNG, so its poses change from run to run; here the RNG is seeded from `seed` through
``benchmark.seeding`` (a documented deviation that makes results reproducible).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from benchmark.components.geometry.descriptors import _check, to_o3d
from benchmark.errors import ContractError

#: the fixed axis permutation the Real3D-AD code applies to every source cloud before RANSAC
#: (new x = old z, new y = old x, new z = old y)
REAL3D_AXIS_PERMUTATION = np.array(
    [[0.0, 0.0, 1.0, 0.0], [1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]]
)


class RegistrationResult(NamedTuple):
    transform: np.ndarray  # (4,4) float64, maps source into the target frame
    fitness: float
    inlier_rmse: float


def apply_transform(points: np.ndarray, transform: np.ndarray) -> np.ndarray:
    """Applies a (4,4) homogeneous rigid transform to (N,3) points; returns float32 (N,3)."""
    t = np.asarray(transform, dtype=np.float64)
    if t.shape != (4, 4):
        raise ContractError(f"apply_transform: expected a (4,4) matrix, got {t.shape}")
    pts = np.asarray(points)
    out = pts.astype(np.float64) @ t[:3, :3].T + t[:3, 3]
    return out.astype(np.float32)


def _prepare(points: np.ndarray, voxel: float, normal_mult: float, feature_mult: float):
    import open3d as o3d

    down = to_o3d(points).voxel_down_sample(voxel)
    down.estimate_normals(
        o3d.geometry.KDTreeSearchParamHybrid(radius=voxel * normal_mult, max_nn=30)
    )
    feat = o3d.pipelines.registration.compute_fpfh_feature(
        down, o3d.geometry.KDTreeSearchParamHybrid(radius=voxel * feature_mult, max_nn=100)
    )
    return down, feat


def global_registration(
    source: np.ndarray,
    target: np.ndarray,
    voxel_size: float = 0.5,
    normal_mult: float = 2.0,
    feature_mult: float = 5.0,
    distance_mult: float = 1.5,
    edge_length: float = 0.9,
    max_iteration: int = 100000,
    confidence: float = 0.999,
    mutual_filter: bool = True,
    seed: int = 0,
) -> RegistrationResult:
    """RANSAC on FPFH correspondences of the voxel-down-sampled clouds; source -> target pose."""
    import open3d as o3d

    from benchmark.seeding import seed_everything

    _check(source, "source")
    _check(target, "target")
    reg = o3d.pipelines.registration
    src_down, src_feat = _prepare(source, voxel_size, normal_mult, feature_mult)
    tgt_down, tgt_feat = _prepare(target, voxel_size, normal_mult, feature_mult)
    if len(src_down.points) < 3 or len(tgt_down.points) < 3:
        raise ContractError(
            f"global_registration: fewer than 3 points left after voxel down-sampling "
            f"({voxel_size}); is the voxel size right for these units?"
        )
    dist = voxel_size * distance_mult
    seed_everything(seed)
    o3d.utility.random.seed(int(seed) % (2**31))
    result = reg.registration_ransac_based_on_feature_matching(
        src_down,
        tgt_down,
        src_feat,
        tgt_feat,
        mutual_filter,
        dist,
        reg.TransformationEstimationPointToPoint(False),
        3,
        [
            reg.CorrespondenceCheckerBasedOnEdgeLength(edge_length),
            reg.CorrespondenceCheckerBasedOnDistance(dist),
        ],
        reg.RANSACConvergenceCriteria(max_iteration, confidence),
    )
    return RegistrationResult(
        np.asarray(result.transformation).copy(), float(result.fitness), float(result.inlier_rmse)
    )


def icp(
    source: np.ndarray,
    target: np.ndarray,
    threshold: float,
    init: np.ndarray | None = None,
    point_to_plane: bool = False,
    normal_radius: float | None = None,
    max_iteration: int = 30,
) -> RegistrationResult:
    """Open3D ICP refinement (point-to-point by default, Open3D's default as in the Real3D-AD
    ``get_registration_refine_np``); point_to_plane estimates target normals (radius
    `normal_radius`, default 2*threshold)."""
    import open3d as o3d

    reg = o3d.pipelines.registration
    src, tgt = to_o3d(_check(source, "source")), to_o3d(_check(target, "target"))
    init = np.eye(4) if init is None else np.asarray(init, dtype=np.float64)
    if point_to_plane:
        r = normal_radius if normal_radius is not None else 2.0 * threshold
        tgt.estimate_normals(o3d.geometry.KDTreeSearchParamHybrid(radius=r, max_nn=30))
        est = reg.TransformationEstimationPointToPlane()
    else:
        est = reg.TransformationEstimationPointToPoint(False)
    result = reg.registration_icp(
        src, tgt, threshold, init, est, reg.ICPConvergenceCriteria(max_iteration=max_iteration)
    )
    return RegistrationResult(
        np.asarray(result.transformation).copy(), float(result.fitness), float(result.inlier_rmse)
    )


def register_to_template(
    source: np.ndarray,
    template: np.ndarray,
    seed: int = 0,
    axis_permutation: bool = True,
    **ransac_args: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Real3D-AD's ``get_registration_np``: permute the source axes (REAL3D_AXIS_PERMUTATION),
    RANSAC-register it to `template`, return (registered full-resolution source float32 (N,3),
    the full (4,4) source -> template transform)."""
    pre = REAL3D_AXIS_PERMUTATION if axis_permutation else np.eye(4)
    moved = apply_transform(source, pre)
    res = global_registration(moved, template, seed=seed, **ransac_args)
    full = res.transform @ pre
    return apply_transform(source, full), full
