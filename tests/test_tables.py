"""Tables: aggregation per protocol, mean +- std over seeds, formats, paper layout, compare."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import yaml

from benchmark.cli import main
from benchmark.report.tables import (
    compare,
    compare_text,
    load_metrics,
    load_paper_table,
    ours_in_paper_layout,
    paper_tables,
    render_run,
    run_tables,
)
from benchmark.run.runner import METRICS_COLUMNS
from benchmark.run.spec import EvalConfig

EVAL = EvalConfig().id


def _write_run(folder: Path, rows: list[dict]) -> Path:
    folder.mkdir(parents=True)
    (folder / "manifest.json").write_text(json.dumps({"config": {"evaluation": {}}, "jobs": []}))
    with open(folder / "metrics.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=METRICS_COLUMNS)
        w.writeheader()
        for r in rows:
            full = {"preset": r["method"], "dataset": "mvtec3d", "train_dataset": "mvtec3d",
                    "variant": "exact", "evaluation": EVAL, "uses_test_statistics": 0,
                    "job": f"{r['method']}-{r['train_category']}-{r['seed']}", **r}
            w.writerow(full)
    return folder


def _one_class_rows():
    rows = []
    values = {("m1", "bagel"): (0.90, 0.80), ("m1", "foam"): (0.70, 0.70),
              ("m2", "bagel"): (0.50, 0.50), ("m2", "foam"): (1.00, 1.00)}
    for (method, cat), per_seed in values.items():
        for seed, v in enumerate(per_seed):
            rows.append({"method": method, "protocol": "one_class", "train_category": cat,
                         "test_category": cat, "seed": seed, "metric": "image_auroc",
                         "value": v})
    return rows


def test_one_class_table_mean_and_std_over_seeds(tmp_path):
    run = _write_run(tmp_path / "run", _one_class_rows())
    [table] = run_tables(load_metrics(run)).values()
    assert list(table.columns) == ["method", "bagel", "foam", "Mean"]
    m1 = table.iloc[0].tolist()
    # bagel: mean 85.0, sample std of (90, 80) = 7.07; Mean per seed = (80, 75) -> 77.5 +- 3.5
    assert m1 == ["m1", "85.0 \u00b1 7.1", "70.0 \u00b1 0.0", "77.5 \u00b1 3.5"]
    text = render_run(run)
    assert "| m2     | 50.0 \u00b1 0.0" in text and "I-AUROC" in text
    latex = render_run(run, fmt="latex")
    assert r"\begin{tabular}{lccc}" in latex and r"$\pm$" in latex
    lines = render_run(run, fmt="csv").splitlines()
    assert lines[0] == "method,bagel,foam,Mean,dataset,protocol,metric" and len(lines) == 3


def test_one_table_per_dataset(tmp_path):
    rows = _one_class_rows() + [dict(r, dataset="eyecandies", value=0.25)
                                for r in _one_class_rows()]
    text = render_run(_write_run(tmp_path / "run", rows))
    assert "- mvtec3d / one_class" in text and "- eyecandies / one_class" in text
    assert "| m1     | 25.0 \u00b1 0.0 | 25.0 \u00b1 0.0 | 25.0 \u00b1 0.0 |" in text


def test_zero_shot_columns_average_over_aux_and_mean_over_trials(tmp_path):
    v = {("a", "b"): 0.6, ("a", "c"): 0.8, ("a", "d"): 1.0,
         ("b", "a"): 0.5, ("b", "c"): 0.6, ("b", "d"): 0.7}
    rows = [{"method": "zs", "protocol": "zero_shot", "train_category": tr, "test_category": te,
             "seed": 0, "metric": "aupro", "value": val} for (tr, te), val in v.items()]
    run = _write_run(tmp_path / "run", rows)
    [table] = run_tables(load_metrics(run)).values()
    row = dict(zip(table.columns, table.iloc[0]))
    assert row["a"] == "50.0" and row["b"] == "60.0"
    assert row["c"] == "70.0" and row["d"] == "85.0"
    assert row["Mean"] == "70.0"  # mean over aux of (80.0, 60.0)


def test_zero_shot_pairs_columns_are_training_classes(tmp_path):
    v = {("a", "b"): 0.2, ("a", "c"): 0.4, ("b", "a"): 0.9, ("b", "c"): 0.7,
         ("c", "a"): 0.5, ("c", "b"): 0.5}
    rows = [{"method": "zsp", "protocol": "zero_shot_pairs", "train_category": tr,
             "test_category": te, "seed": 0, "metric": "image_auroc", "value": val}
            for (tr, te), val in v.items()]
    run = _write_run(tmp_path / "run", rows)
    [table] = run_tables(load_metrics(run)).values()
    assert table.iloc[0].tolist() == ["zsp", "30.0", "80.0", "50.0", "53.3"]


def _paper(tmp_path: Path) -> Path:
    root = tmp_path / "paper"
    (root / "toypaper").mkdir(parents=True)
    (root / "toypaper" / "table1.csv").write_text(
        "method,metric,Bagel,Foam,Mean\n"
        "Method One,I-AUROC,**84.0**,70.0,77.0\n"
        "Method Two,I-AUROC,50.0,99.5,74.8\n"
        "Other,I-AUROC,-,60.1,-\n")
    (root / "toypaper" / "table1.meta.yaml").write_text(yaml.safe_dump({
        "paper": "toypaper", "table": "table1", "caption": "Toy table", "dataset": "mvtec3d",
        "protocol": "one_class", "metrics": {"I-AUROC": "image_auroc"}, "scale": 100,
        "row_keys": ["method", "metric"], "category_map": {"Bagel": "bagel", "Foam": "foam"},
        "method_map": {"Method One": "m1", "Method Two": "m2", "Other": None}}))
    return root


def test_paper_layout_and_compare(tmp_path):
    run = _write_run(tmp_path / "run", _one_class_rows())
    paper = load_paper_table("toypaper:table1", root=_paper(tmp_path))
    assert paper_tables(tmp_path / "paper") == ["toypaper:table1"]
    ours = ours_in_paper_layout(run, paper)
    assert ours.iloc[0].tolist() == ["Method One", "I-AUROC", "85.0 \u00b1 7.1",
                                     "70.0 \u00b1 0.0", "77.5 \u00b1 3.5"]
    assert ours.iloc[2].tolist()[2:] == ["", "", ""]  # a paper-only row stays empty
    cmp = compare(run, paper)
    assert len(cmp) == 6  # 2 mapped rows x 3 columns
    one = cmp[(cmp["method"] == "Method One") & (cmp["column"] == "Bagel")].iloc[0]
    assert (one["paper"], one["ours"], one["diff"], one["seeds"]) == ("84.0", "85.0", "+1.0", 2)
    mean2 = cmp[(cmp["method"] == "Method Two") & (cmp["column"] == "Mean")].iloc[0]
    assert (mean2["ours"], mean2["diff"]) == ("75.0", "+0.2")
    text = compare_text(run, paper)
    assert "6 cells compared" in text and "Toy table" in text


def test_tables_and_compare_commands(tmp_path, capsys, monkeypatch):
    import benchmark.report.tables as tables

    run = _write_run(tmp_path / "run", _one_class_rows())
    monkeypatch.setattr(tables, "PAPER_ROOT", _paper(tmp_path))
    assert main(["tables", "--run", str(run), "--format", "md"]) == 0
    assert "85.0 \u00b1 7.1" in capsys.readouterr().out
    assert main(["tables", "--run", str(run), "--paper", "toypaper:table1"]) == 0
    out = capsys.readouterr().out
    assert "(ours, paper layout)" in out and "**84.0**" in out and "+1.0" in out
    assert main(["compare", "--run", str(run), "--paper", "toypaper:table1",
                 "--format", "csv"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == ("method,metric,column,paper,ours,ours_std,seeds,categories,"
                                   "diff")
    assert main(["tables", "--paper", "toypaper:table9"]) == 2
    assert "table1" in capsys.readouterr().err


def _has_numbers(paper) -> bool:
    return bool(paper.meta.get("metrics") or paper.meta.get("metric"))


def test_real_paper_tables_load_when_transcribed():
    refs = paper_tables()
    assert len(refs) >= 30  # PointAD+, 3DzAL, IMRNet, Group3AD
    for ref in refs:
        paper = load_paper_table(ref)
        assert all(k in paper.frame.columns for k in paper.row_keys), ref
        if not _has_numbers(paper):
            continue
        assert paper.value_columns(), ref
        for _, row in paper.frame.iterrows():
            if (paper.meta.get("method_map") or {}).get(row["method"]):
                assert any(paper.query(row, c) for c in paper.value_columns()), (ref, row)


def test_compare_against_a_transcribed_table_with_typed_numbers(tmp_path):
    """Our numbers typed here for Reg3D-AD on two Real3D-AD classes, two seeds, against Group3AD
    Table 1 (O-AUROC, printed Airplane 0.716, Car 0.697, Average 0.704)."""
    rows = []
    for seed, (airplane, car) in enumerate([(0.70, 0.50), (0.80, 0.60)]):
        for category, value in (("airplane", airplane), ("car", car)):
            rows.append({"method": "reg3dad", "protocol": "one_class", "dataset": "real3d",
                         "train_dataset": "real3d", "train_category": category,
                         "test_category": category, "seed": seed, "metric": "image_auroc",
                         "value": value})
    rows.append({**rows[0], "metric": "point_auroc", "value": 0.99})  # another metric: unused
    run = _write_run(tmp_path / "run", rows)
    paper = load_paper_table("group3ad:table1")
    strict = compare(run, paper, evaluation=EVAL)
    assert set(strict["column"]) == {"Airplane", "Car"}  # a 2-of-12 mean is not the Average
    cmp = compare(run, paper, evaluation=EVAL, allow_partial=True)
    got = {r["column"]: (r["method"], r["paper"], r["ours"], r["ours_std"], r["seeds"], r["diff"])
           for _, r in cmp.iterrows()}
    # ours = mean over seeds; std = sample std of (0.70, 0.80) = 0.0707; Average = mean over
    # seeds of the per-seed class means (0.60, 0.70)
    assert got == {
        "Airplane": ("Reg3D-AD", "0.716", "0.750", "0.071", 2, "+0.034"),
        "Car": ("Reg3D-AD", "0.697", "0.550", "0.071", 2, "-0.147"),
        "Average": ("Reg3D-AD", "0.704", "0.650", "0.071", 2, "-0.054"),
    }


def test_regenerate_runs_the_spec_then_compares(tmp_path, capsys, monkeypatch):
    import test_runner_fixtures as toy

    import benchmark.report.tables as tables

    toy.activate(monkeypatch)
    try:
        root = tmp_path / "paper" / "toypaper"
        root.mkdir(parents=True)
        (root / "t2.csv").write_text("method,Alpha,Beta,Mean\nNN,100.0,100.0,100.0\nX,1,2,3\n")
        (root / "t2.meta.yaml").write_text(yaml.safe_dump({
            "paper": "toypaper", "table": "t2", "caption": "toy", "dataset": "toy",
            "protocol": "one_class", "metric": "image_auroc", "scale": 100,
            "row_keys": ["method"], "category_map": {"Alpha": "alpha", "Beta": "beta"},
            "mean_column": "Mean", "method_map": {"NN": "toy_nn", "X": None}}))
        (root / "t2.yaml").write_text(yaml.safe_dump({
            "name": "toypaper_t2", "methods": ["toy_nn"], "dataset": "toy", "root": None,
            "protocol": "one_class", "categories": ["alpha", "beta"], "seeds": [0],
            "evaluation": {"grid": "native"}, "plugins": ["test_runner_fixtures"]}))
        monkeypatch.setattr(tables, "PAPER_ROOT", tmp_path / "paper")
        monkeypatch.setenv("BENCHMARK_RUNS", str(tmp_path / "runs"))
        assert main(["tables", "--paper", "toypaper:t2", "--regenerate"]) == 0
        out = capsys.readouterr().out
        assert (tmp_path / "runs" / "toypaper_t2" / "metrics.csv").is_file()
        assert "(ours, paper layout)" in out and "3 cells compared" in out
        assert "| NN     | 100.0 | 100.0 | 100.0 |" in out
    finally:
        toy.unregister()


def test_paper_run_specs_parse():
    from benchmark.run.spec import load_spec

    specs = sorted(tables_root().glob("*/*.yaml"))
    specs = [p for p in specs if not p.name.endswith(".meta.yaml")]
    assert specs
    for path in specs:
        spec = load_spec(path)
        assert spec.methods and spec.datasets, path


def tables_root() -> Path:
    import benchmark.report.tables as tables

    return tables.PAPER_ROOT
