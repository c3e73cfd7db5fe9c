"""Classical point-cloud features through Open3D: normals, FPFH descriptors, voxel down-sampling.

The defaults of `fpfh` are those of the Real3D-AD baselines (normals radius 1.0 / max_nn 30, FPFH
radius 2.5 / max_nn 100, units mm: voxel 0.5 x2 / x5); BTF on MVTec 3D-AD uses 0.1 / 30 and
0.25 / 100 (metres, voxel 0.05 x2 / x5). Normals keep Open3D's default (unoriented) signs, as
in both official codes.
"""

from __future__ import annotations

import numpy as np

from benchmark.errors import ContractError


def _o3d():
    import open3d as o3d

    return o3d


def _check(points: np.ndarray, name: str = "points") -> np.ndarray:
    pts = np.asarray(points)
    if pts.ndim != 2 or pts.shape[1] != 3:
        raise ContractError(f"{name}: expected shape (N,3), got {pts.shape}")
    if len(pts) == 0:
        raise ContractError(f"{name}: empty point cloud")
    if not np.isfinite(pts).all():
        raise ContractError(f"{name}: non-finite coordinates")
    return pts


def to_o3d(points: np.ndarray, normals: np.ndarray | None = None):
    """An Open3D PointCloud of (N,3) points (float64 copy), with optional normals."""
    o3d = _o3d()
    pc = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(_check(points).astype(np.float64)))
    if normals is not None:
        pc.normals = o3d.utility.Vector3dVector(np.asarray(normals, dtype=np.float64))
    return pc


def estimate_normals(points: np.ndarray, radius: float = 1.0, max_nn: int = 30) -> np.ndarray:
    """Unoriented normals (N,3) float32 from a hybrid radius / max_nn neighbourhood (Open3D)."""
    o3d = _o3d()
    pc = to_o3d(points)
    pc.estimate_normals(o3d.geometry.KDTreeSearchParamHybrid(radius=radius, max_nn=max_nn))
    return np.asarray(pc.normals, dtype=np.float32)


def fpfh(
    points: np.ndarray,
    normal_radius: float = 1.0,
    normal_max_nn: int = 30,
    feature_radius: float = 2.5,
    feature_max_nn: int = 100,
    normals: np.ndarray | None = None,
) -> np.ndarray:
    """33-d FPFH descriptor of every point, (N,33) float32 (Open3D ``compute_fpfh_feature``).

    Normals are estimated with (normal_radius, normal_max_nn) unless given.
    """
    o3d = _o3d()
    pc = to_o3d(points, normals)
    if normals is None:
        pc.estimate_normals(
            o3d.geometry.KDTreeSearchParamHybrid(radius=normal_radius, max_nn=normal_max_nn)
        )
    feat = o3d.pipelines.registration.compute_fpfh_feature(
        pc, o3d.geometry.KDTreeSearchParamHybrid(radius=feature_radius, max_nn=feature_max_nn)
    )
    return np.ascontiguousarray(np.asarray(feat.data).T, dtype=np.float32)


def voxel_down_sample(points: np.ndarray, voxel_size: float) -> np.ndarray:
    """Open3D voxel-grid down-sampling: one point (the mean) per occupied voxel, (M,3) float32."""
    if voxel_size <= 0:
        raise ContractError(f"voxel_down_sample: voxel_size must be > 0, got {voxel_size}")
    pc = to_o3d(points).voxel_down_sample(voxel_size)
    return np.asarray(pc.points, dtype=np.float32)
