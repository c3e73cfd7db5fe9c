"""Torch backend of the renderer: vectorised square-splat z-buffer, Open3D's Phong shading.

Reproduces what the legacy Open3D Visualizer draws for a point cloud (GL_POINTS of an integer
size in window pixels, depth-tested, Phong-lit per point) without OpenGL:
1. each point's splat covers the ``k x k`` window pixels whose centres fall inside the square of
   side ``k`` around its projection; its top-left pixel is its *anchor*;
2. a z-buffer over anchors (``scatter_reduce`` amin of a packed depth|index key) keeps the
   nearest point per anchor: points sharing an anchor share the whole footprint;
3. a separable ``k x k`` min-pool (max-pool of -depth with indices) over anchors gives each pixel
   its nearest covering splat;
4. per-point Phong colours are gathered, quantised to 8 bits and resized to the output size with
   PIL bicubic, as the official pipeline does with Open3D's screen capture.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from benchmark.components.render import camera as R


def phong_colors(points: np.ndarray, normals: np.ndarray, colors: np.ndarray, cam: R.Camera,
                 light_on: bool) -> np.ndarray:
    """Per-point RGB in [0,1] with Open3D's legacy Phong shader (4 lights, ambient 0)."""
    if not light_on:
        return colors
    rc, t = cam.extrinsic[:3, :3], cam.extrinsic[:3, 3]
    eye = -rc.T @ t
    e = eye[None] - points
    e /= np.linalg.norm(e, axis=1, keepdims=True) + 1e-12
    n = normals / (np.linalg.norm(normals, axis=1, keepdims=True) + 1e-12)
    n = np.where((n * e).sum(1, keepdims=True) < 0, -n, n)  # the shader flips n to face the eye
    front = np.array([0.0, 0.0, 1.0])
    out = np.zeros_like(colors)
    for rel in R.LIGHT_RELATIVE_Z:
        light = cam.box_center + cam.max_extent * rel * front
        l_dir = light[None] - points
        l_dir /= np.linalg.norm(l_dir, axis=1, keepdims=True) + 1e-12
        nl = (n * l_dir).sum(1, keepdims=True)
        r = 2.0 * nl * n - l_dir
        cos_t = np.clip(nl, 0.0, 1.0)
        cos_a = np.clip((e * r).sum(1, keepdims=True), 0.0, 1.0)
        out += colors * R.LIGHT_DIFFUSE * cos_t + R.LIGHT_SPECULAR * cos_a**R.LIGHT_SHININESS
    return out


def splat(u: np.ndarray, v: np.ndarray, z: np.ndarray, window: int,
          point_size: float) -> tuple[np.ndarray, np.ndarray]:
    """Nearest covering point per window pixel: (ids int64 (W,W), -1 = empty; depth (W,W))."""
    k = max(1, int(round(point_size)))
    pid = np.full((window, window), -1, dtype=np.int64)
    depth = np.zeros((window, window), dtype=np.float32)
    # anchor = top-left covered pixel; padded by k-1 so that partly visible splats count
    ax = np.ceil(u - k / 2.0).astype(np.int64) + (k - 1)
    ay = np.ceil(v - k / 2.0).astype(np.int64) + (k - 1)
    wp = window + k - 1
    ok = (ax >= 0) & (ax < wp) & (ay >= 0) & (ay < wp) & (z > 0)
    if not ok.any():
        return pid, depth
    ax, ay = ax[ok], ay[ok]
    # work on the object's bounding box only: pixels [p0, p1] need anchors [p0, p1 + k - 1]
    px0, px1 = max(0, int(ax.min()) - k + 1), min(window - 1, int(ax.max()))
    py0, py1 = max(0, int(ay.min()) - k + 1), min(window - 1, int(ay.max()))
    gw, gh = px1 - px0 + k, py1 - py0 + k
    ids = torch.from_numpy(np.flatnonzero(ok))
    d = torch.from_numpy(z[ok].astype(np.float32))
    key = (d.view(torch.int32).to(torch.int64) << 31) | ids  # depth first, then lowest index
    cell = torch.from_numpy((ay - py0) * gw + (ax - px0))
    big = torch.iinfo(torch.int64).max
    best = torch.full((gh * gw,), big, dtype=torch.int64)
    best.scatter_reduce_(0, cell, key, reduce="amin")
    filled = best != big
    neg_depth = torch.full((gh * gw,), float("-inf"))
    neg_depth[filled] = -((best[filled] >> 31).to(torch.int32).view(torch.float32))
    grid = neg_depth.view(1, 1, gh, gw)
    row, i1 = F.max_pool2d(grid, (1, k), stride=1, return_indices=True)  # separable min-pool
    col, i2 = F.max_pool2d(row, (k, 1), stride=1, return_indices=True)
    src = i1.reshape(-1)[i2.reshape(-1)]
    hit = torch.isfinite(col.reshape(-1))
    win = best[src[hit]] & ((1 << 31) - 1)
    h, w = py1 - py0 + 1, px1 - px0 + 1
    local_id = np.full(h * w, -1, dtype=np.int64)
    local_id[hit.numpy()] = win.numpy()
    pid[py0:py1 + 1, px0:px1 + 1] = local_id.reshape(h, w)
    local_d = np.where(hit.numpy(), -col.reshape(-1).numpy(), 0.0)
    depth[py0:py1 + 1, px0:px1 + 1] = local_d.reshape(h, w)
    return pid, depth


def render_torch(rotated, normals, colors, cameras, *, window, image_size, point_size, light_on,
                 background):
    images, depths = [], []
    bg = np.clip(np.round(background * 255.0), 0, 255).astype(np.uint8)
    for pts, nrm, cam in zip(rotated, normals, cameras):
        u, v, z = R.project(pts, cam)
        pid, depth = splat(u, v, z, window, point_size)
        rgb = phong_colors(pts, nrm, colors, cam, light_on)
        rgb8 = np.clip(np.round(rgb * 255.0), 0, 255).astype(np.uint8)
        img = np.empty((window, window, 3), dtype=np.uint8)
        img[:] = bg
        hit = pid >= 0
        img[hit] = rgb8[pid[hit]]
        if image_size != window:
            img = np.asarray(Image.fromarray(img).resize((image_size, image_size),
                                                         Image.Resampling.BICUBIC))
        images.append(img)
        depths.append(depth)
    return np.stack(images), depths
