"""Open3D backend of the renderer: the official look (legacy Visualizer, offscreen).

As the official PointAD scripts: one cloud per view (already rotated), default view control
(fitted to the cloud's box), white background, ``light_on``, ``mesh_show_back_face``, point size
in window pixels, ``capture_screen_float_buffer`` -> x255 -> uint8 (truncation) -> PIL bicubic
resize. The camera is read back from the view control (``convert_to_pinhole_camera_parameters``)
and returned, so the caller projects with exactly the parameters Open3D rendered with; the depth
buffer (``capture_depth_float_buffer``, camera z, 0 = background) is returned as well.
Headless machines: Open3D 0.20 falls back to EGL offscreen rendering (Mesa llvmpipe) by itself.
"""

from __future__ import annotations

import os
import tempfile

import numpy as np
from PIL import Image

from benchmark.components.render import camera as R


def _open3d():
    try:
        import open3d as o3d
    except ImportError as err:  # e.g. libusb-1.0 missing on the machine
        raise R.RenderError(f"open3d backend: cannot import open3d ({err})") from err
    return o3d


def _private_runtime_dir() -> None:
    """GLFW complains on stderr when XDG_RUNTIME_DIR is unset (headless machines, CI); give it a
    private 0700 folder so offscreen rendering stays quiet."""
    if not os.environ.get("XDG_RUNTIME_DIR"):
        os.environ["XDG_RUNTIME_DIR"] = tempfile.mkdtemp(prefix="benchmark-xdg-")


def _visualizer(window: int):
    o3d = _open3d()
    _private_runtime_dir()
    vis = o3d.visualization.Visualizer()
    level = o3d.utility.get_verbosity_level()
    o3d.utility.set_verbosity_level(o3d.utility.VerbosityLevel.Error)  # quiet EGL fallback notes
    try:
        ok = vis.create_window(width=window, height=window, visible=False)
    finally:
        o3d.utility.set_verbosity_level(level)
    if not ok:
        raise R.RenderError(
            "open3d backend: Visualizer.create_window failed (no display and no EGL offscreen "
            "context; Open3D needs libegl1, libegl-mesa0 and libgl1-mesa-dri)"
        )
    return vis


def render_open3d(rotated, normals, colors, cameras, *, window, image_size, point_size, light_on,
                  background, force_cameras=False):
    o3d = _open3d()
    vis = _visualizer(window)
    images, depths, read_back = [], [], []
    try:
        for pts, nrm, cam in zip(rotated, normals, cameras):
            pc = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(pts))
            pc.colors = o3d.utility.Vector3dVector(colors)
            if light_on:
                pc.normals = o3d.utility.Vector3dVector(nrm)
            vis.clear_geometries()
            vis.add_geometry(pc)
            vis.reset_view_point(True)  # refit the view control to this cloud only
            opt = vis.get_render_option()
            opt.background_color = np.asarray(background, dtype=np.float64)
            opt.light_on = bool(light_on)
            opt.point_size = float(point_size)
            opt.mesh_show_back_face = True
            ctl = vis.get_view_control()
            if force_cameras:  # e.g. the Eyecandies pull-back, set like the official script
                params = ctl.convert_to_pinhole_camera_parameters()
                params.extrinsic = cam.extrinsic
                ctl.convert_from_pinhole_camera_parameters(params, allow_arbitrary=True)
            params = ctl.convert_to_pinhole_camera_parameters()
            read_back.append(R.Camera(np.asarray(params.extrinsic).copy(),
                                      np.asarray(params.intrinsic.intrinsic_matrix).copy(),
                                      window, cam.max_extent, cam.box_center))
            img = np.asarray(vis.capture_screen_float_buffer(do_render=True)) * 255
            img = np.clip(img, 0, 255).astype(np.uint8)
            if image_size != window:
                img = np.asarray(Image.fromarray(img).resize((image_size, image_size),
                                                             Image.Resampling.BICUBIC))
            images.append(img)
            depths.append(np.asarray(vis.capture_depth_float_buffer(do_render=True)).copy())
    finally:
        vis.destroy_window()
    return np.stack(images), depths, read_back
