"""Perf suite "report": writing the HTML report (`python -m benchmark report`) of a run the size of
the default `make bench` (the synthetic dataset with its default options: 4 categories, 7 test
samples of ~9k points each, one seed). The run itself is made with a nearest-neighbour scorer
registered here for the suite (the report's cost depends on the data and the stored maps, not on
the method). Rows: the default report (every 3D viewer, the gallery's renders/overlays and PLYs)
and the tables/curves/histograms alone. ``quick=True``: one category."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from benchmark.perf import peak_rss_mb, suite

NAME = "_perf_report_nn"


def _register() -> None:
    from scipy.spatial import cKDTree

    from benchmark.detector import Detector
    from benchmark.registry import METHODS
    from benchmark.sample import Prediction, Sample

    class NearestNeighbour(Detector):
        """Score of a point: distance to the nearest training point; sample score: the max."""

        modalities = frozenset({"points"})
        learning = "one_class"

        def __init__(self, seed: int = 0) -> None:
            self.seed = seed
            self.tree: cKDTree | None = None

        def fit(self, train: Iterable[Sample]) -> None:
            self.tree = cKDTree(np.concatenate([s.points for s in train]))

        def predict(self, sample: Sample) -> Prediction:
            d, _ = self.tree.query(sample.points)
            return Prediction(score=float(d.max()), point_scores=d.astype(np.float32))

    if NAME not in METHODS._entries:
        METHODS.register(NAME, factory=NearestNeighbour, summary="perf: nearest neighbour",
                         learning="one_class", outputs=("point_scores",))


def _folder_stats(folder: Path) -> tuple[int, int, float]:
    files = [p for p in folder.rglob("*") if p.is_file()]
    pages = sum(p.suffix == ".html" for p in files)
    return len(files), pages, sum(p.stat().st_size for p in files) / 1e6


@suite("report")
def report(quick: bool = False) -> list[dict]:
    from benchmark.registry import METHODS
    from benchmark.report.site import ReportOptions, write_report
    from benchmark.run.runner import run
    from benchmark.run.spec import spec_from_dict

    _register()
    rows = []
    try:
        with tempfile.TemporaryDirectory(prefix="perf-report-") as tmp:
            data = {"methods": [NAME], "dataset": "synthetic"}
            if quick:
                data["dataset_options"] = {"categories": 1}
            t0 = time.perf_counter()
            summary = run(spec_from_dict(data), out=Path(tmp) / "run", show_progress=False)
            n_categories = sum(len(j.test_categories) for j in summary.jobs)
            rows.append({"step": "make the run (not the report)", "jobs": len(summary.jobs),
                         "categories": n_categories, "seconds": time.perf_counter() - t0})
            for label, opts in (("report, defaults (all 3D viewers)", ReportOptions()),
                                ("report, tables + curves only",
                                 ReportOptions(viewers="none", ply="none", gallery=0))):
                out = Path(tmp) / label.split(",")[1].strip().split()[0]
                t0, c0 = time.perf_counter(), time.process_time()
                write_report(Path(tmp) / "run", out, opts)
                sec, cpu = time.perf_counter() - t0, time.process_time() - c0
                files, pages, mb = _folder_stats(out)
                rows.append({"step": label, "jobs": len(summary.jobs), "categories": n_categories,
                             "seconds": sec, "cpu_seconds": cpu, "pages": pages, "files": files,
                             "size_mb": mb, "peak_rss_mb": peak_rss_mb()})
    finally:
        METHODS.unregister(NAME)
    return rows
