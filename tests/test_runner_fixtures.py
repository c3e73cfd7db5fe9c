"""A small in-memory dataset and nearest-neighbour detectors for the runner tests.

`activate(monkeypatch)` registers them (idempotently) for one test: ``toy`` (dataset; option
``organized=True`` for organized samples), ``toy_nn`` (one-class detector: distance of each point
to the nearest training point) and ``toy_zs`` (zero-shot detector fit on labelled data). Worker
processes import it through the run spec's ``plugins`` (``--plugin test_runner_fixtures``), so
the tests put ``tests/`` on PYTHONPATH.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from scipy.spatial import cKDTree

from benchmark.dataset import SampleSequence
from benchmark.detector import Detector
from benchmark.errors import DatasetError
from benchmark.registry import DATASETS, METHODS
from benchmark.sample import Prediction, Sample
from benchmark.timing import StageTimer

GRID = 12
CATEGORIES = ("alpha", "beta", "gamma", "delta")


class ToyDataset:
    """Spheres of a per-category radius; anomalies are outward bumps marked in the masks."""

    def __init__(self, organized: bool = False, n_train: int = 3, n_test: int = 4, seed: int = 0,
                 categories: int | None = None, root: str | None = None) -> None:
        self.name = "toy"
        self.organized = bool(organized)
        self.n_train, self.n_test, self.seed = n_train, n_test, seed
        self.categories = list(CATEGORIES[: categories or len(CATEGORIES)])
        self.root = root

    def fingerprint(self) -> str:
        text = json.dumps([self.organized, self.n_train, self.n_test, self.seed, self.categories])
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def describe(self):
        import pandas as pd

        return pd.DataFrame([{"category": c, "train": self.n_train, "test": self.n_test}
                             for c in self.categories])

    def _sample(self, category: str, split: str, i: int) -> Sample:
        if category not in self.categories:
            raise DatasetError(f"toy: unknown category {category!r}")
        c = self.categories.index(category)
        rng = np.random.default_rng([self.seed, c, 0 if split == "train" else 1, i])
        label = int(split == "test" and i % 2 == 1)
        u = (np.arange(GRID) + 0.5) / GRID
        theta, phi = np.meshgrid(u * np.pi, u * 2 * np.pi, indexing="ij")
        dirs = np.stack([np.sin(theta) * np.cos(phi), np.sin(theta) * np.sin(phi),
                         np.cos(theta)], -1).reshape(-1, 3)
        radius = 1.0 + 0.5 * c + rng.normal(0, 0.01, len(dirs))
        mask = np.zeros(len(dirs), np.uint8)
        if label:
            centre = dirs[rng.integers(len(dirs))]
            mask = (dirs @ centre > 0.93).astype(np.uint8)
            radius = radius + 0.3 * mask
        pts = (dirs * radius[:, None]).astype(np.float32)
        sid = f"{category}/{split}/{i:03d}"
        if not self.organized:
            return Sample(id=sid, dataset="toy", category=category, split=split,
                          defect="bump" if label else "good", points=pts, label=label,
                          point_mask=mask)
        valid = np.ones(GRID * GRID, bool)
        valid[rng.choice(GRID * GRID, 10, replace=False)] = False
        valid[mask.astype(bool)] = True
        index = np.flatnonzero(valid).astype(np.int64)
        grid = np.zeros((GRID * GRID, 3), np.float32)
        grid[index] = pts[index]
        pix = np.zeros(GRID * GRID, np.uint8)
        pix[index] = mask[index]
        rgb = np.full((GRID, GRID, 3), 40 * c, np.uint8)
        return Sample(id=sid, dataset="toy", category=category, split=split,
                      defect="bump" if label else "good", points=pts[index], label=label,
                      point_mask=mask[index], xyz_grid=grid.reshape(GRID, GRID, 3),
                      grid_index=index, rgb=rgb, pixel_mask=pix.reshape(GRID, GRID))

    def _split(self, category: str, split: str, n: int) -> SampleSequence:
        from benchmark.dataset import Record

        if category not in self.categories:
            raise DatasetError(f"toy: unknown category {category!r}")
        records = [Record(f"{category}/{split}/{i:03d}", category, split, "", 0)
                   for i in range(n)]
        return SampleSequence(records, lambda r: self._sample(r.category, r.split,
                                                              int(r.id.rsplit("/", 1)[1])))

    def train(self, category: str) -> SampleSequence:
        return self._split(category, "train", self.n_train)

    def validation(self, category: str):
        raise DatasetError("toy: no validation split")

    def test(self, category: str) -> SampleSequence:
        return self._split(category, "test", self.n_test)


def _log(path: str | None, record: dict) -> None:
    if path:
        with open(path, "a") as fh:
            fh.write(json.dumps(record) + "\n")


class ToyNN(Detector):
    """Score of a point = distance to the nearest training point; object score = max."""

    modalities = frozenset({"points"})
    learning = "one_class"

    def __init__(self, seed: int = 0, fit_log: str | None = None, fail_on: str | None = None,
                 sleep: float = 0.0, pixel: bool = False, noise: float = 0.0,
                 test_stats: bool = False) -> None:
        self.seed, self.fit_log, self.fail_on = seed, fit_log, fail_on
        self.sleep, self.pixel, self.noise = sleep, pixel, noise
        self.uses_test_statistics = test_stats
        self.tree: cKDTree | None = None
        self.rng = np.random.default_rng(seed)
        self.timer = StageTimer()

    def fit(self, train: Iterable[Sample]) -> None:
        samples = list(train)
        cats = sorted({s.category for s in samples})
        _log(self.fit_log, {"pid": os.getpid(), "categories": cats,
                            "splits": sorted({s.split for s in samples}),
                            "labels": sorted({s.label for s in samples}), "seed": self.seed})
        if self.fail_on in cats:
            raise RuntimeError(f"toy detector told to fail on {self.fail_on}")
        normal = [s.points for s in samples if s.label == 0] or [s.points for s in samples]
        self.tree = cKDTree(np.concatenate(normal))

    def predict(self, sample: Sample) -> Prediction:
        if self.sleep:
            time.sleep(self.sleep)
        with self.timer("query"):
            d, _ = self.tree.query(sample.points)
        d = d + self.rng.normal(0, self.noise, len(d)) if self.noise else d
        ps = d.astype(np.float32)
        if self.pixel and sample.organized:
            h, w = sample.grid_shape
            grid = np.zeros(h * w, np.float32)
            grid[sample.grid_index] = ps
            return Prediction(score=float(ps.max()), pixel_scores=grid.reshape(h, w))
        return Prediction(score=float(ps.max()), point_scores=ps)


class ToyZeroShot(ToyNN):
    """The same scorer, declared zero-shot (so zero-shot protocols hand it labelled data)."""

    learning = "zero_shot"



def register() -> None:
    if "toy" not in DATASETS._entries:
        DATASETS.register("toy", factory=ToyDataset, summary="in-memory test dataset")
    if "toy_nn" not in METHODS._entries:
        METHODS.register("toy_nn", factory=ToyNN, summary="test: nearest-neighbour distance",
                         learning="one_class", outputs=("point_scores",))
    if "toy_zs" not in METHODS._entries:
        METHODS.register("toy_zs", factory=ToyZeroShot, summary="test: zero-shot NN",
                         learning="zero_shot", outputs=("point_scores",))


def unregister() -> None:
    for name in ("toy_nn", "toy_zs"):
        METHODS.unregister(name)
    DATASETS.unregister("toy")


def read_log(path: str | Path) -> list[dict]:
    p = Path(path)
    return [json.loads(line) for line in p.read_text().splitlines()] if p.exists() else []


AUTOREGISTER = "BENCHMARK_TOY_AUTOREGISTER"


def activate(monkeypatch) -> None:
    """Registers the toy entries for one test, and in every worker process it starts."""
    monkeypatch.setenv(AUTOREGISTER, "1")
    register()


# worker processes (spawned pools, submitit jobs, CLI subprocesses) import this module as a
# plugin; the pytest process itself registers only inside tests (see `activate`), so the toy
# entries never show up in other test files' registries
if os.environ.get(AUTOREGISTER) == "1":
    register()


def toy_spec(**fields):
    """A RunSpec over the toy dataset that loads this module in workers."""
    from benchmark.run.spec import spec_from_dict

    data = {"methods": ["toy_nn"], "dataset": "toy", "plugins": ["test_runner_fixtures"]}
    data.update(fields)
    return spec_from_dict(data)
