"""Eyecandies conversion: a hand-made depth PNG with known geometry, and the real CandyCane
samples of ../shared/data (skipped when absent); MVTec 3D-AD tire GT/RGB through the readers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from benchmark.components.pointcloud_io import read_mask_png, read_rgb_png, write_png
from benchmark.errors import DatasetError
from benchmark.registry import DATASETS
from datasets.eyecandies import FOCAL_LENGTH, convert_depth, depth_to_points

# the camera pose of the real CandyCane samples (rotation 45 deg about x)
C45 = np.sqrt(0.5)
POSE = np.array(
    [
        [1, 0, 0, 0],
        [0, C45, -C45, -2.1213203435596424],
        [0, C45, C45, 2.221320343559643],
        [0, 0, 0, 1],
    ]
)


def test_depth_to_points_pinhole_and_pose():
    depth = np.full((4, 6), 2.0, dtype=np.float32)
    pts = depth_to_points(depth, np.eye(4), focal=2.0)
    # pixel (row 1, col 5): x = (5 - 3) * 2 / 2, y = (1 - 2) * 2 / 2, z = 2
    np.testing.assert_allclose(pts[1 * 6 + 5], [2.0, -1.0, 2.0])
    pose = np.eye(4)
    pose[:3, 3] = [1.0, 2.0, 3.0]  # world-to-camera translation (M3DM applies its inverse)
    np.testing.assert_allclose(depth_to_points(depth, pose, 2.0), pts - [1.0, 2.0, 3.0])


def _hand_made_scene(size: int = 64):
    """A table plane Y = 2.15 seen by the CandyCane camera, with a thin plate hovering 0.1 above
    it (|X| < 0.15, |Z - z0| < 0.15): per-pixel depth by exact ray intersection."""
    focal = FOCAL_LENGTH * size / 512  # same field of view as the 512x512 release images
    rot, t = POSE[:3, :3], POSE[:3, 3]
    centre = -rot.T @ t
    v, u = np.mgrid[0:size, 0:size].astype(np.float64)
    rays_c = np.stack([(u - size / 2) / focal, (v - size / 2) / focal, np.ones_like(u)], -1)
    rays_w = rays_c @ rot  # R^T applied to each camera ray
    table_y, plate_y = 2.15, 2.05
    s_table = (table_y - centre[1]) / rays_w[..., 1]
    z0 = (centre + s_table[size // 2, size // 2] * rays_w[size // 2, size // 2])[2]
    s_plate = (plate_y - centre[1]) / rays_w[..., 1]
    hit = centre + s_plate[..., None] * rays_w
    on_plate = (np.abs(hit[..., 0]) < 0.15) & (np.abs(hit[..., 2] - z0) < 0.15)
    s = np.where(on_plate, s_plate, s_table)  # camera depth = s, since camera rays have z = 1
    world = centre + s[..., None] * rays_w
    return s, on_plate, world, focal


def test_hand_made_depth_png_converts_to_known_geometry(tmp_path):
    depth, on_plate, world, focal = _hand_made_scene()
    lo, hi = float(depth.min()), float(depth.max())
    png = np.round((depth - lo) / (hi - lo) * 65535).astype(np.uint16)
    write_png(tmp_path / "d.png", png)
    (tmp_path / "info.yaml").write_text(yaml.safe_dump({"normalization": {"min": lo, "max": hi}}))
    np.savetxt(tmp_path / "pose.txt", POSE)
    grid = convert_depth(tmp_path / "d.png", tmp_path / "info.yaml", tmp_path / "pose.txt", focal)
    valid = np.any(grid != 0, axis=2)
    np.testing.assert_array_equal(valid, on_plate)  # the table is background, the plate is not
    expected = world[..., [0, 2, 1]] * np.array([0.1, -0.1, 0.1])
    quant = 0.1 * (hi - lo) / 65535 * 2  # depth quantisation, scaled
    np.testing.assert_allclose(grid[on_plate], expected[on_plate], atol=quant)
    np.testing.assert_allclose(grid[on_plate][:, 2], 0.1 * 2.05, atol=quant)


def test_bad_pose_and_info_files(tmp_path):
    write_png(tmp_path / "d.png", np.zeros((4, 4), np.uint16))
    (tmp_path / "info.yaml").write_text("normalization: {min: 1.0}\n")
    np.savetxt(tmp_path / "pose.txt", POSE)
    with pytest.raises(DatasetError, match="info.yaml"):
        convert_depth(tmp_path / "d.png", tmp_path / "info.yaml", tmp_path / "pose.txt")
    (tmp_path / "info.yaml").write_text("normalization: {min: 1.0, max: 2.0}\n")
    np.savetxt(tmp_path / "pose.txt", POSE[:3])
    with pytest.raises(DatasetError, match="pose.txt.*4x4"):
        convert_depth(tmp_path / "d.png", tmp_path / "info.yaml", tmp_path / "pose.txt")


# ------------------------------------------------------------------------------------------------
# real files


def test_real_candycane_through_the_adapter(shared_data):
    root = shared_data / "eyecandies"
    ds = DATASETS.create("eyecandies", root=root)
    assert ds.categories == ["CandyCane"]
    assert len(ds.train("CandyCane")) == 3 and len(ds.validation("CandyCane")) == 1
    test = ds.test("CandyCane")
    by_id = {r.id.rsplit("/", 1)[1]: r for r in test.records}
    assert sorted(by_id) == ["00", "01", "25", "26", "29"]
    assert {k: r.label for k, r in by_id.items()} == {"00": 0, "01": 0, "25": 1, "26": 1, "29": 1}
    assert by_id["25"].defect == "bumps" and by_id["26"].defect == "dents"
    assert by_id["29"].defect == "combined"
    data = root / "CandyCane" / "test_public" / "data"
    for i, rec in enumerate(test.records):
        s = test[i]
        sid = rec.id.rsplit("/", 1)[1]
        assert s.xyz_grid.shape == (512, 512, 3) and s.rgb.shape == (512, 512, 3)
        assert 5_000 < len(s.points) < 60_000  # the candy covers a few % of the image
        np.testing.assert_array_equal(s.rgb, read_rgb_png(data / f"{sid}_image_0.png"))
        mask = read_mask_png(data / f"{sid}_mask.png")
        np.testing.assert_array_equal(s.pixel_mask, mask)
        if s.label:
            # GT lies on the object: (almost) every anomalous pixel has a converted point
            on_points = s.point_mask.sum() / mask.sum()
            assert on_points > 0.95 and 20 < s.point_mask.sum() < 0.2 * len(s.points)
        # metric extents (M3DM frame, scaled by 0.1): a candy of a few tenths of a unit
        ext = s.points.max(axis=0) - s.points.min(axis=0)
        assert 0.05 < ext.max() < 0.4 and ext.min() > 0.002, ext
        assert np.abs(s.points).max() < 1.0
    four_seq = DATASETS.create("eyecandies", root=root, rgb="image_4").test("CandyCane")
    four = four_seq[four_seq.ids.index(by_id["00"].id)]
    np.testing.assert_array_equal(four.rgb, read_rgb_png(data / "00_image_4.png"))


def test_real_mvtec_tire_gt_and_rgb_readers(shared_data):
    tire = shared_data / "mvtec3d" / "tire"
    ids = json.loads((tire / "class_ids.json").read_text())
    assert set(ids) == {"0", "253", "254", "255"}
    from PIL import Image

    for defect in ("cut", "hole", "contamination", "combined"):
        gt_path = tire / "test" / defect / "gt" / "000.png"
        raw = np.asarray(Image.open(gt_path))
        assert set(np.unique(raw)) <= {0, 253, 254, 255} and raw.max() >= 253
        mask = read_mask_png(gt_path)
        assert mask.dtype == np.uint8 and set(np.unique(mask)) == {0, 1}
        np.testing.assert_array_equal(mask, (raw > 0).astype(np.uint8))
        rgb = read_rgb_png(tire / "test" / defect / "rgb" / "000.png")
        assert rgb.shape == (*mask.shape, 3) and rgb.dtype == np.uint8
    assert not read_mask_png(tire / "test" / "good" / "gt" / "000.png").any()


def test_real_mvtec_tire_without_xyz_is_reported(shared_data):
    ds = DATASETS.create("mvtec3d", root=shared_data / "mvtec3d")
    assert ds.categories == ["tire"]
    with pytest.raises(DatasetError, match=r"xyz folder not found"):
        ds.train("tire")
    assert Path(shared_data / "mvtec3d" / "tire" / "train").is_dir()
