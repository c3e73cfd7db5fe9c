"""Gaussian smoothing of anomaly maps, in the two flavours the official codes use.

- `gaussian_blur`: float maps, ``scipy.ndimage.gaussian_filter(sigma=4)`` (official PatchCore's
  ``RescaleSegmentor``; also PointAD), reflect borders, truncate 4 sigma.
- `btf_blur`: BTF/M3DM's ``KNNGaussianBlur(4)``: the map is divided by its maximum, converted to an
  8-bit image the way torchvision's ``ToPILImage`` does it (x*255 truncated to uint8: the
  quantisation is part of the method), blurred by ``PIL.ImageFilter.GaussianBlur(radius=4)``,
  divided by 255 and multiplied by the maximum again.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage

from benchmark.errors import ContractError


def _to_numpy(maps) -> tuple[np.ndarray, bool]:
    if isinstance(maps, torch.Tensor):
        return maps.detach().cpu().numpy(), True
    return np.asarray(maps), False


def _per_map(maps, fn):
    arr, torch_in = _to_numpy(maps)
    if arr.ndim not in (2, 3):
        raise ContractError(f"blur: expected (H,W) or (B,H,W) maps, got shape {arr.shape}")
    out = fn(arr) if arr.ndim == 2 else np.stack([fn(m) for m in arr])
    return torch.from_numpy(out) if torch_in else out


def gaussian_blur(maps, sigma: float = 4.0):
    """Float Gaussian filter of (H,W) or (B,H,W) maps (each map separately); float32 out."""
    def one(m: np.ndarray) -> np.ndarray:
        return ndimage.gaussian_filter(m.astype(np.float32), sigma=sigma).astype(np.float32)

    return _per_map(maps, one)


def btf_blur(maps, radius: int = 4):
    """BTF's 8-bit PIL blur of (H,W) or (B,H,W) non-negative maps; float32 out."""
    from PIL import Image, ImageFilter

    kernel = ImageFilter.GaussianBlur(radius=radius)

    def one(m: np.ndarray) -> np.ndarray:
        m = m.astype(np.float32)
        top = np.float32(m.max())
        if not top > 0:  # all-zero map: nothing to blur (the original would divide by 0)
            return np.zeros_like(m)
        q = ((m / top) * np.float32(255)).astype(np.uint8)
        img = Image.fromarray(q, mode="L").filter(kernel)
        return (np.asarray(img, dtype=np.float32) / np.float32(255)) * top

    return _per_map(maps, one)
