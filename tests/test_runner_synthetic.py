"""End to end on the real synthetic dataset (registry `synthetic`) with the in-test detector."""

from __future__ import annotations

import csv

import pytest
import test_runner_fixtures as toy

from benchmark.report.tables import render_run
from benchmark.run.runner import run


@pytest.fixture(autouse=True)
def _registered(monkeypatch):
    toy.activate(monkeypatch)
    yield
    toy.unregister()


@pytest.mark.parametrize("fmt,protocol", [("mvtec3d", "one_class"),
                                          ("real3d", "zero_shot_pairs")])
def test_synthetic_end_to_end(tmp_path, fmt, protocol):
    spec = toy.toy_spec(dataset="synthetic", protocol=protocol,
                        dataset_options={"format": fmt, "categories": 2},
                        evaluation={"grid": "224"} if fmt == "mvtec3d" else {})
    s = run(spec, out=tmp_path / "run")
    assert not s.failures, s.report()
    with open(tmp_path / "run" / "metrics.csv") as fh:
        rows = list(csv.DictReader(fh))
    metrics = {r["metric"] for r in rows}
    if fmt == "mvtec3d":
        assert {"image_auroc", "pixel_auroc", "aupro"} <= metrics
        assert all("grid=224" in r["variant"] for r in rows if r["metric"] == "aupro")
    else:
        assert {"image_auroc", "point_auroc", "point_aupr"} <= metrics
    values = [float(r["value"]) for r in rows if r["metric"] == "image_auroc"]
    assert values and all(0.0 <= v <= 1.0 for v in values)
    assert "| toy_nn |" in render_run(tmp_path / "run")


UNORGANIZED = ("real3d", "anomaly_shapenet")


class TinyDataset:
    """Two categories of the conformance suite's 48x48 samples (benchmark.conformance): two
    normal train samples, test = one normal and two clearly anomalous ones; unorganized (points
    only, as Real3D-AD) with ``organized=False``."""

    def __init__(self, organized: bool = True, root: str | None = None) -> None:
        self.name, self.organized, self.root = "tiny", bool(organized), root
        self.categories = ["bagel", "cookie"]

    def fingerprint(self) -> str:
        return f"tiny-{self.organized}-v1"

    def _load(self, record):
        from benchmark.conformance import strip_to_modalities, synthetic_sample

        i = int(record.id.rsplit("/", 1)[1])
        sample = synthetic_sample(i + 10 * self.categories.index(record.category), record.label,
                                  category=record.category, split=record.split)
        return sample if self.organized else strip_to_modalities(sample, {"points"})

    def _split(self, category: str, split: str, labels: list[int]):
        from benchmark.dataset import Record, SampleSequence

        return SampleSequence([Record(f"{category}/{split}/{i}", category, split, "", label)
                               for i, label in enumerate(labels)], self._load)

    def train(self, category: str):
        return self._split(category, "train", [0, 0])

    def test(self, category: str):
        return self._split(category, "test", [0, 1, 1])


@pytest.fixture
def tiny():
    from benchmark.registry import DATASETS

    DATASETS.register("tiny", factory=TinyDataset)
    yield
    DATASETS.unregister("tiny")


def _method_cases() -> list[str]:
    from benchmark.registry import METHODS

    return [n for n in METHODS.names() if not n.startswith("toy_")]


@pytest.mark.parametrize("method", _method_cases())
def test_every_registered_method_runs_through_the_runner(tmp_path, tiny, method):
    """Each preset with its tiny smoke arguments, one trial on tiny synthetic data (organized, or
    unorganized when the first dataset it supports is), under its natural protocol (zero-shot
    learners get labelled aux data); the weight-free presets rank the clear anomalies first."""
    from benchmark.conformance import needs_weights
    from benchmark.registry import METHODS

    entry = METHODS.get(method)
    options = {"organized": next(iter(entry.datasets), "mvtec3d") not in UNORGANIZED}
    fields = {"protocol": "one_class", "categories": ["bagel"]}
    if entry.learning == "zero_shot":
        fields = {"protocol": "zero_shot", "aux_categories": ["bagel"], "categories": ["cookie"]}
    spec = toy.toy_spec(methods=[{"name": method, "args": dict(entry.smoke)}],
                        dataset="tiny", dataset_options=options, **fields)
    s = run(spec, out=tmp_path / "run", show_progress=False)
    assert not s.failures, s.report()
    assert len(s.jobs) == 1
    with open(tmp_path / "run" / "metrics.csv") as fh:
        rows = {r["metric"]: float(r["value"]) for r in csv.DictReader(fh)}
    dense = {"pixel_auroc", "aupro"} if options["organized"] else {"point_auroc", "point_aupr"}
    assert {"image_auroc", "image_ap"} | dense <= set(rows), sorted(rows)
    if not needs_weights(entry):
        assert rows["image_auroc"] == 1.0
