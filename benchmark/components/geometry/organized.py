"""Organized-grid helpers: grid <-> point lists, map resizing, BTF-style square padding.

Organized samples (MVTec 3D-AD, Eyecandies) carry ``xyz_grid`` (H,W,3) with (0,0,0) in missing
cells and ``grid_index`` (N,) row-major cell of each valid point. Resizing follows
``torch.nn.functional.interpolate`` exactly (nearest: source index floor(i*in/out); bilinear:
align_corners=False), which is what the official BTF/M3DM/PatchCore codes call.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from benchmark.errors import ContractError


def grid_to_points(grid: np.ndarray, grid_index: np.ndarray) -> np.ndarray:
    """Values of the cells `grid_index` (row-major) of an (H,W,...) grid -> (N,...)."""
    h, w = grid.shape[:2]
    return grid.reshape(h * w, *grid.shape[2:])[grid_index]


def points_to_grid(
    values: np.ndarray, grid_index: np.ndarray, shape: tuple[int, int], fill: float = 0.0
) -> np.ndarray:
    """Scatters per-point values (N,...) into an (H,W,...) grid filled with `fill` elsewhere."""
    values = np.asarray(values)
    if len(values) != len(grid_index):
        raise ContractError(f"points_to_grid: {len(values)} values for {len(grid_index)} cells")
    h, w = shape
    out = np.full((h * w, *values.shape[1:]), fill, dtype=values.dtype)
    out[grid_index] = values
    return out.reshape(h, w, *values.shape[1:])


def valid_cells(xyz_grid: np.ndarray, all_nonzero: bool = False) -> np.ndarray:
    """(H,W) bool: cells holding a point. all_nonzero=True uses BTF/M3DM's stricter test (every
    coordinate != 0), the default any coordinate != 0 (the datasets' (0,0,0) convention)."""
    nz = xyz_grid != 0
    return nz.all(-1) if all_nonzero else nz.any(-1)


def _interp(x: torch.Tensor, size: tuple[int, int], mode: str) -> torch.Tensor:
    if mode == "nearest":
        return F.interpolate(x, size=size, mode="nearest")
    if mode == "bilinear":
        return F.interpolate(x, size=size, mode="bilinear", align_corners=False)
    raise ContractError(f"resize: unknown mode {mode!r} (nearest, bilinear)")


def resize_maps(
    maps: np.ndarray | torch.Tensor, size: int | tuple[int, int], mode: str = "bilinear"
) -> np.ndarray | torch.Tensor:
    """Resizes (H,W) or (B,H,W) float maps to `size` like torch ``interpolate``; same type out."""
    size = (size, size) if isinstance(size, int) else tuple(size)
    numpy_in = isinstance(maps, np.ndarray)
    t = torch.from_numpy(np.ascontiguousarray(maps)) if numpy_in else maps
    if t.ndim not in (2, 3):
        raise ContractError(f"resize_maps: expected (H,W) or (B,H,W), got {tuple(t.shape)}")
    single = t.ndim == 2
    x = t.reshape(1 if single else t.shape[0], 1, *t.shape[-2:]).float()
    out = _interp(x, size, mode)[:, 0]
    out = out[0] if single else out
    return out.numpy() if numpy_in else out


def resize_grid(grid: np.ndarray, size: int | tuple[int, int], mode: str = "nearest") -> np.ndarray:
    """Resizes a channel-last (H,W,C) grid (e.g. an organized point cloud) like BTF's
    ``resize_organized_pc`` (torch nearest by default)."""
    size = (size, size) if isinstance(size, int) else tuple(size)
    if grid.ndim != 3:
        raise ContractError(f"resize_grid: expected (H,W,C), got {grid.shape}")
    x = torch.from_numpy(np.ascontiguousarray(grid)).permute(2, 0, 1)[None]
    out = _interp(x.float() if mode == "bilinear" else x, size, mode)[0].permute(1, 2, 0)
    return out.numpy().astype(grid.dtype, copy=False)


def square_pad_widths(h: int, w: int, multiple: int = 100) -> tuple[tuple[int, int], ...]:
    """BTF's centred zero padding: side = max(ceil_multiple(H), ceil_multiple(W)); the extra
    odd row/column goes to the bottom/right."""
    side = max(math.ceil(h / multiple) * multiple, math.ceil(w / multiple) * multiple)
    top, left = (side - h) // 2, (side - w) // 2
    return (top, side - top - h), (left, side - left - w)


def square_pad(array: np.ndarray, multiple: int = 100) -> np.ndarray:
    """Zero-pads an (H,W) or (H,W,C) array centred to a square (see square_pad_widths)."""
    rows, cols = square_pad_widths(array.shape[0], array.shape[1], multiple)
    pad = (rows, cols) + ((0, 0),) * (array.ndim - 2)
    return np.pad(array, pad, mode="constant")
