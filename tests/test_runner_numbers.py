"""Runner numbers against an independent computation.

Every row of a run's metrics.csv is recomputed here from the labels and scores the detector
produced, with sklearn and plain numpy only (no `metrics/`, no benchmark resizing): image AUROC /
AP, pixel AUROC / AUPR / exact AUPRO on the native, 224 and 336 grids (bilinear scores, nearest
GT and validity written out below), over all cells or only the valid ones, and the pooled point
metrics with the radius-graph point AUPRO. A tiny 2x2 case pins the numbers by hand.
"""

from __future__ import annotations

import csv
import math
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
import test_runner_fixtures as toy
from scipy import ndimage
from scipy.sparse.csgraph import connected_components
from sklearn.metrics import average_precision_score, roc_auc_score

from benchmark.dataset import Record, SampleSequence
from benchmark.detector import Detector
from benchmark.registry import DATASETS, METHODS
from benchmark.run.runner import reevaluate, run
from benchmark.run.spec import EvalConfig
from benchmark.sample import Prediction, Sample

LIMIT = 0.3


# ---------------------------------------------------------------------------------------------
# the independent computation


def bilinear(m: np.ndarray, size: int) -> np.ndarray:
    """Bilinear resize with half-pixel centres (align_corners=False), edges clamped; in float32
    like the evaluator's maps, so that rounding (and hence ties) come out the same."""
    f = np.float32

    def axis(n_in: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        scale = f(n_in / size)
        src = np.maximum(scale * (np.arange(size, dtype=f) + f(0.5)) - f(0.5), f(0))
        i0 = np.minimum(np.floor(src).astype(int), n_in - 1)
        i1 = np.minimum(i0 + 1, n_in - 1)
        return i0, i1, (src - i0).astype(f)

    r0, r1, wr = axis(m.shape[0])
    c0, c1, wc = axis(m.shape[1])
    m = m.astype(f)
    top = m[r0][:, c0] * (f(1) - wc) + m[r0][:, c1] * wc
    bottom = m[r1][:, c0] * (f(1) - wc) + m[r1][:, c1] * wc
    return top * (f(1) - wr[:, None]) + bottom * wr[:, None]


def nearest(m: np.ndarray, size: int) -> np.ndarray:
    """Nearest resize: output cell i reads input cell floor(i * n_in / size)."""
    rows = np.floor(np.arange(size) * m.shape[0] / size).astype(int)
    cols = np.floor(np.arange(size) * m.shape[1] / size).astype(int)
    return m[rows][:, cols]


def trapezoid_to(x: np.ndarray, y: np.ndarray, limit: float) -> float:
    keep = x <= limit
    xs, ys = list(x[keep]), list(y[keep])
    if xs[-1] < limit:
        j = np.flatnonzero(~keep)[0]
        xs.append(limit)
        ys.append(y[j - 1] + (y[j] - y[j - 1]) * (limit - x[j - 1]) / (x[j] - x[j - 1]))
    return float(sum(0.5 * (ys[i] + ys[i - 1]) * (xs[i] - xs[i - 1]) for i in range(1, len(xs))))


def pro_reference(scores: np.ndarray, region: np.ndarray, limit: float = LIMIT) -> float:
    """Exact AUPRO: `region` 0 = normal cell, k > 0 = the cell's defect region (unique ids);
    FPR over normal cells vs mean per-region overlap, one point per distinct threshold."""
    order = np.argsort(-scores, kind="stable")
    s, reg = scores[order], region[order]
    sizes = np.bincount(region)
    n_regions = np.count_nonzero(sizes[1:])
    fpr = np.cumsum(reg == 0) / np.count_nonzero(region == 0)
    share = np.where(reg > 0, 1.0 / np.maximum(sizes[reg], 1), 0.0) / n_regions
    pro = np.cumsum(share)
    last = np.append(s[1:] != s[:-1], True)
    x = np.concatenate([[0.0], fpr[last], [1.0]])
    y = np.concatenate([[0.0], np.minimum(pro[last], 1.0), [1.0]])
    return trapezoid_to(x, y, limit) / limit


def image_metrics(labels: list[int], scores: list[float]) -> dict[str, float]:
    return {"image_auroc": roc_auc_score(labels, scores),
            "image_ap": average_precision_score(labels, scores)}


def organized_metrics(samples: list[Sample], preds: list[Prediction], grid: str,
                      domain: str) -> dict[str, float]:
    cells, gts, regions, offset = [], [], [], 0
    for s, p in zip(samples, preds):
        h, w = s.grid_shape
        valid = np.zeros(h * w, np.float64)
        valid[s.grid_index] = 1
        if p.pixel_scores is not None:
            m = p.pixel_scores.astype(np.float64)
        else:  # point scores back on the grid, empty cells at the sample's lowest score
            m = np.full(h * w, p.point_scores.min(), np.float64)
            m[s.grid_index] = p.point_scores
            m = m.reshape(h, w)
        gt, ok = s.pixel_mask.astype(np.float64), valid.reshape(h, w)
        size = h if grid == "native" else int(grid)
        if m.shape != (size, size):
            m = bilinear(m, size)
        if gt.shape != (size, size):
            gt, ok = nearest(gt, size) > 0.5, nearest(ok, size) > 0.5
        gt, ok = gt > 0, ok > 0
        lab, k = ndimage.label(gt, structure=np.ones((3, 3)))
        keep = ok if domain == "valid" else np.ones_like(ok)
        cells.append(m[keep])
        gts.append(gt[keep])
        regions.append(np.where(lab[keep] > 0, lab[keep] + offset, 0))
        offset += k
    scores, gt, region = np.concatenate(cells), np.concatenate(gts), np.concatenate(regions)
    return {"pixel_auroc": roc_auc_score(gt, scores),
            "pixel_aupr": average_precision_score(gt, scores),
            "aupro": pro_reference(scores, region)}


def point_metrics(samples: list[Sample], preds: list[Prediction]) -> dict[str, float]:
    scores, masks, regions, offset = [], [], [], 0
    for s, p in zip(samples, preds):
        pts = s.points.astype(np.float64)
        d = np.linalg.norm(pts[:, None] - pts[None], axis=-1)
        np.fill_diagonal(d, np.inf)
        nn = d.min(1)
        radius = 2.0 * np.median(nn[nn > 0])
        pos = s.point_mask > 0
        _, lab = connected_components(d[pos][:, pos] < radius, directed=False)
        region = np.zeros(len(pts), np.int64)
        region[pos] = lab + 1 + offset
        offset += int(lab.max()) + 1 if pos.any() else 0
        scores.append(p.point_scores.astype(np.float64))
        masks.append(pos)
        regions.append(region)
    scores, masks, region = np.concatenate(scores), np.concatenate(masks), np.concatenate(regions)
    return {"point_auroc": roc_auc_score(masks, scores),
            "point_aupr": average_precision_score(masks, scores),
            "point_aupro": pro_reference(scores, region)}


def read_rows(run_dir: Path) -> list[dict[str, str]]:
    with open(run_dir / "metrics.csv") as fh:
        return list(csv.DictReader(fh))


def assert_rows_match(rows: list[dict[str, str]], expected: dict[tuple, float]) -> None:
    """Every (test category, evaluation, metric) row equals the independent number, and every
    independent number has its row."""
    got = {(r["test_category"], r["evaluation"], r["metric"]): float(r["value"]) for r in rows}
    assert set(got) == set(expected), sorted(set(got) ^ set(expected))
    for key, value in expected.items():
        assert got[key] == close_to(value, key[1]), key


def close_to(value: float, evaluation: str):
    """Equal on native grids; on resampled grids up to the float32 rounding of the bilinear
    weights (torch may fuse multiply-adds), which can split or merge exact ties of the ramp."""
    if "grid=native" in evaluation:
        return pytest.approx(value, rel=1e-9, abs=1e-12)
    return pytest.approx(value, rel=1e-4, abs=1e-6)


def direct_predictions(dataset, detector_factory, category: str):
    det = detector_factory()
    det.fit(dataset.train(category))
    test = [dataset.test(category)[i] for i in range(len(dataset.test(category)))]
    return test, [det.predict(s) for s in test]


# ---------------------------------------------------------------------------------------------
# end to end on the toy dataset


@pytest.fixture(autouse=True)
def _toy(monkeypatch):
    toy.activate(monkeypatch)
    yield
    toy.unregister()


EVALS = [EvalConfig(grid="native", domain="all"), EvalConfig(grid="224", domain="valid"),
         EvalConfig(grid="336", domain="all")]


@pytest.mark.parametrize("pixel", [True, False], ids=["pixel_scores", "point_scores"])
def test_organized_run_equals_independent_metrics(tmp_path, pixel):
    options = {"organized": True, "categories": 2}
    spec = toy.toy_spec(methods=[{"name": "toy_nn", "args": {"pixel": pixel}}],
                        dataset_options=options, evaluation={"grid": "native"})
    assert not run(spec, out=tmp_path / "run", show_progress=False).failures
    for cfg in EVALS[1:]:
        reevaluate(tmp_path / "run", cfg, show_progress=False)
    ds = toy.ToyDataset(**options)
    expected = {}
    for category in ds.categories:
        test, preds = direct_predictions(ds, lambda: toy.ToyNN(pixel=pixel), category)
        labels = [s.label for s in test]
        assert len(set(labels)) == 2
        for cfg in EVALS:
            numbers = {**image_metrics(labels, [p.score for p in preds]),
                       **organized_metrics(test, preds, cfg.grid, cfg.domain)}
            expected.update({(category, cfg.id, k): v for k, v in numbers.items()})
    assert_rows_match(read_rows(tmp_path / "run"), expected)


def test_unorganized_run_equals_independent_metrics(tmp_path):
    options = {"categories": 2}
    spec = toy.toy_spec(dataset_options=options)
    assert not run(spec, out=tmp_path / "run", show_progress=False).failures
    ds = toy.ToyDataset(**options)
    expected = {}
    for category in ds.categories:
        test, preds = direct_predictions(ds, toy.ToyNN, category)
        numbers = {**image_metrics([s.label for s in test], [p.score for p in preds]),
                   **point_metrics(test, preds)}
        expected.update({(category, EvalConfig().id, k): v for k, v in numbers.items()})
    assert_rows_match(read_rows(tmp_path / "run"), expected)


# ---------------------------------------------------------------------------------------------
# a case small enough to do by hand


HAND_MAPS = {  # id: (label, valid cells, GT, score map, object score)
    "n": (0, [0, 1, 2], [[0, 0], [0, 0]], [[0.1, 0.4], [0.2, 9.0]], 0.45),
    "a": (1, [0, 1, 2, 3], [[1, 0], [0, 0]], [[0.8, 0.3], [0.1, 0.5]], 0.8),
}


class HandDataset:
    """Two 2x2 organized samples: a normal one whose cell (1,1) holds no point (its score 9.0
    only counts over all cells) and an anomalous one with one defective cell."""

    def __init__(self, root: str | None = None) -> None:
        self.name, self.categories, self.root = "hand", ["c"], root

    def fingerprint(self) -> str:
        return "hand-v1"

    def _sample(self, r: Record) -> Sample:
        if r.split == "train":
            label, cells, gt = 0, [0, 1, 2, 3], [[0, 0], [0, 0]]
        else:
            label, cells, gt, _, _ = HAND_MAPS[r.id.rsplit("/", 1)[1]]
        grid = np.zeros((4, 3), np.float32)
        grid[cells] = np.array([[x, y, 1.0] for x, y in ((0, 0), (0, 1), (1, 0), (1, 1))],
                               np.float32)[cells]
        index = np.array(cells, np.int64)
        gt = np.array(gt, np.uint8)
        return Sample(id=r.id, dataset="hand", category="c", split=r.split,
                      defect="bump" if label else "good", points=grid[index], label=label,
                      point_mask=gt.reshape(-1)[index], xyz_grid=grid.reshape(2, 2, 3),
                      grid_index=index, pixel_mask=gt)

    def train(self, category: str) -> SampleSequence:
        return SampleSequence([Record("c/train/t", "c", "train", "", 0)], self._sample)

    def test(self, category: str) -> SampleSequence:
        return SampleSequence([Record(f"c/test/{k}", "c", "test", "", v[0])
                               for k, v in HAND_MAPS.items()], self._sample)


class HandMaps(Detector):
    """Returns the typed-in map and object score of each test sample."""

    modalities = frozenset({"xyz_grid"})

    def __init__(self, seed: int = 0) -> None:
        self.fitted = False

    def fit(self, train) -> None:
        self.fitted = bool(list(train))

    def predict(self, sample: Sample) -> Prediction:
        self.check_fitted(self.fitted)
        _, _, _, smap, score = HAND_MAPS[sample.id.rsplit("/", 1)[1]]
        return Prediction(score=score, pixel_scores=np.array(smap, np.float32))


@pytest.fixture
def hand(monkeypatch):
    DATASETS.register("hand", factory=HandDataset)
    METHODS.register("hand_maps", factory=HandMaps, outputs=("score", "pixel_scores"))
    yield
    DATASETS.unregister("hand")
    METHODS.unregister("hand_maps")


def test_hand_computed_case_on_native_and_resampled_grids(tmp_path, hand):
    spec = toy.toy_spec(methods=["hand_maps"], dataset="hand", evaluation={"grid": "native"})
    assert not run(spec, out=tmp_path / "run", show_progress=False).failures
    for cfg in (EvalConfig(grid="native", domain="valid"), EvalConfig(grid="224", domain="all"),
                EvalConfig(grid="224", domain="valid"), EvalConfig(grid="336", domain="valid")):
        reevaluate(tmp_path / "run", cfg, show_progress=False)
    got = defaultdict(dict)
    for r in read_rows(tmp_path / "run"):
        got[r["evaluation"]][r["metric"]] = float(r["value"])
    native_all, native_valid = got[EvalConfig().id], got[EvalConfig(domain="valid").id]
    # object scores 0.45 (normal) < 0.8 (anomalous)
    assert native_all["image_auroc"] == 1.0 and native_all["image_ap"] == 1.0
    # all 8 cells: the defect (0.8) is beaten only by the empty cell's 9.0 -> 6 of 7 negatives
    assert native_all["pixel_auroc"] == pytest.approx(6 / 7, abs=1e-12)
    assert native_all["pixel_aupr"] == pytest.approx(0.5, abs=1e-12)  # precision 1/2 at recall 1
    # PRO: FPR 1/7 at overlap 0, then overlap 1 at the same FPR: area (0.3 - 1/7) over 0.3
    assert native_all["aupro"] == pytest.approx((0.3 - 1 / 7) / 0.3, abs=1e-12)
    # valid cells only (7): the defect ranks first
    assert native_valid["pixel_auroc"] == 1.0 and native_valid["pixel_aupr"] == 1.0
    assert native_valid["aupro"] == pytest.approx(1.0, abs=1e-12)
    # resampled grids: each native cell is a block of the grid; the valid domain drops the
    # block of the empty cell, the bilinear ramp spreads 9.0 and 0.8 over the block borders
    test = [HandDataset()._sample(Record(f"c/test/{k}", "c", "test", "", v[0]))
            for k, v in HAND_MAPS.items()]
    det = HandMaps()
    det.fit(HandDataset().train("c"))
    preds = [det.predict(s) for s in test]
    for grid, domain in (("224", "all"), ("224", "valid"), ("336", "valid")):
        numbers = organized_metrics(test, preds, grid, domain)
        for name, value in numbers.items():
            cfg = EvalConfig(grid=grid, domain=domain)
            assert got[cfg.id][name] == close_to(value, cfg.id), (grid, domain, name)
    # the empty block's high scores count over all cells only
    assert got[EvalConfig(grid="224").id]["pixel_auroc"] < \
        got[EvalConfig(grid="224", domain="valid").id]["pixel_auroc"]


def test_resampling_reference_on_a_hand_example():
    """The independent resize itself, against values worked out by hand."""
    m = np.array([[0.0, 1.0], [2.0, 3.0]])
    up = bilinear(m, 4)  # source coordinates -0.25 (clamped), 0.25, 0.75, 1.25 (clamped)
    np.testing.assert_allclose(up[0], [0.0, 0.25, 0.75, 1.0])
    np.testing.assert_allclose(up[:, 0], [0.0, 0.5, 1.5, 2.0])
    np.testing.assert_array_equal(nearest(m, 4), [[0, 0, 1, 1], [0, 0, 1, 1],
                                                  [2, 2, 3, 3], [2, 2, 3, 3]])
    # a normal cell first (FPR 1/2, overlap 0), then the defect (overlap 1), then FPR 1
    scores, region = np.array([0.9, 0.5, 0.1]), np.array([0, 1, 0])
    assert pro_reference(scores, region, limit=0.3) == 0.0
    assert math.isclose(pro_reference(scores, region, limit=1.0), 0.5)
