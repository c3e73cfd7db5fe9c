"""Dataset adapters on synthetic trees of their own on-disk format, lazy loading, caches and
every bad-input case (each raises DatasetError naming the file)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from benchmark.components.pointcloud_io import write_pcd, write_png
from benchmark.dataset import SampleSequence
from benchmark.errors import DatasetError
from benchmark.registry import DATASETS
from datasets.synthetic import generate
from datasets.synthetic._generator import SIZES

SMALL = SIZES["small"]


@pytest.fixture(scope="session")
def trees(tmp_path_factory) -> dict[str, Path]:
    """One small synthetic tree per format (2 categories; generated once per session)."""
    out = {}
    for fmt in ("mvtec3d", "eyecandies", "real3d", "anomaly_shapenet"):
        root = tmp_path_factory.mktemp(f"syn_{fmt}") / "tree"
        generate(root, fmt, seed=0, size="small", categories=2)
        out[fmt] = root
    return out


def _copy(trees, fmt, tmp_path) -> Path:
    dst = tmp_path / fmt
    shutil.copytree(trees[fmt], dst)
    return dst


def _check_sample(s, dataset, organized):
    assert s.dataset == dataset
    assert s.points.dtype == np.float32 and s.points.ndim == 2 and len(s.points) > 100
    assert s.point_mask is not None and s.point_mask.dtype == np.uint8
    assert s.point_mask.shape == (len(s.points),)
    if s.label == 0:
        assert not s.point_mask.any()
    if organized:
        h, w = s.grid_shape
        assert s.rgb.shape == (h, w, 3) and s.pixel_mask.shape == (h, w)
        flat = s.xyz_grid.reshape(-1, 3)
        np.testing.assert_array_equal(flat[s.grid_index], s.points)
        assert np.all(np.any(flat[s.grid_index] != 0, axis=1))
        missing = np.setdiff1d(np.arange(h * w), s.grid_index)
        assert np.all(flat[missing] == 0)
        np.testing.assert_array_equal(s.point_mask, s.pixel_mask.ravel()[s.grid_index])
    else:
        assert s.xyz_grid is None


@pytest.mark.parametrize(
    "fmt,organized", [("mvtec3d", True), ("eyecandies", True), ("real3d", False),
                      ("anomaly_shapenet", False)],
)  # fmt: skip
def test_adapter_on_synthetic_tree(trees, fmt, organized):
    ds = DATASETS.create(fmt, root=trees[fmt])
    assert ds.organized is organized
    assert len(ds.categories) == 2
    cat = ds.categories[0]
    train, test = ds.train(cat), ds.test(cat)
    assert len(train) == SMALL.train
    assert len(test) == SMALL.test_good + SMALL.test_bad
    assert sorted(test.labels) == [0] * SMALL.test_good + [1] * SMALL.test_bad
    for s in train:
        assert s.split == "train" and s.label == 0 and s.defect == "good"
        _check_sample(s, fmt, organized)
    for s in test:
        assert s.split == "test"
        _check_sample(s, fmt, organized)
        if s.label == 1:
            frac = s.point_mask.mean()
            assert s.defect != "good"
            assert 0.003 < frac < 0.2, (s.id, frac)
    if organized:
        assert len(ds.validation(cat)) == SMALL.validation
    else:
        with pytest.raises(DatasetError, match="no validation split"):
            ds.validation(cat)
    table = ds.describe()
    assert set(table.columns) >= {"category", "split", "defect", "label", "count"}
    assert table["count"].sum() == 2 * (SMALL.train + SMALL.test_good + SMALL.test_bad) + (
        2 * SMALL.validation if organized else 0
    )
    fp = ds.fingerprint()
    assert isinstance(fp, str) and fp == DATASETS.create(fmt, root=trees[fmt]).fingerprint()


def test_unorganized_clouds_are_mean_centred(trees):
    for fmt in ("real3d", "anomaly_shapenet"):
        ds = DATASETS.create(fmt, root=trees[fmt])
        s = ds.test(ds.categories[0])[-1]
        np.testing.assert_allclose(s.points.mean(axis=0), 0, atol=1e-3)
        raw = DATASETS.create(fmt, root=trees[fmt], center=False).test(ds.categories[0])[-1]
        assert np.abs(raw.points.mean(axis=0)).max() > 1e-3


def test_anomaly_shapenet_finds_extra_class_folder(trees):
    ds = DATASETS.create("anomaly_shapenet", root=trees["anomaly_shapenet"])
    assert (trees["anomaly_shapenet"] / "dataset" / "new_pcd" / ds.categories[1]).is_dir() or (
        trees["anomaly_shapenet"] / "dataset" / "new_pcd" / ds.categories[0]
    ).is_dir()
    # root may also be the pcd folder itself
    only = DATASETS.create("anomaly_shapenet", root=trees["anomaly_shapenet"] / "dataset" / "pcd")
    assert len(only.categories) == 1
    defects = {r.defect for r in ds.records(ds.categories[0], "test")}
    assert "good" in defects and all(not d[-1].isdigit() for d in defects)


def test_real3d_skips_temp_files(trees, tmp_path):
    root = _copy(trees, "real3d", tmp_path)
    cat = sorted(p.name for p in root.iterdir() if p.is_dir())[0]
    shutil.copy(next((root / cat / "test").glob("*_good.pcd")), root / cat / "test" / "99_temp.pcd")
    ds = DATASETS.create("real3d", root=root)
    assert len(ds.test(cat)) == SMALL.test_good + SMALL.test_bad


@pytest.mark.parametrize("fmt", ["mvtec3d", "real3d"])
def test_lazy_loading_reads_nothing_until_accessed(trees, fmt, monkeypatch):
    import datasets._organized as organized
    import datasets.real3d as real3d

    calls = []
    if fmt == "mvtec3d":
        orig = organized.read_xyz_tiff
        monkeypatch.setattr(organized, "read_xyz_tiff", lambda p: calls.append(p) or orig(p))
    else:
        orig_pc, orig_gt = real3d.read_point_cloud, real3d.read_gt_txt
        monkeypatch.setattr(
            real3d, "read_point_cloud", lambda p, **k: calls.append(p) or orig_pc(p, **k)
        )
        monkeypatch.setattr(
            real3d, "read_gt_txt", lambda p, **k: calls.append(p) or orig_gt(p, **k)
        )
    ds = DATASETS.create(fmt, root=trees[fmt])
    cat = ds.categories[0]
    seq = ds.test(cat)
    assert isinstance(seq, SampleSequence) and len(seq) > 0
    ds.describe()
    sub = seq[1:3]
    assert calls == [] and len(sub) == 2
    s = seq[-1]
    assert len(calls) == 1 and s.id == seq.records[-1].id
    list(sub)
    assert len(calls) == 3


def test_synthetic_registry_entry_generates_once(monkeypatch):
    import datasets.synthetic as synthetic

    ds = DATASETS.create("synthetic", format="real3d", seed=3, size="small", categories=1)
    assert ds.name == "synthetic" and ds.synthetic_format == "real3d"
    assert len(ds.test(ds.categories[0])) == SMALL.test_good + SMALL.test_bad
    monkeypatch.setattr(synthetic, "generate", lambda *a, **k: pytest.fail("generated again"))
    again = DATASETS.create("synthetic", format="real3d", seed=3, size="small", categories=1)
    assert again.root == ds.root
    with pytest.raises(DatasetError, match="unknown format"):
        DATASETS.create("synthetic", format="kitti")


def test_eyecandies_conversion_is_cached(trees, monkeypatch):
    import datasets.eyecandies as eye

    calls = []
    orig = eye.convert_depth
    monkeypatch.setattr(eye, "convert_depth", lambda *a, **k: calls.append(a[0]) or orig(*a, **k))
    ds = DATASETS.create("eyecandies", root=trees["eyecandies"], rgb="image_2")
    cat = ds.categories[0]
    first = ds.test(cat)[0]
    n = len(calls)
    assert n == SMALL.train + SMALL.validation + SMALL.test_good + SMALL.test_bad
    again = DATASETS.create("eyecandies", root=trees["eyecandies"], rgb="image_2")
    second = again.test(cat)[0]
    assert len(calls) == n, "second load converted again"
    np.testing.assert_array_equal(first.xyz_grid, second.xyz_grid)
    assert first.source["raw_rgb"].endswith("_image_2.png")


def test_mvtec3d_btf_preprocessing_cached_stage(trees, monkeypatch):
    import datasets.mvtec3d as mv

    raw_files = sorted(p.stat().st_mtime_ns for p in trees["mvtec3d"].rglob("*.tiff"))
    calls = []
    orig = mv.btf_preprocess
    monkeypatch.setattr(mv, "btf_preprocess", lambda *a, **k: calls.append(1) or orig(*a, **k))
    ds = DATASETS.create("mvtec3d", root=trees["mvtec3d"], preprocess="btf")
    cat = ds.categories[0]
    raw = DATASETS.create("mvtec3d", root=trees["mvtec3d"]).test(cat)
    test = ds.test(cat)
    n = len(calls)
    assert n == SMALL.train + SMALL.validation + SMALL.test_good + SMALL.test_bad
    for i in (0, len(test) - 1):
        s, r = test[i], raw[i]
        side = max(-(-r.grid_shape[0] // 100), -(-r.grid_shape[1] // 100)) * 100
        assert s.grid_shape == (side, side)  # padded to a square multiple of 100
        assert 0.2 * len(r.points) < len(s.points) < len(r.points)  # plane removed, object kept
        assert s.pixel_mask.sum() == r.pixel_mask.sum()
    DATASETS.create("mvtec3d", root=trees["mvtec3d"], preprocess="btf").test(cat)
    assert len(calls) == n
    assert sorted(p.stat().st_mtime_ns for p in trees["mvtec3d"].rglob("*.tiff")) == raw_files
    assert ds.fingerprint() != DATASETS.create("mvtec3d", root=trees["mvtec3d"]).fingerprint()


# ------------------------------------------------------------------------------------------------
# bad input


@pytest.mark.parametrize("fmt", ["mvtec3d", "eyecandies", "real3d", "anomaly_shapenet"])
def test_missing_root_and_unknown_category(trees, fmt, tmp_path):
    with pytest.raises(DatasetError, match="nowhere"):
        DATASETS.create(fmt, root=tmp_path / "nowhere")
    ds = DATASETS.create(fmt, root=trees[fmt])
    with pytest.raises(
        DatasetError, match="unknown .* category 'teapot'; known categories: "
    ) as err:
        ds.test("teapot")
    for cat in ds.categories:
        assert cat in str(err.value)


@pytest.mark.parametrize(
    "fmt,split_dir",
    [("mvtec3d", "{cat}/test"), ("eyecandies", "{cat}/test_public"), ("real3d", "{cat}/train"),
     ("anomaly_shapenet", "dataset/pcd/{cat}/test")],
)  # fmt: skip
def test_missing_split_folder(trees, tmp_path, fmt, split_dir):
    root = _copy(trees, fmt, tmp_path)
    ds = DATASETS.create(fmt, root=root)
    cat = ds.categories[0]
    if fmt == "anomaly_shapenet" and not (root / split_dir.format(cat=cat)).exists():
        cat = ds.categories[1]
    shutil.rmtree(root / split_dir.format(cat=cat))
    ds = DATASETS.create(fmt, root=root)
    split = "train" if fmt == "real3d" else "test"
    with pytest.raises(DatasetError, match=Path(split_dir.format(cat=cat)).name):
        getattr(ds, split)(cat)


def _first(root: Path, pattern: str) -> Path:
    return sorted(root.rglob(pattern))[0]


def test_mvtec3d_bad_files(trees, tmp_path):
    root = _copy(trees, "mvtec3d", tmp_path)
    ds = DATASETS.create("mvtec3d", root=root)
    cat = ds.categories[0]
    # an id present in rgb but not in xyz
    rgb = _first(root / cat / "train", "rgb/*.png")
    (rgb.parent.parent / "xyz" / (rgb.stem + ".tiff")).unlink()
    with pytest.raises(DatasetError, match=rf"{rgb.name}.*no matching file.*xyz"):
        DATASETS.create("mvtec3d", root=root).train(cat)
    shutil.rmtree(root)
    root = _copy(trees, "mvtec3d", tmp_path)
    test_dir = next(p for p in (root / cat / "test").iterdir() if p.name != "good")
    gt = sorted((test_dir / "gt").glob("*.png"))[0]
    gt.unlink()
    with pytest.raises(DatasetError, match="no matching file.*gt"):
        DATASETS.create("mvtec3d", root=root).test(cat)
    shutil.rmtree(root)
    root = _copy(trees, "mvtec3d", tmp_path)
    seq = DATASETS.create("mvtec3d", root=root).train(cat)
    files = seq.records[0].files
    write_png(files["rgb"], np.zeros((10, 12, 3), np.uint8))  # size mismatch
    with pytest.raises(DatasetError, match=r"rgb.*12x10.*xyz"):
        seq[0]
    xyz = Path(seq.records[1].files["xyz"])
    xyz.write_bytes(xyz.read_bytes()[:500])  # truncated TIFF
    with pytest.raises(DatasetError, match=xyz.name):
        seq[1]
    from benchmark.components.pointcloud_io import read_xyz_tiff, write_xyz_tiff

    xyz2 = Path(seq.records[2].files["xyz"])
    grid = read_xyz_tiff(xyz2)
    grid[3, 4, 2] = np.inf
    write_xyz_tiff(xyz2, grid)
    with pytest.raises(DatasetError, match=rf"{xyz2.name}.*NaN/inf"):
        seq[2]
    write_xyz_tiff(xyz2, np.zeros_like(grid))  # every pixel invalid: empty cloud
    with pytest.raises(DatasetError, match=rf"{xyz2.name}.*no valid point"):
        seq[2]
    test = DATASETS.create("mvtec3d", root=root).test(cat)
    rec = next(r for r in test.records if r.label == 1)
    write_png(rec.files["gt"], np.zeros((5, 5), np.uint8))
    with pytest.raises(DatasetError, match=r"gt.*GT mask is 5x5"):
        test[test.records.index(rec)]


def test_real3d_bad_files(trees, tmp_path):
    root = _copy(trees, "real3d", tmp_path)
    ds = DATASETS.create("real3d", root=root)
    cat = ds.categories[0]
    test = ds.test(cat)
    idx = next(i for i, r in enumerate(test.records) if r.label == 1)
    gt = Path(test.records[idx].files["gt"])
    lines = gt.read_text().splitlines()
    gt.write_text("\n".join(lines[:-1]) + "\n")  # one GT row missing
    with pytest.raises(DatasetError, match=rf"{gt.name}.*rows but the point cloud has"):
        test[idx]
    gt.unlink()
    with pytest.raises(DatasetError, match=rf"without its GT file.*{gt.name}"):
        DATASETS.create("real3d", root=root).test(cat)
    good = Path(test.records[0].files["cloud"])
    write_pcd(good, np.zeros((0, 3), np.float32))
    with pytest.raises(DatasetError, match=rf"{good.name}.*empty"):
        test[0]
    pts = np.ones((10, 3), np.float32)
    pts[2] = np.nan
    write_pcd(good, pts, data="ascii")
    with pytest.raises(DatasetError, match=rf"{good.name}.*NaN"):
        test[0]
    train = ds.train(cat)
    tpl = Path(train.records[0].files["cloud"])
    tpl.write_bytes(tpl.read_bytes()[:300])
    with pytest.raises(DatasetError, match=tpl.name):
        train[0]


def test_eyecandies_bad_files_cache_nothing(trees, tmp_path):
    cache = Path(os.environ["BENCHMARK_CACHE"]) / "eyecandies"
    before = set(cache.iterdir()) if cache.is_dir() else set()
    root = _copy(trees, "eyecandies", tmp_path)
    ds = DATASETS.create("eyecandies", root=root)
    cat = ds.categories[0]
    data = root / cat / "test_public" / "data"
    depth = sorted(data.glob("*_depth.png"))[-1]
    depth.write_bytes(depth.read_bytes()[:60])  # truncated depth PNG of the last test sample
    with pytest.raises(DatasetError, match=depth.name):
        DATASETS.create("eyecandies", root=root).train(cat)
    after = set(cache.iterdir()) if cache.is_dir() else set()
    assert after == before, "a failed conversion left something in the cache"
    shutil.copy(sorted(data.glob("*_depth.png"))[0], depth)
    mask = data / depth.name.replace("_depth", "_mask")
    write_png(mask, np.zeros((7, 7), np.uint8))
    with pytest.raises(DatasetError, match=rf"{mask.name}.*mask is 7x7"):
        DATASETS.create("eyecandies", root=root).test(cat)
    mask.unlink()
    with pytest.raises(DatasetError, match=rf"{mask.name}: missing"):
        DATASETS.create("eyecandies", root=root).test(cat)
    with pytest.raises(DatasetError, match="rgb must be one of"):
        DATASETS.create("eyecandies", root=root, rgb="image_9")
    train_depth = sorted((root / cat / "train" / "data").glob("*_depth.png"))[0]
    train_depth.unlink()  # an id with images but no depth
    with pytest.raises(DatasetError, match=r"_image_0.png: sample id .* has no depth file"):
        DATASETS.create("eyecandies", root=root).train(cat)
