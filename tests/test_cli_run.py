"""`python -m benchmark run / evaluate / export` through the CLI entry point."""

from __future__ import annotations

import csv

import pytest
import test_runner_fixtures as toy
import yaml

from benchmark.cli import main
from benchmark.run.spec import load_spec


@pytest.fixture(autouse=True)
def _registered(monkeypatch):
    toy.activate(monkeypatch)
    yield
    toy.unregister()


BASE = ["run", "--plugin", "test_runner_fixtures", "--dataset", "toy"]


def _rows(run_dir):
    with open(run_dir / "metrics.csv") as fh:
        return list(csv.DictReader(fh))


def test_run_prints_table_and_reevaluates(tmp_path, capsys):
    out = tmp_path / "run"
    code = main([*BASE, "--method", "toy_nn", "--dataset-option", "organized=true",
                 "--categories", "alpha", "beta", "--seeds", "0", "1", "--set", "noise=0.1",
                 "--out", str(out)])
    assert code == 0
    captured = capsys.readouterr()
    assert "| toy_nn |" in captured.out and "\u00b1" in captured.out and "AUPRO" in captured.out
    assert "4 run, 0 already done, 0 failed" in captured.err
    rows = _rows(out)
    assert {r["seed"] for r in rows} == {"0", "1"} and {r["variant"] for r in rows}
    assert main(["evaluate", "--run", str(out), "--aupro-mode", "mvtec3d_sampled",
                 "--grid", "224", "--domain", "valid"]) == 0
    assert "aupro=mvtec3d_sampled" in capsys.readouterr().out
    rows = _rows(out)
    evaluations = {r["evaluation"] for r in rows}
    assert len(evaluations) == 2
    sampled = [r for r in rows if r["metric"] == "aupro" and "sampled" in r["variant"]]
    assert len(sampled) == 4 and all("grid=224" in r["variant"] for r in sampled)
    # the default evaluation is still the table's default; flags select the other one
    assert main(["tables", "--run", str(out)]) == 0
    assert "aupro=exact" in capsys.readouterr().out
    assert main(["tables", "--run", str(out), "--grid", "224", "--domain", "valid",
                 "--aupro-mode", "mvtec3d_sampled"]) == 0
    assert "aupro=mvtec3d_sampled" in capsys.readouterr().out


def test_failures_give_exit_code_1_and_unknown_names_2(tmp_path, capsys):
    code = main([*BASE, "--method", "toy_nn", "--set", "fail_on=alpha", "--categories",
                 "alpha", "beta", "--out", str(tmp_path / "run")])
    assert code == 1
    err = capsys.readouterr().err
    assert "1 failed" in err and "FAILED" in err
    assert main([*BASE, "--method", "no_such_method", "--out", str(tmp_path / "x")]) == 2
    assert "known methods" in capsys.readouterr().err
    assert main([*BASE, "--method", "toy_nn", "--protocol", "zero_shot",
                 "--out", str(tmp_path / "y")]) == 2
    assert "--aux" in capsys.readouterr().err


def test_spec_file_with_grid_and_overrides(tmp_path, capsys):
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump({
        "name": "specrun", "methods": [{"name": "toy_nn", "grid": {"noise": [0.0, 0.3]}}],
        "dataset": "toy", "protocol": "zero_shot", "aux_categories": ["alpha"],
        "categories": ["alpha", "beta", "gamma"], "seeds": [0],
        "evaluation": {"aupro_limit": 0.1}, "plugins": ["test_runner_fixtures"]}))
    assert [m.label for m in load_spec(spec).methods] == ["toy_nn(noise=0.0)",
                                                          "toy_nn(noise=0.3)"]
    out = tmp_path / "run"
    assert main(["run", "--spec", str(spec), "--seeds", "5", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "toy_nn(noise=0.3)" in text and "seeds [5]" in text
    rows = _rows(out)
    assert {r["test_category"] for r in rows} == {"beta", "gamma"}
    assert all("limit=0.1" in r["variant"] for r in rows if r["metric"] == "aupro")
    bad = tmp_path / "bad.yaml"
    bad.write_text("methods: [toy_nn]\nprotocl: one_class\n")
    assert main(["run", "--spec", str(bad)]) == 2
    assert "unknown field" in capsys.readouterr().err


def test_export_command(tmp_path, capsys):
    out = tmp_path / "run"
    assert main([*BASE, "--method", "toy_nn", "--categories", "gamma", "--out", str(out),
                 "--no-table"]) == 0
    assert main(["export", "--run", str(out), "--out", str(tmp_path / "viz"), "--limit", "1",
                 "--no-png"]) == 0
    printed = capsys.readouterr().out.split()
    assert sum(p.endswith(".ply") for p in printed) == 1
    assert any(p.endswith("pro.png") for p in printed)
