"""The synthetic generator: determinism, exact GT, on-disk layouts, the `synthetic` command, and
that anomalies are detectable but not trivial (a nearest-neighbour baseline)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from benchmark.cli import main as cli_main
from benchmark.errors import DatasetError
from benchmark.registry import DATASETS
from datasets.synthetic import generate
from datasets.synthetic._anomalies import height_anomaly, surface_anomaly
from datasets.synthetic._surfaces import HEIGHT_FAMILIES, SURFACE_FAMILIES, sample_surface


def _digest(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.name != "SYNTHETIC.json":
            h.update(p.relative_to(root).as_posix().encode())
            h.update(p.read_bytes())
    return h.hexdigest()


@pytest.mark.parametrize("fmt", ["real3d", "mvtec3d"])
def test_generation_is_deterministic(tmp_path, fmt):
    generate(tmp_path / "a", fmt, seed=5, size="small", categories=1)
    generate(tmp_path / "b", fmt, seed=5, size="small", categories=1)
    generate(tmp_path / "c", fmt, seed=6, size="small", categories=1)
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    assert _digest(tmp_path / "a") != _digest(tmp_path / "c")


def test_on_disk_layouts(tmp_path):
    generate(tmp_path / "mv", "mvtec3d", 0, "small", 1)
    cat = tmp_path / "mv" / "dome"
    assert (cat / "calibration" / "camera_parameters.json").is_file()
    assert sorted(p.name for p in (cat / "train" / "good").iterdir()) == ["rgb", "xyz"]
    assert (cat / "train" / "good" / "xyz" / "000.tiff").is_file()
    ids = json.loads((cat / "class_ids.json").read_text())
    for defect in (p.name for p in (cat / "test").iterdir() if p.name != "good"):
        assert defect in ids.values()
    generate(tmp_path / "ey", "eyecandies", 0, "small", 1)
    data = tmp_path / "ey" / "Dome" / "test_public" / "data"
    items = sorted(p.name[3:] for p in data.glob("00_*"))
    assert len(items) == 17 and "depth.png" in items and "pose.txt" in items
    assert (tmp_path / "ey" / "Dome" / "train" / "data" / "000_depth.png").is_file()
    generate(tmp_path / "r3", "real3d", 0, "small", 1)
    assert (tmp_path / "r3" / "egg" / "train" / "0_template.pcd").is_file()
    assert any((tmp_path / "r3" / "egg" / "gt").glob("*_bulge.txt")) or any(
        (tmp_path / "r3" / "egg" / "gt").glob("*_sink.txt")
    )
    generate(tmp_path / "as", "anomaly_shapenet", 0, "small", 2)
    pcd = tmp_path / "as" / "dataset" / "pcd" / "egg0"
    assert (pcd / "train" / "egg0_template0.pcd").is_file()
    assert (pcd / "test" / "egg0_positive0.pcd").is_file()
    assert "," in next((pcd / "GT").glob("*.txt")).read_text().splitlines()[0]
    assert (tmp_path / "as" / "dataset" / "new_pcd" / "torus0" / "train").is_dir()


@pytest.mark.parametrize("kind", ["bulge", "dent", "hole", "crack", "scratch", "bend"])
def test_surface_anomalies_have_exact_gt(kind):
    rng = np.random.default_rng(1)
    pts, nrm = sample_surface(SURFACE_FAMILIES["egg"](rng), 4000, rng)
    new, labels = surface_anomaly(kind, pts, nrm, 0.05, rng)
    assert 0.01 <= labels.mean() <= 0.12, labels.mean()
    if kind == "hole":
        assert len(new) < len(pts)
        return
    moved = np.linalg.norm(new - pts, axis=1)
    # every changed point above 10% of the peak change is labelled, and nothing unchanged is
    assert np.all(moved[labels == 0] <= 0.1 * moved.max() + 1e-9)
    assert np.all(moved[labels == 1] > 0)


@pytest.mark.parametrize("kind", ["bulge", "dent", "hole", "crack", "scratch", "bend", "stain"])
def test_height_anomalies_cover_a_few_percent(kind):
    rng = np.random.default_rng(2)
    shape = HEIGHT_FAMILIES["dome"](rng)
    anomaly = height_anomaly(kind, shape, 0.05, rng)
    g = np.linspace(-1.3, 1.3, 200)
    u, v = np.meshgrid(g, g)
    h = shape(u, v)
    dh, colour, gt = anomaly(u, v, h)
    share = gt[h > 0].mean()
    assert 0.01 <= share <= 0.12, share
    changed = (np.abs(dh) > 0) | (colour > 0)
    assert np.all(~gt | changed) and not np.any(gt & (h <= 0))


def test_synthetic_command_writes_a_readable_tree(tmp_path, capsys):
    out = tmp_path / "syn"
    code = cli_main(["synthetic", "--format", "real3d", "--out", str(out), "--seed", "2",
                     "--categories", "1", "--size", "small"])  # fmt: skip
    assert code == 0
    assert "wrote real3d synthetic dataset" in capsys.readouterr().out
    ds = DATASETS.create("real3d", root=out)
    assert ds.categories == ["egg"] and len(ds.train("egg")) == 4
    # same folder, same recipe: reused; a different recipe: refused
    assert cli_main(["synthetic", "--format", "real3d", "--out", str(out), "--seed", "2",
                     "--categories", "1"]) == 0  # fmt: skip
    assert cli_main(["synthetic", "--format", "mvtec3d", "--out", str(out)]) == 2
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x.txt").write_text("x")
    with pytest.raises(DatasetError, match="not empty"):
        DATASETS.get("synthetic").factory(format="real3d", root=tmp_path / "full")


def _nn_baseline(ds) -> tuple[float, float]:
    """Mean object AUROC and point AUROC of nearest-neighbour distance to the train points."""
    from scipy.spatial import cKDTree
    from sklearn.metrics import roc_auc_score

    image, point = [], []
    for cat in ds.categories:
        tree = cKDTree(np.concatenate([s.points for s in ds.train(cat)]))
        labels, scores, masks, dists = [], [], [], []
        for s in ds.test(cat):
            d = tree.query(s.points, k=1)[0]
            labels.append(s.label)
            scores.append(d.max())
            masks.append(s.point_mask)
            dists.append(d)
        image.append(roc_auc_score(labels, scores))
        point.append(roc_auc_score(np.concatenate(masks), np.concatenate(dists)))
    return float(np.mean(image)), float(np.mean(point))


def test_anomalies_are_detectable_but_not_trivial():
    """Point-level AUROC of a plain nearest-neighbour detector: well above chance, below 1."""
    ds = DATASETS.create("synthetic", format="real3d", seed=0, size="small", categories=4)
    image, point = _nn_baseline(ds)
    assert 0.6 < point < 0.995, point
    assert image > 0.5, image


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["mvtec3d", "eyecandies", "real3d", "anomaly_shapenet"])
def test_medium_trees_are_detectable_but_not_trivial(fmt):
    """Medium trees (3 categories): nearest-neighbour AUROCs above chance and below 1."""
    ds = DATASETS.create("synthetic", format=fmt, seed=0, size="medium", categories=3)
    image, point = _nn_baseline(ds)
    assert 0.55 < point < 0.98, point
    assert 0.55 < image < 0.995, image
