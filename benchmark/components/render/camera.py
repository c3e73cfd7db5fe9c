"""Camera model and view recipes shared by the renderer's backends (see `multiview` for the
rendering itself and the provenance of the whole renderer).

Open3D legacy Visualizer defaults: the cloud is rotated about its centroid by each view's
rotation, a perspective pinhole camera is fitted to the box of the rotated cloud (look-at = box
centre, front = +z, up = +y, 60 deg vertical field of view), and points project to integer
pixel coordinates as the official scripts do.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from benchmark.errors import BenchmarkError, ContractError

RENDER_CODE_VERSION = "render-1"
GREY = 0.7  # official uniform point colour
FOV_DEG = 60.0  # Open3D ViewControl default field of view
ZOOM = 0.7  # Open3D ViewControl default zoom
LIGHT_RELATIVE_Z = (2.0, 2.0, -2.0, -2.0)  # Open3D RenderOption light positions (along front)
LIGHT_DIFFUSE = 0.66
LIGHT_SPECULAR = 0.2
LIGHT_SHININESS = 100.0


class RenderError(BenchmarkError):
    """A render backend is unavailable (e.g. no OpenGL context can be created)."""


# ----------------------------------------------------------------------------------------------
# View recipes


def _rx(deg: float) -> np.ndarray:
    a = np.radians(deg)
    c, s = np.cos(a), np.sin(a)
    return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


def _ry(deg: float) -> np.ndarray:
    a = np.radians(deg)
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


@dataclass(frozen=True)
class ViewRecipe:
    """How one dataset is rendered officially (specs/methods.md §1.4)."""

    name: str
    base_x_deg: float  # rotation about x applied to the cloud first
    views_x_deg: tuple[float, ...]  # then one view per rotation about x ...
    views_y_deg: tuple[float, ...] = ()  # ... and one per rotation about y
    window: int = 1036
    point_size: float = 12.0
    class_point_size: dict[str, float] = field(default_factory=dict)
    normal_radius: float | None = None
    normal_max_nn: int = 30
    fit: str = "bbox"
    source: str = ""

    def rotations(self) -> list[np.ndarray]:
        base = _rx(self.base_x_deg)
        rots = [_rx(a) @ base for a in self.views_x_deg] + [_ry(a) @ base for a in self.views_y_deg]
        return [r.astype(np.float64) for r in rots]

    def render_kwargs(self, category: str | None = None) -> dict[str, Any]:
        """Keyword arguments of `render_views` that reproduce this recipe for one class."""
        size = self.class_point_size.get(category or "", self.point_size)
        return {
            "views": self.rotations(),
            "window": self.window,
            "point_size": float(size),
            "normal_radius": self.normal_radius,
            "normal_max_nn": self.normal_max_nn,
            "fit": self.fit,
        }


_REAL3D_X = tuple(36.0 * k for k in range(-4, 5))  # k * pi/5, k = -4..4
RECIPES: dict[str, ViewRecipe] = {
    # The paper's text: 9 rotations about X of k*pi/5; render parameters of the official Real3D run.
    "pointad": ViewRecipe("pointad", 0.0, _REAL3D_X, normal_radius=None, source="paper §4.1"),
    "real3d": ViewRecipe(
        "real3d", 180.0, _REAL3D_X, window=1036, point_size=12, normal_radius=0.8,
        normal_max_nn=30, source="multiview_real3d.py",
    ),
    "mvtec3d": ViewRecipe(
        "mvtec3d", 180.0, (-45.0, -15.0, 0.0, 15.0, 45.0), (-30.0, -15.0, 15.0, 30.0),
        window=1024, point_size=8,
        class_point_size={"bagel": 7, "cable_gland": 12, "carrot": 7, "cookie": 6, "dowel": 10,
                          "rope": 5, "peach": 7, "foam": 8, "potato": 8, "tire": 8},
        normal_radius=0.1, normal_max_nn=50, source="multiview_mvtec.py",
    ),
    "eyecandies": ViewRecipe(
        "eyecandies", 45.0, (-30.0, -15.0, 0.0, 10.0, 20.0), (-30.0, -15.0, 15.0, 30.0),
        window=1036, point_size=10, normal_radius=0.1, normal_max_nn=50, fit="inside",
        source="multiview_eyecandies.py",
    ),
}
# PointAD did not evaluate Anomaly-ShapeNet: use the paper's default recipe (a guess).
RECIPES["anomaly_shapenet"] = RECIPES["pointad"]
EYECANDIES_FIT_STEP = 0.005  # official camera pull-back step (Eyecandies units after x0.1 scaling)


def view_rotations(recipe: str = "pointad") -> list[np.ndarray]:
    """The (3,3) rotation of every view of `recipe` (base rotation included), in view order."""
    return get_recipe(recipe).rotations()


def get_recipe(name: str) -> ViewRecipe:
    if name not in RECIPES:
        raise ContractError(f"unknown view recipe {name!r}; known: {sorted(RECIPES)}")
    return RECIPES[name]


# ----------------------------------------------------------------------------------------------
# Camera


@dataclass
class Camera:
    """Pinhole camera of one view in the *rotated* frame (Open3D convention, window pixels)."""

    extrinsic: np.ndarray  # (4,4) rotated frame -> camera
    intrinsic: np.ndarray  # (3,3)
    window: int
    max_extent: float  # of the rotated cloud's axis-aligned box (scales lights, tolerances)
    box_center: np.ndarray  # (3,)


def _focal(window: int) -> float:
    return window / (2.0 * np.tan(np.radians(FOV_DEG) / 2.0))


def fit_camera(rotated: np.ndarray, window: int, fit: str = "bbox") -> Camera:
    """The Open3D default camera for `rotated` points ((N,3), already in the view's frame)."""
    lo, hi = rotated.min(0), rotated.max(0)
    center = (lo + hi) / 2.0
    ext = float((hi - lo).max())
    if ext <= 0:
        raise ContractError("render: the cloud has zero extent (all points identical)")
    tan_half = np.tan(np.radians(FOV_DEG) / 2.0)
    dist = ZOOM * ext / tan_half
    f = _focal(window)
    c = window / 2.0 - 0.5
    if fit == "inside":
        dist = _inside_distance(rotated, center, dist, f, c, window)
    elif fit != "bbox":
        raise ContractError(f"render: fit must be 'bbox' or 'inside', got {fit!r}")
    eye = center + np.array([0.0, 0.0, dist])
    rc = np.diag([1.0, -1.0, -1.0])
    extrinsic = np.eye(4)
    extrinsic[:3, :3] = rc
    extrinsic[:3, 3] = -rc @ eye
    intrinsic = np.array([[f, 0.0, c], [0.0, f, c], [0.0, 0.0, 1.0]])
    return Camera(extrinsic, intrinsic, window, ext, center)


def _inside_distance(p: np.ndarray, center: np.ndarray, d0: float, f: float, c: float,
                     window: int) -> float:
    """Official Eyecandies rule: step the camera back by 0.005 (at least once) until every point
    projects inside the window; closed form of the smallest such step count."""
    a = center[2] - p[:, 2]  # camera z = distance + a
    need = np.zeros(len(p))
    for coord in (p[:, 0] - center[0], -(p[:, 1] - center[1])):
        pos = coord > 0
        need = np.maximum(need, np.where(pos, f * coord / (window - c), f * (-coord) / c))
    d_req = float((need - a).max()) + 1e-9
    steps = max(1, int(np.ceil((d_req - d0) / EYECANDIES_FIT_STEP - 1e-9)))
    return d0 + steps * EYECANDIES_FIT_STEP


def project(points: np.ndarray, camera: Camera) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Window-pixel coordinates (u, v) and camera depth of points in the camera's frame."""
    pc = points @ camera.extrinsic[:3, :3].T + camera.extrinsic[:3, 3]
    z = pc[:, 2]
    k = camera.intrinsic
    safe = np.where(np.abs(z) > 1e-12, z, 1e-12)
    u = k[0, 0] * pc[:, 0] / safe + k[0, 2]
    v = k[1, 1] * pc[:, 1] / safe + k[1, 2]
    return u, v, z


# ----------------------------------------------------------------------------------------------
# Result
