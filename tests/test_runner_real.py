"""The runner on real files: the Eyecandies CandyCane slice in ../shared/data (skips without)."""

from __future__ import annotations

import csv

import pytest
import test_runner_fixtures as toy

from benchmark.report.export import export_run
from benchmark.run.runner import reevaluate, run
from benchmark.run.spec import EvalConfig


@pytest.fixture(autouse=True)
def _registered(monkeypatch):
    toy.activate(monkeypatch)
    yield
    toy.unregister()


def test_eyecandies_run_reevaluate_export(tmp_path, shared_data):
    spec = toy.toy_spec(dataset="eyecandies", root=str(shared_data / "eyecandies"))
    s = run(spec, out=tmp_path / "run")
    assert not s.failures, s.report()
    assert reevaluate(tmp_path / "run", EvalConfig(grid="224", domain="valid",
                                                   aupro_mode="mvtec3d_sampled")) == 1
    with open(tmp_path / "run" / "metrics.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert {r["test_category"] for r in rows} == {"CandyCane"}
    aupro = {r["variant"]: float(r["value"]) for r in rows if r["metric"] == "aupro"}
    assert len(aupro) == 2 and all(0.0 <= v <= 1.0 for v in aupro.values())
    assert any("grid=224" in v and "domain=valid" in v for v in aupro)
    files = export_run(tmp_path / "run", tmp_path / "viz", limit=1, render_size=64)
    assert sum(f.suffix == ".ply" for f in files) == 1
    assert any(f.name.endswith("_overlay.png") for f in files)


def _one_class_presets_for(dataset: str) -> list[str]:
    import methods  # noqa: F401 - registers the presets
    from benchmark.registry import METHODS

    return [n for n in METHODS.names() if not n.startswith("toy_")
            and METHODS.get(n).learning == "one_class" and dataset in METHODS.get(n).datasets]


@pytest.mark.parametrize("method", _one_class_presets_for("eyecandies"))
def test_one_class_presets_run_on_real_eyecandies_files(tmp_path, shared_data, method):
    """Every one-class preset that declares Eyecandies support, with its smoke arguments, on the
    real CandyCane slice (depth PNG -> organized xyz; the point methods read sample.points): no
    failed job, and every image and pixel metric present and in [0, 1]."""
    from test_conformance import extra_args

    from benchmark.registry import METHODS

    args = {**METHODS.get(method).smoke, **extra_args(method)}
    spec = toy.toy_spec(methods=[{"name": method, "args": args}], dataset="eyecandies",
                        root=str(shared_data / "eyecandies"))
    s = run(spec, out=tmp_path / "run", show_progress=False)
    assert not s.failures, s.report()
    with open(tmp_path / "run" / "metrics.csv") as fh:
        rows = {r["metric"]: float(r["value"]) for r in csv.DictReader(fh)}
    assert {"image_auroc", "image_ap", "pixel_auroc", "aupro", "pixel_aupr"} <= set(rows)
    assert all(0.0 <= rows[m] <= 1.0 for m in ("image_auroc", "pixel_auroc", "aupro")), rows
