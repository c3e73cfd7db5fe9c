"""Results store: score packing round trips, atomic files, unreadable results."""

from __future__ import annotations

import numpy as np
import pytest
import test_runner_fixtures as toy

from benchmark.run.spec import EvalConfig
from benchmark.run.store import RunStore, ScoreCollector, StoreError, load_scores, save_scores
from benchmark.sample import Prediction


def _collect(organized: bool, pixel: bool = False):
    ds = toy.ToyDataset(organized=organized, n_test=4)
    det = toy.ToyNN(pixel=pixel)
    det.fit(ds.train("beta"))
    col = ScoreCollector("beta")
    samples = list(ds.test("beta"))
    preds = [det.predict(s) for s in samples]
    for s, p in zip(samples, preds):
        col.add(s, p)
    return samples, preds, col.finish()


@pytest.mark.parametrize("organized,pixel", [(False, False), (True, False), (True, True)])
def test_scores_round_trip(tmp_path, organized, pixel):
    samples, preds, cs = _collect(organized, pixel)
    save_scores(tmp_path / "s.npz", [cs])
    [back] = load_scores(tmp_path / "s.npz")
    assert back.category == "beta" and list(back.ids) == [s.id for s in samples]
    np.testing.assert_array_equal(back.labels, [s.label for s in samples])
    np.testing.assert_array_equal(back.scores, [p.score for p in preds])
    for i, (s, p) in enumerate(zip(samples, preds)):
        if organized:
            np.testing.assert_array_equal(back.sample_grid("pixel_masks", i), s.pixel_mask)
            np.testing.assert_array_equal(back.sample_grid_index(i), s.grid_index)
            if pixel:
                np.testing.assert_array_equal(back.sample_pixel_scores(i), p.pixel_scores)
                assert back.point_scores is None
            else:
                np.testing.assert_array_equal(back.sample_points_scores(i), p.point_scores)
        else:
            np.testing.assert_array_equal(back.sample_points_scores(i), p.point_scores)
            np.testing.assert_array_equal(back.points[back.point_slice(i)], s.points)
            np.testing.assert_array_equal(back.point_masks[back.point_slice(i)], s.point_mask)


def test_points_are_not_stored_beyond_the_cap():
    ds = toy.ToyDataset(n_test=4)
    col = ScoreCollector("alpha", max_points=200)
    for s in ds.test("alpha"):
        col.add(s, Prediction(score=0.0, point_scores=np.zeros(len(s.points), np.float32)))
    cs = col.finish()
    assert cs.points is None and cs.point_scores is not None


def test_point_and_pixel_scores_evaluate_alike():
    """The same per-point scores given as points or as a native-grid map give equal metrics."""
    from benchmark.run.evaluation import evaluate_category

    _, _, as_points = _collect(True, False)
    _, _, as_pixels = _collect(True, True)
    cfg = EvalConfig(domain="valid")
    a = {r["metric"]: r["value"] for r in evaluate_category(as_points, cfg)}
    b = {r["metric"]: r["value"] for r in evaluate_category(as_pixels, cfg)}
    assert set(a) == {"image_auroc", "image_ap", "pixel_auroc", "aupro", "pixel_aupr"}
    assert a == pytest.approx(b)
    rows = evaluate_category(as_points, EvalConfig(grid="224"))
    assert all("grid=224" in r["variant"] for r in rows if r["metric"] == "aupro")


def test_unreadable_files_are_reported(tmp_path):
    store = RunStore(tmp_path)
    store.result_path("k").parent.mkdir(parents=True)
    store.result_path("k").write_text('{"status": "ok", "trunc')
    assert store.status("k") is None
    with pytest.raises(StoreError, match="unreadable"):
        store.load_result("k")
    store.scores_path("k").write_bytes(b"PK\x03\x04garbage")
    with pytest.raises(StoreError, match="unreadable"):
        store.load_scores("k")
    with pytest.raises(StoreError, match="not a run folder"):
        store.read_manifest()


def test_ok_without_scores_is_not_done_and_stale_temp_files_go(tmp_path):
    store = RunStore(tmp_path)
    store.save_result("k", {"status": "ok"})
    assert store.status("k") is None  # scores.npz missing: recompute
    (store.job_dir("k") / ".scores.npz.abc123").write_bytes(b"half")
    assert store.clean_stale() == 1
    assert not list(store.job_dir("k").glob(".*"))
