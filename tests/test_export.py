"""Export: heat-map PLY read back by Open3D, PNG renders and overlays, ROC/PRO curves."""

from __future__ import annotations

import numpy as np
import pytest
import test_runner_fixtures as toy
from PIL import Image

from benchmark.report.export import GT_COLOR, colorbar, export_run, heat_colors
from benchmark.run.runner import run
from benchmark.run.store import RunStore


@pytest.fixture(autouse=True)
def _registered(monkeypatch):
    toy.activate(monkeypatch)
    yield
    toy.unregister()


def test_heat_colors_span_the_colour_map():
    c = heat_colors(np.array([0.0, 0.5, 1.0, 2.0]), 0.0, 1.0)
    assert c.dtype == np.uint8 and c.shape == (4, 3)
    assert (c[2] == c[3]).all() and not (c[0] == c[2]).all()


def test_export_ply_png_and_curves(tmp_path):
    o3d = pytest.importorskip("open3d")
    spec = toy.toy_spec(categories=["beta"], dataset_options={"organized": True},
                        methods=[{"name": "toy_nn", "args": {"noise": 0.1}}])
    s = run(spec, out=tmp_path / "run")
    key = s.jobs[0].key
    files = export_run(tmp_path / "run", tmp_path / "out", job=key[:6], limit=2,
                       render_size=96)
    names = sorted(p.name for p in files)
    assert "roc.png" in names and "pro.png" in names
    plys = [p for p in files if p.suffix == ".ply"]
    assert len(plys) == 2
    [cs] = RunStore(tmp_path / "run").load_scores(key)
    seq = toy.ToyDataset(organized=True).test("beta")
    for ply in plys:
        i = next(j for j, sid in enumerate(cs.ids) if ply.stem == sid.replace("/", "_"))
        expected = cs.sample_points_scores(i)
        legacy = o3d.io.read_point_cloud(str(ply))
        assert len(legacy.points) == len(expected) and legacy.has_colors()
        np.testing.assert_allclose(np.asarray(legacy.points), seq[i].points, rtol=1e-6)
        tensor = o3d.t.io.read_point_cloud(str(ply))
        scores = tensor.point["anomaly_score"].numpy().reshape(-1)
        np.testing.assert_array_equal(scores, expected)
        gt = tensor.point["gt"].numpy().reshape(-1)
        np.testing.assert_array_equal(gt, seq[i].point_mask)
    bar_w = colorbar(96, 0.0, 1.0).shape[1]
    for p in files:
        if p.name.endswith("_render.png"):
            i = next(j for j, sid in enumerate(cs.ids) if p.name.startswith(sid.replace("/", "_")))
            rows = 2 if seq[i].point_mask.any() else 1  # second row: GT points marked
            img = np.asarray(Image.open(p))
            assert img.shape[:2] == (rows * 96, 3 * 96 + bar_w)
            if rows == 2:
                assert (img[96:, : 3 * 96] == GT_COLOR).all(-1).any()
    overlay = Image.open(next(p for p in files if p.name.endswith("_overlay.png")))
    assert overlay.size == (3 * toy.GRID + colorbar(toy.GRID, 0, 1).shape[1], toy.GRID)


def test_colorbar_is_labelled_with_the_range():
    bar = colorbar(200, -1.5, 2.25)
    assert bar.shape == (200, 84, 3)
    top, bottom = bar[12, 14], bar[12 + 200 - 24 - 1, 14]  # the ramp spans rows 12..187
    np.testing.assert_array_equal(top, heat_colors(np.array([1.0]), 0, 1)[0])
    np.testing.assert_array_equal(bottom, heat_colors(np.array([0.0]), 0, 1)[0])
    assert (bar[:, 30:] < 128).any()  # the range labels are drawn


def test_sample_scale_uses_each_samples_own_range(tmp_path):
    pytest.importorskip("open3d")
    spec = toy.toy_spec(categories=["beta"], dataset_options={"organized": True},
                        methods=[{"name": "toy_nn", "args": {"noise": 0.1}}])
    run(spec, out=tmp_path / "run")
    files = export_run(tmp_path / "run", tmp_path / "out", limit=2, curves=False, png=False,
                       scale="sample")
    import open3d as o3d

    for ply in [p for p in files if p.suffix == ".ply"]:
        colors = np.asarray(o3d.io.read_point_cloud(str(ply)).colors)
        lo, hi = heat_colors(np.array([0.0, 1.0]), 0, 1) / 255.0
        # each sample's own min and max get the two ends of the colour map
        assert np.isclose(colors, lo, atol=1e-2).all(1).any()
        assert np.isclose(colors, hi, atol=1e-2).all(1).any()
