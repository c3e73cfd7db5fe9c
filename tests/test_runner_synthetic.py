"""End to end on the real synthetic dataset (registry `synthetic`) with the in-test detector."""

from __future__ import annotations

import csv

import pytest
import test_runner_fixtures as toy

from benchmark.registry import DATASETS
from benchmark.report.tables import render_run
from benchmark.run.runner import run


@pytest.fixture(autouse=True)
def _registered(monkeypatch):
    if "synthetic" not in DATASETS:
        pytest.skip("the synthetic dataset is not available")
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


FORMATS = ("mvtec3d", "eyecandies", "real3d", "anomaly_shapenet")


def _method_cases() -> list[str]:
    from benchmark.registry import METHODS

    return [n for n in METHODS.names() if not n.startswith("toy_")]


@pytest.mark.slow
@pytest.mark.parametrize("method", _method_cases())
def test_every_registered_method_runs_through_the_runner(tmp_path, method):
    """Each preset with its tiny smoke arguments, one trial on the synthetic dataset in the first
    format it supports, under its natural protocol (zero-shot learners get labelled aux data)."""
    from benchmark.registry import METHODS
    from benchmark.run.spec import open_dataset

    entry = METHODS.get(method)
    fmt = next((d for d in entry.datasets if d in FORMATS), "mvtec3d")
    options = {"format": fmt, "categories": 2}
    first, second = open_dataset("synthetic", None, options).categories[:2]
    fields = {"protocol": "one_class", "categories": [first]}
    if entry.learning == "zero_shot":
        fields = {"protocol": "zero_shot", "aux_categories": [first], "categories": [second]}
    spec = toy.toy_spec(methods=[{"name": method, "args": dict(entry.smoke)}],
                        dataset="synthetic", dataset_options=options, **fields)
    s = run(spec, out=tmp_path / "run")
    assert not s.failures, s.report()
    assert len(s.jobs) == 1
    assert "image_auroc" in (tmp_path / "run" / "metrics.csv").read_text()
