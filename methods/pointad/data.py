"""From a `Sample` to what PointAD consumes: the cloud it renders, its renders, GT view masks.

Provenance: the official PointAD preprocessing (specs/methods.md §1.4): organized clouds (MVTec
3D-AD, Eyecandies) are resized to 336x336 with nearest interpolation and their non-zero cells
kept (the Eyecandies adapter already reorders the axes to [x, z, y] and scales them by
[0.1, -0.1, 0.1] as the official preprocessing does); unorganized clouds
(Real3D-AD) are resampled to exactly 336*336 points (FPS down / segment up-sampling, see
benchmark.components.render.multiview.resample_to_count). Renders follow the dataset's view recipe
(render.camera.RECIPES); the per-view GT masks are, as official, a second render of the cloud
coloured by its point GT (point size 6, no lighting, black background) thresholded at 0.5.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from benchmark.cache import cached_dir
from benchmark.components.geometry.organized import points_to_grid, resize_grid, valid_cells
from benchmark.components.render import camera
from benchmark.components.render import multiview as rd
from benchmark.errors import DatasetError
from benchmark.sample import Sample

GT_POINT_SIZE = 6.0  # official GT render


@dataclass
class RenderSettings:
    image_size: int
    grid_size: int | None = 336  # organized clouds: resize to this grid (None: keep native)
    num_points: int | None = 336 * 336  # unorganized clouds: resample to this count (None: keep)
    recipe: str = "auto"  # a render.camera recipe, or "auto" = the sample's dataset
    backend: str = "torch"
    max_views: int | None = None  # evenly spaced subset of the recipe's views (tests)
    window: int | None = None  # render window override; point sizes scale with it (tests)
    gt_masks: str = "render"  # "render" (official GT render) or "points" (visible GT points)
    seed: int = 0


@dataclass
class Cloud:
    """One rendered cloud and how to map its values back to the sample."""

    sample_id: str
    category: str
    label: int
    points: np.ndarray  # (M,3) float32, the rendered cloud (after the dataset transform)
    render: rd.MultiViewRender
    point_mask: np.ndarray | None = None  # (M,) uint8
    view_masks: np.ndarray | None = None  # (V,H,W) uint8
    grid_hw: tuple[int, int] | None = None  # organized: the (resized) grid
    cells: np.ndarray | None = None  # organized: grid cell of each rendered point (M,)
    native_cells: np.ndarray | None = None  # organized: grid cell of each sample point (N,)
    resampled: bool = False  # unorganized: rendered points differ from sample.points

    @property
    def view_labels(self) -> np.ndarray:
        if self.view_masks is None:
            return np.zeros(self.render.num_views, dtype=np.int64)
        return self.view_masks.reshape(self.render.num_views, -1).any(1).astype(np.int64)


def recipe_name(sample: Sample, settings: RenderSettings) -> str:
    if settings.recipe != "auto":
        return settings.recipe
    return sample.dataset if sample.dataset in camera.RECIPES else "pointad"


def _native_to_grid(grid_index: np.ndarray, native_hw: tuple[int, int], size: int) -> np.ndarray:
    h, w = native_hw
    r, c = grid_index // w, grid_index % w
    return np.minimum((r * size) // h, size - 1) * size + np.minimum((c * size) // w, size - 1)


def _resample(points: np.ndarray, mask: np.ndarray | None, target: int,
              seed: int) -> tuple[np.ndarray, np.ndarray | None]:
    """render.multiview.resample_to_count through the cache (FPS of large clouds is slow)."""
    recipe = {"kind": "pointad_resample", "points": rd._digest(points), "mask": rd._digest(mask),
              "target": target, "seed": seed, "code": camera.RENDER_CODE_VERSION}

    def build(tmp):
        pts, lab = rd.resample_to_count(points, mask, target, seed)
        np.savez(tmp / "resampled.npz", points=pts,
                 mask=np.zeros(0, np.uint8) if lab is None else lab.astype(np.uint8))

    with np.load(cached_dir("pointad_resample", recipe, build) / "resampled.npz") as z:
        pts, lab = z["points"], z["mask"]
    return pts, (lab if mask is not None else None)


def cloud_points(sample: Sample, settings: RenderSettings,
                 with_gt: bool) -> tuple[np.ndarray, np.ndarray | None, dict]:
    """The points PointAD renders for `sample`, their GT (when asked) and the mapping back."""
    mask = None
    if with_gt:
        if sample.point_mask is None:
            if sample.label == 1:
                raise DatasetError(
                    f"sample {sample.id!r}: PointAD training needs per-point GT (point_mask)"
                )
            mask = np.zeros(len(sample.points), np.uint8)
        else:
            mask = sample.point_mask
    extra: dict = {}
    if sample.organized and settings.grid_size:
        size = settings.grid_size
        h, w = sample.grid_shape
        grid = resize_grid(sample.xyz_grid, size, "nearest")
        cells = np.flatnonzero(valid_cells(grid).reshape(-1))
        if len(cells) == 0:
            raise DatasetError(f"sample {sample.id!r}: no valid point left at grid {size}x{size}")
        pts = grid.reshape(-1, 3)[cells].astype(np.float32)
        if mask is not None:
            mgrid = points_to_grid(mask.astype(np.float32), sample.grid_index, (h, w))
            mgrid = resize_grid(mgrid[..., None], size, "nearest")[..., 0]
            mask = (mgrid.reshape(-1)[cells] > 0.5).astype(np.uint8)
        extra = {"grid_hw": (size, size), "cells": cells,
                 "native_cells": _native_to_grid(sample.grid_index, (h, w), size)}
    elif sample.organized:
        h, w = sample.grid_shape
        pts = sample.points
        extra = {"grid_hw": (h, w), "cells": sample.grid_index, "native_cells": sample.grid_index}
    else:
        pts = sample.points
        if settings.num_points and len(pts) != settings.num_points:
            pts, mask = _resample(pts, mask, settings.num_points, settings.seed)
            extra = {"resampled": True}
    return np.ascontiguousarray(pts, dtype=np.float32), mask, extra


def _views(recipe: camera.ViewRecipe, max_views: int | None) -> list[np.ndarray]:
    rots = recipe.rotations()
    if max_views and max_views < len(rots):
        keep = np.unique(np.linspace(0, len(rots) - 1, max_views).round().astype(int))
        rots = [rots[i] for i in keep]
    return rots


def prepare_cloud(sample: Sample, settings: RenderSettings, with_gt: bool) -> Cloud:
    """Renders `sample` (cached by recipe) and, with_gt, its per-view GT masks."""
    pts, mask, extra = cloud_points(sample, settings, with_gt)
    recipe = camera.get_recipe(recipe_name(sample, settings))
    kw = recipe.render_kwargs(sample.category)
    kw["views"] = _views(recipe, settings.max_views)
    if settings.window:
        kw["point_size"] = kw["point_size"] * settings.window / kw["window"]
        kw["window"] = settings.window
    render = rd.cached_render(pts, backend=settings.backend, image_size=settings.image_size, **kw)
    view_masks = None
    if mask is not None:
        if not mask.any():
            view_masks = np.zeros(render.images.shape[:3], np.uint8)
        elif settings.gt_masks == "points":
            view_masks = rd.point_mask_to_view_masks(render, mask)
        else:
            gt_kw = dict(kw, point_size=GT_POINT_SIZE * kw["window"] / recipe.window)
            colors = np.repeat(mask.astype(np.float32)[:, None], 3, axis=1)
            gt = rd.cached_render(pts, backend=settings.backend, image_size=settings.image_size,
                                  colors=colors, light_on=False, background=(0.0, 0.0, 0.0),
                                  **gt_kw)
            view_masks = (gt.images[..., 0] > 127).astype(np.uint8)
    return Cloud(sample.id, sample.category, int(sample.label), pts, render, mask, view_masks,
                 **extra)
