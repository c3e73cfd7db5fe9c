"""pointcloud_io: PCD / PLY / GT txt / TIFF / PNG readers and writers, with bad inputs."""

from __future__ import annotations

import numpy as np
import pytest

from benchmark.components.pointcloud_io import (
    lzf_compress_literal,
    lzf_decompress,
    pcd_point_count,
    read_depth_png,
    read_gt_txt,
    read_mask_png,
    read_pcd,
    read_ply,
    read_point_cloud,
    read_rgb_png,
    read_xyz_tiff,
    write_gt_txt,
    write_pcd,
    write_ply,
    write_png,
    write_xyz_tiff,
)
from benchmark.errors import DatasetError


@pytest.fixture()
def cloud() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    pts = rng.normal(size=(257, 3)).astype(np.float32) * 10
    cols = rng.integers(0, 256, size=(257, 3)).astype(np.uint8)
    return pts, cols


@pytest.mark.parametrize("data", ["ascii", "binary", "binary_compressed"])
def test_pcd_roundtrip(tmp_path, cloud, data):
    pts, cols = cloud
    label = np.arange(len(pts), dtype=np.int32)
    path = tmp_path / f"c_{data}.pcd"
    write_pcd(path, pts, colors=cols, scalars={"label": label}, data=data)
    got = read_pcd(path)
    np.testing.assert_allclose(got.points, pts, rtol=1e-6)
    np.testing.assert_array_equal(got.colors, cols)
    np.testing.assert_array_equal(got.scalars["label"], label)
    assert pcd_point_count(path) == len(pts)


def test_pcd_written_files_are_readable_by_open3d(tmp_path, cloud):
    o3d = pytest.importorskip("open3d")
    pts, _ = cloud
    for data in ("ascii", "binary", "binary_compressed"):
        path = tmp_path / f"o3d_{data}.pcd"
        write_pcd(path, pts, data=data)
        read = np.asarray(o3d.io.read_point_cloud(str(path)).points)
        np.testing.assert_allclose(read, pts, rtol=1e-6, atol=1e-6)


def test_pcd_reads_open3d_written_compressed(tmp_path, cloud):
    """A real LZF stream (with back-references) from another writer decodes correctly."""
    o3d = pytest.importorskip("open3d")
    pts = np.repeat(cloud[0][:20], 30, axis=0)  # repetitive -> LZF back-references
    pc = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(pts.astype(np.float64)))
    path = tmp_path / "o3d.pcd"
    o3d.io.write_point_cloud(str(path), pc, write_ascii=False, compressed=True)
    np.testing.assert_allclose(read_pcd(path).points, pts, rtol=1e-6)


def test_lzf_roundtrip_and_corruption():
    data = bytes(range(256)) * 3 + b"tail"
    comp = lzf_compress_literal(data)
    assert lzf_decompress(comp, len(data)) == data
    with pytest.raises(DatasetError, match="LZF"):
        lzf_decompress(comp[:-3], len(data), "x.pcd")
    with pytest.raises(DatasetError, match="x.pcd"):
        lzf_decompress(b"\xe0\x05", 10, "x.pcd")  # back-reference before the start


def test_pcd_bad_inputs(tmp_path, cloud):
    pts, _ = cloud
    good = tmp_path / "good.pcd"
    write_pcd(good, pts, data="binary")
    blob = good.read_bytes()
    cut = tmp_path / "truncated.pcd"
    cut.write_bytes(blob[:-100])
    with pytest.raises(DatasetError, match=r"truncated\.pcd.*truncated"):
        read_pcd(cut)
    nodata = tmp_path / "nodata.pcd"
    nodata.write_bytes(blob[: blob.index(b"DATA")])
    with pytest.raises(DatasetError, match="nodata.pcd.*DATA"):
        read_pcd(nodata)
    badn = tmp_path / "badn.pcd"
    badn.write_bytes(blob.replace(b"POINTS 257", b"POINTS abc"))
    with pytest.raises(DatasetError, match="badn.pcd"):
        read_pcd(badn)
    comp = tmp_path / "comp.pcd"
    write_pcd(comp, pts, data="binary_compressed")
    ccut = tmp_path / "ccut.pcd"
    ccut.write_bytes(comp.read_bytes()[:-50])
    with pytest.raises(DatasetError, match="ccut.pcd"):
        read_pcd(ccut)
    asc = tmp_path / "asc.pcd"
    write_pcd(asc, pts[:5], data="ascii")
    text = asc.read_text().splitlines()
    (tmp_path / "rows.pcd").write_text("\n".join(text[:-1]) + "\n")  # one row missing
    with pytest.raises(DatasetError, match="rows.pcd"):
        read_pcd(tmp_path / "rows.pcd")
    (tmp_path / "junk.pcd").write_text("\n".join(text[:-1] + ["1 2 x"]) + "\n")
    with pytest.raises(DatasetError, match="junk.pcd"):
        read_pcd(tmp_path / "junk.pcd")
    with pytest.raises(DatasetError, match="missing.pcd"):
        read_pcd(tmp_path / "missing.pcd")


def test_pcd_nan_and_empty(tmp_path, cloud):
    pts = cloud[0].copy()
    pts[7, 1] = np.nan
    write_pcd(tmp_path / "nan.pcd", pts)
    with pytest.raises(DatasetError, match=r"nan\.pcd.*NaN/inf"):
        read_pcd(tmp_path / "nan.pcd")
    pts[7, 1] = np.inf
    write_pcd(tmp_path / "inf.pcd", pts, data="ascii")
    with pytest.raises(DatasetError, match=r"inf\.pcd.*NaN/inf"):
        read_pcd(tmp_path / "inf.pcd")
    write_pcd(tmp_path / "empty.pcd", np.zeros((0, 3), np.float32))
    with pytest.raises(DatasetError, match=r"empty\.pcd.*empty"):
        read_pcd(tmp_path / "empty.pcd")
    assert len(read_pcd(tmp_path / "empty.pcd", allow_empty=True).points) == 0


@pytest.mark.parametrize("binary", [True, False])
def test_ply_roundtrip(tmp_path, cloud, binary):
    pts, cols = cloud
    q = np.linspace(0, 1, len(pts)).astype(np.float32)
    path = tmp_path / "c.ply"
    write_ply(path, pts, colors=cols, scalars={"quality": q}, binary=binary)
    got = read_point_cloud(path)
    np.testing.assert_allclose(got.points, pts, rtol=1e-6)
    np.testing.assert_array_equal(got.colors, cols)
    np.testing.assert_allclose(got.scalars["quality"], q, rtol=1e-6)
    plain = tmp_path / "plain.ply"
    write_ply(plain, pts)
    assert read_ply(plain).colors is None


def test_ply_bad_inputs(tmp_path, cloud):
    pts, _ = cloud
    path = tmp_path / "c.ply"
    write_ply(path, pts)
    (tmp_path / "cut.ply").write_bytes(path.read_bytes()[:-40])
    with pytest.raises(DatasetError, match="cut.ply"):
        read_ply(tmp_path / "cut.ply")
    (tmp_path / "junk.ply").write_bytes(b"not a ply file at all")
    with pytest.raises(DatasetError, match="junk.ply"):
        read_ply(tmp_path / "junk.ply")
    bad = pts.copy()
    bad[0] = np.nan
    write_ply(tmp_path / "nan.ply", bad)
    with pytest.raises(DatasetError, match="nan.ply.*NaN"):
        read_ply(tmp_path / "nan.ply")
    with pytest.raises(DatasetError, match="unknown point-cloud format"):
        read_point_cloud(tmp_path / "c.xyz")


@pytest.mark.parametrize("delimiter", [None, ","])
def test_gt_txt(tmp_path, cloud, delimiter):
    pts, _ = cloud
    labels = (np.arange(len(pts)) % 7 == 0).astype(np.uint8)
    path = tmp_path / "gt.txt"
    write_gt_txt(path, pts, labels, delimiter=" " if delimiter is None else ",")
    got_pts, got_lab = read_gt_txt(path, delimiter=delimiter, expected_rows=len(pts))
    np.testing.assert_allclose(got_pts, pts, atol=1e-5)
    np.testing.assert_array_equal(got_lab, labels)
    with pytest.raises(DatasetError, match=r"gt\.txt.*rows but the point cloud has"):
        read_gt_txt(path, delimiter=delimiter, expected_rows=len(pts) + 1)


def test_gt_txt_bad_inputs(tmp_path):
    (tmp_path / "cols.txt").write_text("1 2 3\n4 5 6\n")
    with pytest.raises(DatasetError, match="cols.txt.*columns"):
        read_gt_txt(tmp_path / "cols.txt")
    (tmp_path / "lab.txt").write_text("1 2 3 0\n4 5 6 2\n")
    with pytest.raises(DatasetError, match="lab.txt.*0 or 1"):
        read_gt_txt(tmp_path / "lab.txt")
    (tmp_path / "nan.txt").write_text("1 2 3 0\nnan 5 6 1\n")
    with pytest.raises(DatasetError, match="nan.txt.*NaN"):
        read_gt_txt(tmp_path / "nan.txt")
    (tmp_path / "comma.txt").write_text("1,2,3,0\n")
    with pytest.raises(DatasetError, match="comma.txt.*whitespace"):
        read_gt_txt(tmp_path / "comma.txt")
    (tmp_path / "empty.txt").write_text("")
    with pytest.raises(DatasetError, match="empty.txt"):
        read_gt_txt(tmp_path / "empty.txt")


def test_images_roundtrip_and_bad_inputs(tmp_path):
    xyz = np.random.default_rng(0).normal(size=(6, 5, 3)).astype(np.float32)
    write_xyz_tiff(tmp_path / "a.tiff", xyz)
    np.testing.assert_array_equal(read_xyz_tiff(tmp_path / "a.tiff"), xyz)
    blob = (tmp_path / "a.tiff").read_bytes()
    (tmp_path / "cut.tiff").write_bytes(blob[: len(blob) // 3])
    with pytest.raises(DatasetError, match="cut.tiff"):
        read_xyz_tiff(tmp_path / "cut.tiff")
    bad = xyz.copy()
    bad[1, 1, 0] = np.nan
    write_xyz_tiff(tmp_path / "nan.tiff", bad)
    with pytest.raises(DatasetError, match="nan.tiff.*NaN"):
        read_xyz_tiff(tmp_path / "nan.tiff")
    write_xyz_tiff(tmp_path / "flat.tiff", xyz[..., 0])
    with pytest.raises(DatasetError, match=r"flat.tiff.*\(H,W,3\)"):
        read_xyz_tiff(tmp_path / "flat.tiff")
    mask = np.array([[0, 253], [254, 255]], dtype=np.uint8)
    write_png(tmp_path / "m.png", mask)
    np.testing.assert_array_equal(read_mask_png(tmp_path / "m.png"), [[0, 1], [1, 1]])
    rgb = np.random.default_rng(1).integers(0, 256, (4, 3, 3)).astype(np.uint8)
    write_png(tmp_path / "c.png", rgb)
    np.testing.assert_array_equal(read_rgb_png(tmp_path / "c.png"), rgb)
    depth = np.array([[0, 65535], [1234, 40000]], dtype=np.uint16)
    write_png(tmp_path / "d.png", depth)
    np.testing.assert_array_equal(read_depth_png(tmp_path / "d.png"), depth)
    (tmp_path / "bad.png").write_bytes((tmp_path / "c.png").read_bytes()[:30])
    with pytest.raises(DatasetError, match="bad.png"):
        read_rgb_png(tmp_path / "bad.png")


def test_large_compressed_pcd_fast_path_matches_python_decoder(tmp_path):
    o3d = pytest.importorskip("open3d")
    from benchmark.components import pointcloud_io as pointio

    pts = np.random.default_rng(3).normal(size=(200_500, 3)).round(3)
    pc = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(pts))
    path = tmp_path / "big.pcd"
    o3d.io.write_point_cloud(str(path), pc, write_ascii=False, compressed=True)
    fast = read_pcd(path).points
    blob = path.read_bytes()
    header, pos = pointio._parse_pcd_header(path, blob)
    slow = pointio._read_pcd_compressed(
        path, blob[pos:], pointio._pcd_dtype(path, header), len(pts)
    )
    np.testing.assert_array_equal(fast, np.stack([slow["x"], slow["y"], slow["z"]], 1))
    np.testing.assert_allclose(fast, pts, atol=1e-6)
