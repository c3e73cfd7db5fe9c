"""Multi-view rendering of point clouds with point->pixel correspondence (PointAD / PointAD+).

Provenance: re-implemented from the description of the official PointAD rendering scripts
(zqhang/PointAD, `multi_view/multiview_{mvtec,eyecandies,real3d}.py`, `multi_view/utils.py`,
`dataset.py`, commit 7a396036) in `specs/methods.md` §1.4 and from Open3D's legacy Visualizer
defaults (read back from Open3D 0.20 and checked in the tests). No code was copied.

Camera model (Open3D legacy Visualizer defaults, shared by both backends):
- The cloud is rotated about its centroid by the view's rotation; the camera never moves in the
  rotated frame. Each view therefore gets its own camera, fitted to the axis-aligned box of the
  rotated cloud exactly as ``Visualizer.add_geometry`` does: look-at = box centre, front = +z
  (the camera looks along -z), up = +y, vertical field of view 60 deg, eye at distance
  ``0.7 * max_extent / tan(30 deg)`` in front of the look-at point. **Perspective** pinhole:
  ``f = window / (2 tan 30 deg)``, principal point ``window/2 - 0.5`` (pixel centres at integers).
- Eyecandies (``fit="inside"``): the official script then pulls the camera back in 0.005 steps
  (at least one) until every point projects inside the window; we compute that distance in closed
  form.
- Point->pixel map, as the official code: the window-pixel projection is scaled by
  ``image_size / window``, truncated to an integer and clipped to ``[0, image_size - 1]``.
- Visibility (``visibility="points"``, the official rule): a z-buffer at ``image_size`` over
  the projected point centres; in each pixel only the single nearest point is visible (ties: the
  lowest index). ``visibility="surface"`` additionally requires the point not to be hidden by
  the rendered splats (its depth <= the rendered depth at its window pixel + a tolerance); this
  removes back-surface points that leak through gaps of a sparse front surface.
- Depth: camera-space z (distance along the optical axis), 0 where no point is rendered.

Rendering: points are square splats of ``point_size`` *window* pixels (GL_POINTS), grey 0.7,
white background, Open3D's Phong lighting (two lights in front at ``centre + 2 * max_extent *
front``, two behind, diffuse 0.66, specular 0.2, shininess 100, normals flipped to face the eye),
rendered at the window resolution and resized to ``image_size`` with PIL bicubic, as official.
Backends: ``open3d`` (the legacy Visualizer offscreen, EGL; the official look) and ``torch``
(a vectorised z-buffer splat with the same Phong formula; no OpenGL needed).

Guessed / not from the official code: the default normal estimation when a recipe gives no radius
(radius 4x the median point spacing, at most 30 neighbours), the ``surface`` visibility mode and
its tolerance, the fill rule ``"nearest"``, the repeat rule of the Real3D up-sampling when one
pass is not enough, and the ``pointad``/``anomaly_shapenet`` recipes' render parameters (taken
from the official Real3D-AD run).
"""

from __future__ import annotations

import hashlib
import inspect
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from benchmark.components.render.camera import (
    GREY,
    RENDER_CODE_VERSION,
    fit_camera,
    project,
    view_rotations,
)
from benchmark.errors import ContractError


@dataclass
class MultiViewRender:
    """Renders of one cloud from V views and the point->pixel correspondence.

    images uint8 (V,H,W,3); pixel_index int64 (V,N): row-major pixel of each point, -1 where the
    point is not visible; visible bool (V,N); depth float32 (V,H,W) (camera z, 0 = background);
    projected_index int64 (V,N): the pixel every point projects to, visible or not (needed by the
    official fill rule); extrinsics (V,4,4) map the *input* points to camera coordinates,
    intrinsics (V,3,3) are in window pixels.
    """

    images: np.ndarray
    pixel_index: np.ndarray
    visible: np.ndarray
    depth: np.ndarray
    projected_index: np.ndarray
    extrinsics: np.ndarray
    intrinsics: np.ndarray
    window: int
    backend: str

    @property
    def num_views(self) -> int:
        return int(self.images.shape[0])

    @property
    def image_size(self) -> int:
        return int(self.images.shape[1])

    @property
    def num_points(self) -> int:
        return int(self.visible.shape[1])

    def effective_visibility(self, fill: str = "pointad") -> np.ndarray:
        """(V,N) visibility after filling points visible in no view (see `backproject`)."""
        vis = self.visible
        if fill in ("zero", "nearest"):
            return vis
        if fill != "pointad":
            raise ContractError(f"fill must be 'pointad', 'zero' or 'nearest', got {fill!r}")
        return vis[:, _pointad_fill_source(vis.any(0))]

    def save(self, path) -> None:
        from benchmark.cache import atomic_save_npz

        atomic_save_npz(path, **{f.name: np.asarray(getattr(self, f.name)) for f in fields(self)})

    @classmethod
    def load(cls, path) -> MultiViewRender:
        with np.load(path, allow_pickle=False) as z:
            kw = {f.name: z[f.name] for f in fields(cls)}
        kw["window"] = int(kw["window"])
        kw["backend"] = str(kw["backend"])
        return cls(**kw)


def _pointad_fill_source(seen: np.ndarray) -> np.ndarray:
    """For each point, the index whose visibility flags it uses (official `dataset.py` rule).

    A point visible in some view uses its own flags. A point visible in none takes the flags of
    the nearest point in *array index order* that is visible somewhere: the next one after it
    (wrapping to the start), replaced by the previous one only when that is strictly closer.
    """
    n = len(seen)
    src = np.arange(n)
    vis_idx = np.flatnonzero(seen)
    hidden = np.flatnonzero(~seen)
    if len(hidden) == 0 or len(vis_idx) == 0:
        return src
    pos = np.searchsorted(vis_idx, hidden, side="right")  # first visible index > i
    has_up = pos < len(vis_idx)
    up = np.where(has_up, vis_idx[np.minimum(pos, len(vis_idx) - 1)], vis_idx[0])
    dist_up = np.where(has_up, up - hidden, (n - 1 - hidden) + up)
    has_down = pos > 0
    down = vis_idx[np.maximum(pos - 1, 0)]
    use_down = has_down & ((hidden - down) < dist_up)
    src[hidden] = np.where(use_down, down, up)
    return src


# ----------------------------------------------------------------------------------------------
# Rendering


def _normals(points: np.ndarray, radius: float | None, max_nn: int) -> np.ndarray:
    """Unoriented normals as the official scripts (Open3D hybrid radius / max_nn search). With no
    radius (a guess): 4x the median nearest-neighbour spacing, capped by `max_nn`."""
    from benchmark.components.geometry.descriptors import estimate_normals
    from benchmark.components.geometry.pointops import knn

    if radius is None:
        step = max(1, len(points) // 2000)
        d, _ = knn(points[::step].astype(np.float32), points.astype(np.float32), 2)
        radius = 4.0 * float(np.median(np.asarray(d)[:, 1])) or 1e-6
    return estimate_normals(points, radius=radius, max_nn=max_nn).astype(np.float64)


def _check_points(points: Any) -> np.ndarray:
    if hasattr(points, "detach"):
        points = points.detach().cpu().numpy()
    points = np.asarray(points)
    if points.ndim != 2 or points.shape[1] != 3 or len(points) == 0:
        raise ContractError(f"render: points must be a non-empty (N,3) array, got {points.shape}")
    if not np.isfinite(points).all():
        raise ContractError("render: points contain NaN or inf")
    return points.astype(np.float64)


def _check_colors(colors: Any, n: int) -> np.ndarray:
    if colors is None:
        return np.full((n, 3), GREY)
    colors = np.asarray(colors)
    if colors.ndim == 1:
        colors = np.repeat(colors[:, None], 3, axis=1)
    if colors.shape != (n, 3):
        raise ContractError(f"render: colors must be (N,3) or (N,) with N={n}, got {colors.shape}")
    if colors.dtype == np.uint8:
        return colors.astype(np.float64) / 255.0
    return np.clip(colors.astype(np.float64), 0.0, 1.0)


def _as_views(views: Any) -> list[np.ndarray]:
    if isinstance(views, str):
        return view_rotations(views)
    out = [np.asarray(r, dtype=np.float64) for r in views]
    if not out or any(r.shape != (3, 3) for r in out):
        raise ContractError("render: views must be a recipe name or a list of (3,3) rotations")
    return out


def render_views(
    points: Any,
    views: Any = "pointad",
    image_size: int = 336,
    backend: str = "torch",
    point_size: float = 12.0,
    colors: Any = None,
    normals: Any = None,
    *,
    window: int = 1036,
    fit: str = "bbox",
    light_on: bool = True,
    background: tuple[float, float, float] = (1.0, 1.0, 1.0),
    visibility: str = "points",
    surface_tolerance: float = 0.02,
    normal_radius: float | None = None,
    normal_max_nn: int = 30,
) -> MultiViewRender:
    """Renders `points` from every view and computes the point->pixel correspondence.

    points (N,3); views: a recipe name (`RECIPES`) or a list of (3,3) rotations applied about the
    centroid; point_size in window pixels (the official window is 1036, MVTec 1024); colors (N,3)
    in [0,1] or uint8 (default grey 0.7); normals (N,3) (default: estimated like the official
    scripts with `normal_radius`/`normal_max_nn`). For the official GT renders use the GT as
    colours, ``point_size=6, light_on=False, background=(0, 0, 0)``.
    """
    pts = _check_points(points)
    n = len(pts)
    rots = _as_views(views)
    if visibility not in ("points", "surface"):
        raise ContractError(f"render: visibility must be 'points' or 'surface', got {visibility!r}")
    if backend not in ("torch", "open3d"):
        raise ContractError(f"render: backend must be 'torch' or 'open3d', got {backend!r}")
    if image_size < 1 or window < 1 or point_size <= 0:
        raise ContractError("render: image_size, window and point_size must be positive")
    cols = _check_colors(colors, n)
    if normals is None and not light_on:
        nrm = np.zeros_like(pts)  # unlit renders (GT masks) need no normals
    elif normals is None:
        nrm = _normals(pts, normal_radius, normal_max_nn)
    else:
        nrm = np.asarray(normals, dtype=np.float64)
        if nrm.shape != (n, 3):
            raise ContractError(f"render: normals must be (N,3) with N={n}, got {nrm.shape}")
    centroid = pts.mean(0)
    centred = pts - centroid
    rotated = [centred @ r.T for r in rots]
    cameras = [fit_camera(p, window, fit) for p in rotated]
    opts = dict(window=window, image_size=image_size, point_size=point_size, light_on=light_on,
                background=np.asarray(background, dtype=np.float64))
    if backend == "torch":
        from benchmark.components.render.torch_backend import render_torch

        images, depth_win = render_torch(rotated, [nrm @ r.T for r in rots], cols, cameras, **opts)
    else:
        from benchmark.components.render.open3d_backend import render_open3d

        force = fit != "bbox"
        images, depth_win, cameras = render_open3d(
            rotated, [nrm @ r.T for r in rots], cols, cameras, force_cameras=force, **opts
        )

    v_count = len(rots)
    s = image_size
    pixel = np.full((v_count, n), -1, dtype=np.int64)
    proj = np.empty((v_count, n), dtype=np.int64)
    vis = np.zeros((v_count, n), dtype=bool)
    depth = np.zeros((v_count, s, s), dtype=np.float32)
    extr = np.empty((v_count, 4, 4))
    centre_t = np.eye(4)
    centre_t[:3, 3] = -centroid
    for k in range(v_count):
        cam = cameras[k]
        u, v, z = project(rotated[k], cam)
        iu = np.clip(np.floor(u * s / window), 0, s - 1).astype(np.int64)
        iv = np.clip(np.floor(v * s / window), 0, s - 1).astype(np.int64)
        proj[k] = iv * s + iu
        vis[k] = _zbuffer_winners(proj[k], z, s * s)
        dwin = depth_win[k]
        if visibility == "surface":
            wu = np.clip(np.rint(u), 0, window - 1).astype(np.int64)
            wv = np.clip(np.rint(v), 0, window - 1).astype(np.int64)
            surf = dwin[wv, wu]
            vis[k] &= (surf > 0) & (z <= surf + surface_tolerance * cam.max_extent)
        centres = np.minimum(((np.arange(s) + 0.5) * window / s).astype(np.int64), window - 1)
        depth[k] = dwin[np.ix_(centres, centres)]
        pixel[k][vis[k]] = proj[k][vis[k]]
        rot4 = np.eye(4)
        rot4[:3, :3] = rots[k]
        extr[k] = cam.extrinsic @ rot4 @ centre_t
    return MultiViewRender(
        images=images, pixel_index=pixel, visible=vis, depth=depth, projected_index=proj,
        extrinsics=extr, intrinsics=np.stack([c.intrinsic for c in cameras]), window=window,
        backend=backend,
    )


_RENDER_SIGNATURE = inspect.signature(render_views)


def _zbuffer_winners(pix: np.ndarray, depth: np.ndarray, size: int) -> np.ndarray:
    """True for the single nearest point of each pixel (ties: lowest index), as official."""
    import torch

    d = torch.from_numpy(np.ascontiguousarray(depth, dtype=np.float32))
    # positive float32 bit patterns sort like the values; behind-camera points never win
    bits = torch.where(d > 0, d, torch.full_like(d, float("inf"))).view(torch.int32).to(torch.int64)
    idx = torch.arange(len(d), dtype=torch.int64)
    key = (bits << 31) | idx
    p = torch.from_numpy(pix)
    best = torch.full((size,), torch.iinfo(torch.int64).max, dtype=torch.int64)
    best.scatter_reduce_(0, p, key, reduce="amin")
    return ((best[p] == key) & (d > 0)).numpy()


# ----------------------------------------------------------------------------------------------
# Masks and back-projection


def point_mask_to_view_masks(render: MultiViewRender, point_mask: Any) -> np.ndarray:
    """uint8 (V,H,W): 1 exactly at the pixels of anomalous points that are visible in the view."""
    mask = np.asarray(point_mask).reshape(-1) > 0
    if len(mask) != render.num_points:
        raise ContractError(
            f"point_mask has {len(mask)} entries, the render has {render.num_points} points"
        )
    v, s = render.num_views, render.image_size
    out = np.zeros((v, s * s), dtype=np.uint8)
    for k in range(v):
        sel = render.visible[k] & mask
        out[k, render.pixel_index[k, sel]] = 1
    return out.reshape(v, s, s)


def rendered_gt_masks(points: Any, point_mask: Any, views: Any = "pointad",
                      image_size: int = 336, backend: str = "torch", window: int = 1036,
                      point_size: float = 6.0, cached: bool = True) -> np.ndarray:
    """uint8 (V,H,W) per-view GT masks rendered the official way: the cloud coloured by its GT
    (1 white, 0 black), black background, no lighting, point size 6 in a 1036 window, bicubic
    resize, threshold at 0.5. The camera is the default fit (the official Eyecandies GT renders do
    not get the image's pull-back either). Unlike `point_mask_to_view_masks`, splats cover the
    gaps between anomalous points."""
    mask = np.asarray(point_mask).reshape(-1) > 0
    pts = _check_points(points)
    if len(mask) != len(pts):
        raise ContractError(f"point_mask has {len(mask)} entries, the cloud has {len(pts)} points")
    fn = cached_render if cached else render_views
    r = fn(pts, views=views, image_size=image_size, backend=backend, window=window,
           point_size=point_size, colors=mask.astype(np.float64), light_on=False,
           background=(0.0, 0.0, 0.0), normals=np.zeros_like(pts))
    return (r.images[..., 0] > 127).astype(np.uint8)


def backproject(render: MultiViewRender, view_maps: Any, fill: str = "pointad",
                points: Any = None) -> Any:
    """Per-point values from per-view maps: mean over the views where the point is visible.

    view_maps (V,h,w) or (V,C,h,w), numpy or torch (differentiable: a gather) -> (N,) or (N,C)
    of the same kind. Maps at the render size are read at each point's pixel (the official code
    first up-samples its 24x24 patch maps to 336 bilinearly); maps of another size (e.g. patch
    features) are read at the map cell containing that pixel's centre. Points visible in no view:
    - ``fill="pointad"`` (official `dataset.py`): the point borrows the visibility flags of its
      nearest visible neighbour in array index order and reads the maps at its *own* projected
      pixel in those views;
    - ``"zero"``: they get 0;
    - ``"nearest"``: they copy the value of the spatially nearest point visible somewhere (needs
      `points`).
    """
    is_torch = hasattr(view_maps, "detach")
    if is_torch:
        import torch

        maps = view_maps
    else:
        maps = np.asarray(view_maps, dtype=np.float64)
    shape = tuple(maps.shape)
    v, s = render.num_views, render.image_size
    if len(shape) not in (3, 4) or shape[0] != v or min(shape[-2:]) < 1:
        raise ContractError(
            f"backproject: view_maps must be (V,h,w) or (V,C,h,w) with V={v}; got {shape}"
        )
    vis = render.effective_visibility(fill)
    pix = render.projected_index
    h, w = shape[-2:]
    if (h, w) != (s, s):
        row, col = np.divmod(pix, s)
        pix = ((row * 2 + 1) * h // (2 * s)) * w + (col * 2 + 1) * w // (2 * s)
    count = vis.sum(0)
    if len(shape) == 3:
        flat = maps.reshape(v, h * w)
    else:
        flat = maps.reshape(v, shape[1], h * w)
    weight = vis.astype(np.float64) / np.maximum(count, 1)[None]
    if is_torch:
        idx = torch.from_numpy(pix).to(maps.device)
        wt = torch.from_numpy(weight).to(device=maps.device, dtype=maps.dtype)
        if len(shape) == 3:
            vals = torch.gather(flat, 1, idx)  # (V,N)
            out = (vals * wt).sum(0)
        else:
            vals = torch.gather(flat, 2, idx[:, None, :].expand(-1, shape[1], -1))  # (V,C,N)
            out = (vals * wt[:, None, :]).sum(0).T
    else:
        if len(shape) == 3:
            vals = np.take_along_axis(flat, pix, axis=1)
            out = (vals * weight).sum(0)
        else:
            vals = np.take_along_axis(flat, pix[:, None, :], axis=2)
            out = (vals * weight[:, None, :]).sum(0).T
    if fill == "nearest":
        seen = count > 0
        if not seen.all() and seen.any():
            if points is None:
                raise ContractError("backproject: fill='nearest' needs `points`")
            from benchmark.components.geometry.pointops import knn

            pts = np.asarray(points, dtype=np.float32)
            _, nn = knn(pts[~seen], pts[seen], 1)
            src = np.flatnonzero(seen)[np.asarray(nn).reshape(-1)]
            dst = np.flatnonzero(~seen)
            if is_torch:
                out = out.clone()
                out[torch.from_numpy(dst)] = out[torch.from_numpy(src)]
            else:
                out[dst] = out[src]
    return out


# ----------------------------------------------------------------------------------------------
# Real3D-AD resampling


def resample_to_count(points: Any, labels: Any = None, target: int = 336 * 336,
                      seed: int = 0, device: str = "cpu") -> tuple[np.ndarray, np.ndarray | None]:
    """Official Real3D-AD resampling to exactly `target` points (default 336*336 = 112,896).

    More points: farthest point sampling from a random start (seeded). Fewer: for every point,
    candidates at 0.25/0.5/0.75 of the segment to each of its 3 nearest neighbours (a candidate
    takes the point's label up to the middle, the neighbour's beyond), and a random subset of the
    needed size is appended. When one pass cannot supply enough candidates (clouds under
    target/10 points) the pass is repeated on the enlarged cloud (a guess: the official script
    would then produce fewer points). Returns (points float32 (target,3), labels or None).
    FPS costs O(N * target): minutes per large Real3D-AD cloud on a CPU (the official script runs
    it on CUDA); pass ``device="cuda"`` when a GPU is available, and cache the result.
    """
    from benchmark.components.geometry.pointops import farthest_point_sample, knn

    pts = _check_points(points)
    lab = None if labels is None else np.asarray(labels).reshape(-1)
    if lab is not None and len(lab) != len(pts):
        raise ContractError(f"resample: {len(lab)} labels for {len(pts)} points")
    rng = np.random.default_rng(seed)
    if len(pts) >= target:
        start = int(rng.integers(len(pts)))
        if device == "cpu":
            idx = farthest_point_sample(pts.astype(np.float32), target, start)
        else:
            import torch

            x = torch.as_tensor(pts, dtype=torch.float32, device=device)
            idx = farthest_point_sample(x, target, start).cpu().numpy()
        return pts[idx].astype(np.float32), (None if lab is None else lab[idx])
    while len(pts) < target:
        need = target - len(pts)
        _, nn = knn(pts.astype(np.float32), pts.astype(np.float32), 4)
        nbr = np.asarray(nn)[:, 1:]  # (N,3), self excluded
        ratios = np.array([0.25, 0.5, 0.75])
        a = pts[:, None, None, :]
        b = pts[nbr][:, :, None, :]
        cand = (a * (1 - ratios[None, None, :, None]) + b * ratios[None, None, :, None])
        cand = cand.reshape(-1, 3)
        if lab is not None:
            own = np.broadcast_to(lab[:, None, None], (len(pts), 3, 3))
            other = np.broadcast_to(lab[nbr][:, :, None], (len(pts), 3, 3))
            cand_lab = np.where(ratios[None, None, :] <= 0.5, own, other).reshape(-1)
        if len(cand) > need:
            pick = rng.choice(len(cand), size=need, replace=False)
            cand = cand[pick]
            if lab is not None:
                cand_lab = cand_lab[pick]
        pts = np.vstack([pts, cand])
        if lab is not None:
            lab = np.concatenate([lab, cand_lab])
    return pts.astype(np.float32), lab


# ----------------------------------------------------------------------------------------------
# Cache


def _digest(a: Any) -> str | None:
    if a is None:
        return None
    a = np.ascontiguousarray(np.asarray(a))
    h = hashlib.sha256()
    h.update(str((a.dtype.str, a.shape)).encode())
    h.update(a.tobytes())
    return h.hexdigest()[:24]


def render_recipe(points: Any, backend: str = "torch", **params: Any) -> dict[str, Any]:
    """The cache recipe of a render: points digest, every parameter of `render_views` (defaults
    included), backend, code version (and Open3D's version for that backend)."""
    bound = _RENDER_SIGNATURE.bind(points, backend=backend, **params)
    bound.apply_defaults()
    args = dict(bound.arguments)
    for name in ("points", "backend"):
        args.pop(name)
    recipe = {
        "kind": "multiview_render",
        "code": RENDER_CODE_VERSION,
        "backend": backend,
        "points": _digest(np.asarray(points, dtype=np.float64)),
        "colors": _digest(args.pop("colors")),
        "normals": _digest(args.pop("normals")),
        "views": [np.round(r, 12).tolist() for r in _as_views(args.pop("views"))],
        "params": {k: (list(v) if isinstance(v, tuple) else v) for k, v in sorted(args.items())},
    }
    if backend == "open3d":
        import open3d as o3d

        recipe["open3d"] = o3d.__version__
    return recipe


def cached_render(points: Any, backend: str = "torch", **params: Any) -> MultiViewRender:
    """`render_views` through the recipe-keyed cache (``<cache>/render/<hash>/render.npz``)."""
    from benchmark.cache import cached_dir

    recipe = render_recipe(points, backend=backend, **params)

    def build(tmp):
        render_views(points, backend=backend, **params).save(tmp / "render.npz")

    folder = cached_dir("render", recipe, build)
    return MultiViewRender.load(folder / "render.npz")


def cached_resample(points: Any, labels: Any = None, target: int = 336 * 336, seed: int = 0,
                    device: str = "cpu") -> tuple[np.ndarray, np.ndarray | None]:
    """`resample_to_count` through the recipe-keyed cache (``<cache>/resample/<hash>/``)."""
    from benchmark.cache import atomic_save_npz, cached_dir

    recipe = {"kind": "resample_to_count", "code": RENDER_CODE_VERSION, "target": target,
              "seed": seed, "points": _digest(np.asarray(points, dtype=np.float64)),
              "labels": _digest(labels)}

    def build(tmp):
        pts, lab = resample_to_count(points, labels, target=target, seed=seed, device=device)
        atomic_save_npz(tmp / "resampled.npz", points=pts,
                        **({} if lab is None else {"labels": lab}))

    with np.load(cached_dir("resample", recipe, build) / "resampled.npz") as z:
        return z["points"], (z["labels"] if "labels" in z.files else None)
