"""Pieces shared by the memory-bank presets (methods/patchcore.py, methods/btf.py): centring,
cached template registration and test-set min-max normalisation."""

from __future__ import annotations

import hashlib

import numpy as np

from benchmark.cache import cached_dir
from benchmark.components.geometry.pointops import centre, knn
from benchmark.components.geometry.registration import apply_transform, register_to_template
from benchmark.errors import ConfigError
from benchmark.timing import StageTimer
from benchmark.units import parse_length, to_data_units


def array_digest(arr: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(arr).view(np.uint8)).hexdigest()[:24]


def registration_transform(
    points: np.ndarray,
    template: np.ndarray,
    seed: int,
    voxel_size: float,
    max_iteration: int = 100000,
    use_cache: bool = True,
) -> np.ndarray:
    """(4,4) transform of Real3D-AD's registration (axis permutation + RANSAC/FPFH) of `points`
    onto `template`, cached under benchmark.cache keyed by both clouds' content and the recipe."""

    def compute() -> np.ndarray:
        _, full = register_to_template(
            points, template, seed=seed, voxel_size=voxel_size, max_iteration=max_iteration
        )
        return full

    if not use_cache:
        return compute()
    recipe = {
        "what": "real3d_ransac_fpfh_registration",
        "version": 1,
        "source": array_digest(points),
        "template": array_digest(template),
        "seed": int(seed),
        "voxel_size": float(voxel_size),
        "max_iteration": int(max_iteration),
    }

    def build(tmp) -> None:
        np.save(tmp / "transform.npy", compute())

    return np.load(cached_dir("registration", recipe, build) / "transform.npy")


def register(points: np.ndarray, transform: np.ndarray) -> np.ndarray:
    return apply_transform(points, transform)


def centre_and_register(
    points: np.ndarray,
    template: np.ndarray | None,
    *,
    enabled: bool,
    seed: int,
    voxel: float | None,
    iterations: int,
    cache: bool,
    timer: StageTimer,
) -> np.ndarray:
    """The Real3D-AD baselines' input: the centred cloud, registered (RANSAC+FPFH, pose cached)
    to the centred template when `enabled`; float32 (N,3)."""
    pts = centre(points)
    if not enabled:
        return pts
    with timer("registration"):
        t = registration_transform(pts, template, seed, voxel, iterations, cache)
        return register(pts, t)


def check_voxel(voxel_size: float | str) -> float | str:
    """Validates a voxel size: a positive number (data units), a length with a unit ("0.5mm")
    or "auto"; returns it unchanged."""
    if voxel_size == "auto":
        return voxel_size
    try:
        number, _ = parse_length(voxel_size)
    except ConfigError:
        number = -1.0
    if not number > 0:
        raise ConfigError(
            f"voxel_size must be a positive number (data units), a length such as '0.5mm', "
            f"or 'auto'; got {voxel_size!r}"
        )
    return voxel_size


def auto_voxel(
    points: np.ndarray, voxel_size: float | str, seed: int = 0, unit: str | None = None
) -> float:
    """The voxel size in the cloud's units: a bare number as given; a length with a unit
    ("0.5mm") converted to the data's `unit`; "auto" -- and a unit-bearing length on unit-less
    data (`unit` None) -- 2.5x the median nearest-neighbour spacing of the cloud (a guess: the
    Real3D-AD scans have a spacing of roughly 0.1-0.2 mm against the official 0.5 mm voxel)."""
    check_voxel(voxel_size)
    if voxel_size != "auto":
        converted = to_data_units(voxel_size, unit)
        if converted is not None:
            return float(converted)
    pts = np.asarray(points, dtype=np.float32)
    if len(pts) < 2:
        raise ConfigError("voxel_size='auto' needs at least 2 points")
    rng = np.random.default_rng(seed)
    probe = pts[rng.choice(len(pts), min(len(pts), 20000), replace=False)]
    dist, _ = knn(probe, pts, 2)
    spacing = float(np.median(dist[:, 1]))
    return max(2.5 * spacing, 1e-9)


def warn_if_finer_than_spacing(points: np.ndarray, voxel: float, what: str) -> None:
    """A warning (not an error: the recipe still runs) when the voxel -- and so the normal
    radius, 2x the voxel -- is below the cloud's point spacing: normals and FPFH then see almost
    no neighbours and the scores degenerate. Happens when a physical default meets data sampled
    much more coarsely than the official scans (e.g. the small synthetic trees)."""
    import warnings

    spacing = auto_voxel(points, "auto") / 2.5
    if 2 * voxel < spacing:
        warnings.warn(
            f"{what}: voxel {voxel:.3g} (normal radius {2 * voxel:.3g}) is below the median "
            f"point spacing {spacing:.3g} of the template; features will be degenerate. "
            "Pass voxel_size='auto' (2.5x the spacing) or a coarser length.",
            stacklevel=3,
        )


def minmax(values: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """(v - lo) / (hi - lo); all zeros when hi == lo."""
    span = hi - lo
    if not span > 0:
        return np.zeros_like(values, dtype=np.float32)
    return ((values - lo) / span).astype(np.float32)
