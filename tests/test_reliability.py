"""The results store as a user and an adversarial tester use it (issue 12): a run folder never
loses the user's files, never serves stale results, never drops a method, never hides a missing
category."""

from __future__ import annotations

import importlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import test_runner_fixtures as toy
import yaml

from benchmark.cli import main
from benchmark.errors import ConfigError
from benchmark.registry import Registry
from benchmark.report.tables import (
    compare,
    load_metrics,
    load_paper_table,
    render_run,
    run_tables,
)
from benchmark.run.runner import run
from benchmark.run.spec import expand
from benchmark.run.store import RunStore, StoreError

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent


@pytest.fixture(autouse=True)
def _registered(monkeypatch):
    toy.activate(monkeypatch)
    yield
    toy.unregister()


def _nn(**args):
    return [{"name": "toy_nn", "args": args}]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS), str(REPO), env.get("PYTHONPATH", "")])
    return env


def _tree(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


# --------------------------------------------------------------------------------------------
# 1. a folder that is not a run folder is never touched; clean-up removes only the store's files


def test_out_into_a_user_folder_refuses_and_touches_nothing(tmp_path, capsys):
    user = tmp_path / "project"
    (user / "jobs" / "mine").mkdir(parents=True)
    (user / ".gitlab-ci.yml").write_text("stages: [test]\n")
    (user / ".pre-commit-config.yaml").write_text("repos: []\n")
    (user / "jobs" / "mine" / ".notes.txt").write_text("my notes\n")
    (user / "manifest.json").write_text('{"name": "my web app"}')  # not a run manifest
    before = _tree(user)
    with pytest.raises(StoreError, match="not a run folder"):
        run(toy.toy_spec(categories=["alpha"]), out=user)
    assert _tree(user) == before and not (user / ".lock").exists()
    code = main(["run", "--plugin", "test_runner_fixtures", "--method", "toy_nn", "--dataset",
                 "toy", "--categories", "alpha", "--out", str(user)])
    assert code == 2 and "refusing to write into it" in capsys.readouterr().err
    assert _tree(user) == before
    # an empty folder is fine
    (tmp_path / "empty").mkdir()
    assert len(run(toy.toy_spec(categories=["alpha"]), out=tmp_path / "empty").executed) == 1


def test_clean_up_removes_only_the_store_temporary_names(tmp_path):
    out = tmp_path / "run"
    s = run(toy.toy_spec(categories=["alpha"]), out=out)
    job = out / "jobs" / s.jobs[0].key
    keep = [out / ".my.settings.yaml", job / ".notes.txt", out / ".gitignore"]
    for p in keep:
        p.write_text("mine\n")
    stale = [out / ".metrics.csv.k2j4_x9q", job / ".scores.npz.abcd1234"]
    for p in stale:
        p.write_bytes(b"half")
    run(toy.toy_spec(categories=["alpha"]), out=out, force=True)
    assert all(p.read_text() == "mine\n" for p in keep)
    assert not any(p.exists() for p in stale)


# --------------------------------------------------------------------------------------------
# 2. job keys follow the data's content and the code's source


@pytest.fixture(scope="module")
def real3d_tree(tmp_path_factory) -> Path:
    from benchmark.registry import DATASETS

    root = tmp_path_factory.mktemp("real3d") / "tree"
    DATASETS.create("synthetic", format="real3d", size="small", seed=0, categories=1,
                    root=str(root))
    return root


def _flip_labels_same_size(gt: Path) -> None:
    lines = gt.read_text().splitlines(keepends=True)
    flipped = [ln[:-2] + ("0" if ln[-2] == "1" else "1") + "\n" if i % 3 == 0 else ln
               for i, ln in enumerate(lines)]
    text = "".join(flipped)
    assert len(text) == gt.stat().st_size and text != gt.read_text()
    gt.write_text(text)


def test_same_size_gt_edit_recomputes_the_job(tmp_path, real3d_tree):
    root = tmp_path / "data"
    shutil.copytree(real3d_tree, root)
    spec = toy.toy_spec(methods=["toy_nn"], dataset="real3d", root=str(root))
    first = run(spec, out=tmp_path / "run")
    assert len(first.executed) == 1
    before = load_metrics(tmp_path / "run")
    time.sleep(0.05)
    _flip_labels_same_size(sorted(root.glob("*/gt/*.txt"))[0])
    second = run(spec, out=tmp_path / "run")
    assert len(second.executed) == 1 and not second.skipped, "stale result served"
    assert second.jobs[0].key != first.jobs[0].key
    assert "dataset files changed" in second.report()
    after = load_metrics(tmp_path / "run")
    point = lambda df: df[df["metric"] == "point_auroc"]["value"].tolist()  # noqa: E731
    assert len(point(after)) == 1 and point(after) != point(before)
    # the superseded result is kept on disk but the tables show the new one only
    assert len(RunStore(tmp_path / "run").all_keys()) == 2
    # unchanged files: the cached fingerprint is reused, the job is skipped
    assert run(spec, out=tmp_path / "run").skipped == [second.jobs[0].key]


def test_fingerprint_reads_only_changed_files(tmp_path, monkeypatch):
    import benchmark.dataset as dataset

    for i in range(3):
        (tmp_path / f"f{i}.txt").write_text(f"content {i}\n")
    monkeypatch.setattr(dataset, "_RACY_NS", 0)  # the files are not "just written" any more
    reads = []
    real = dataset._file_digest
    monkeypatch.setattr(dataset, "_file_digest", lambda p: reads.append(p) or real(p))
    fp = dataset.fingerprint_tree(tmp_path)
    assert len(reads) == 3
    assert dataset.fingerprint_tree(tmp_path) == fp and len(reads) == 3  # cached
    time.sleep(0.05)
    (tmp_path / "f1.txt").write_text("content X\n")  # same size, new content
    assert dataset.fingerprint_tree(tmp_path) != fp and len(reads) == 4


PLUGIN = '''
from benchmark.registry import METHODS
from benchmark.sample import Prediction
from test_runner_fixtures import ToyNN

SCALE = 1.0


class PlugNN(ToyNN):
    def predict(self, sample):
        p = super().predict(sample)
        return Prediction(score=p.score * SCALE, point_scores=p.point_scores * SCALE + SCALE)


METHODS.unregister("plug_nn")
METHODS.register("plug_nn", factory=PlugNN, learning="one_class", outputs=("point_scores",))
'''


def test_method_source_edit_recomputes(tmp_path, monkeypatch):
    from benchmark.run.spec import forget_code_hashes

    name = f"relplug_{os.getpid()}"
    path = tmp_path / f"{name}.py"
    path.write_text(PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop(name, None)
    forget_code_hashes()
    try:
        spec = toy.toy_spec(methods=["plug_nn"], categories=["alpha"],
                            plugins=["test_runner_fixtures", name])
        first = run(spec, out=tmp_path / "run")
        assert len(first.executed) == 1
        assert run(spec, out=tmp_path / "run").skipped
        path.write_text(PLUGIN.replace("SCALE = 1.0", "SCALE = 3.0"))  # same size
        importlib.reload(sys.modules[name])
        forget_code_hashes()  # a new process: the edited source is hashed again
        second = run(spec, out=tmp_path / "run")
        assert len(second.executed) == 1, "a result of the old code was served"
        assert f"code changed ({name})" in second.report()
    finally:
        from benchmark.registry import METHODS

        METHODS.unregister("plug_nn")
        sys.modules.pop(name, None)
        forget_code_hashes()


def test_job_code_covers_the_method_and_the_toolkit_it_imports():
    from benchmark.run.spec import module_closure

    closure = module_closure("methods.patchcore")
    assert "methods.patchcore" in closure and "benchmark.components.memory_bank" in closure
    assert "benchmark.detector" in closure
    assert not any(m.startswith(("benchmark.run.", "benchmark.report")) for m in closure)
    job = expand(toy.toy_spec(categories=["alpha"]))[0]
    assert {"test_runner_fixtures", "benchmark.run.protocols", "benchmark.sample"} <= set(job.code)


def test_job_code_holds_the_plugin_distribution_version(monkeypatch):
    from importlib import metadata

    import benchmark.run.spec as spec

    # pretend the toy plugin module is shipped by an installed distribution (numpy's)
    monkeypatch.setattr(spec, "_plugin_versions", lambda: {"test_runner_fixtures": ["numpy"]})
    code = spec.job_code("toy_nn", ["toy"])
    assert code["dist:numpy"] == metadata.version("numpy")
    assert "methods.patchcore" not in code  # another method's source is not this job's code


# --------------------------------------------------------------------------------------------
# 3. every finished job of the folder is tabulated; concurrent runs split the work


def test_two_methods_run_separately_are_both_tabulated(tmp_path, capsys):
    out = tmp_path / "run"
    run(toy.toy_spec(methods=["toy_nn"], categories=["alpha"]), out=out)
    run(toy.toy_spec(methods=["toy_zs"], protocol="one_class", categories=["alpha"]), out=out)
    assert set(pd.read_csv(out / "metrics.csv")["method"]) == {"toy_nn", "toy_zs"}
    text = render_run(out)
    assert "| toy_nn " in text and "| toy_zs " in text
    # the same preset with other arguments from another command gets its own row
    run(toy.toy_spec(methods=_nn(noise=0.3), categories=["alpha"]), out=out)
    methods = set(pd.read_csv(out / "metrics.csv")["method"])
    assert methods == {"toy_nn(defaults)", "toy_nn(noise=0.3)", "toy_zs"}


def test_two_concurrent_runs_compute_each_job_once(tmp_path):
    out, log = tmp_path / "run", tmp_path / "fit.log"
    cmd = [sys.executable, "-m", "benchmark", "run", "--plugin", "test_runner_fixtures",
           "--method", "toy_nn", "--dataset", "toy", "--set", "sleep=0.25",
           f"fit_log={log}", "--out", str(out), "--no-table"]
    procs = [subprocess.Popen(cmd, cwd=REPO, env=_env(), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1] for o in outs]
    fits = toy.read_log(log)
    assert sorted(f["categories"][0] for f in fits) == sorted(toy.CATEGORIES), \
        "a job was computed twice (or not at all)"
    assert len({f["pid"] for f in fits}) == 2, "the two runs did not split the work"
    store = RunStore(out)
    assert sorted(store.all_keys()) == sorted(store.job_keys())
    assert all(store.status(k) == "ok" for k in store.all_keys())
    assert len(pd.read_csv(out / "metrics.csv")["test_category"].unique()) == 4


def test_file_lock_is_exclusive_and_leaves_no_file(tmp_path):
    from benchmark.run.store import FileLock

    a, b = FileLock(tmp_path / ".lock", blocking=False), FileLock(tmp_path / ".lock",
                                                                  blocking=False)
    assert a.acquire() and not b.acquire()
    a.release()
    assert not (tmp_path / ".lock").exists()
    assert b.acquire()
    b.release()


# --------------------------------------------------------------------------------------------
# 4. a job is done only if its files verify


def test_truncated_scores_are_recomputed_and_skipped_with_a_warning(tmp_path, capsys):
    out = tmp_path / "run"
    s = run(toy.toy_spec(categories=["alpha", "beta"], dataset_options={"organized": True}),
            out=out)
    bad = s.jobs[0].key
    npz = RunStore(out).scores_path(bad)
    npz.write_bytes(npz.read_bytes()[: npz.stat().st_size // 2])
    assert RunStore(out).status(bad) is None
    assert main(["evaluate", "--run", str(out), "--grid", "224"]) == 0
    captured = capsys.readouterr()
    assert f"warning: job {bad} (toy_nn toy/one_class" in captured.err and "skipped" in captured.err
    assert "| toy_nn |" in captured.out
    assert main(["export", "--run", str(out), "--out", str(tmp_path / "exp"), "--no-ply",
                 "--no-png"]) == 0
    assert f"warning: job {bad} (" in capsys.readouterr().err
    assert main(["tables", "--run", str(out)]) == 0
    captured = capsys.readouterr()
    assert f"warning: job {bad} (" in captured.err and "(1/4)" in captured.out
    again = run(toy.toy_spec(categories=["alpha", "beta"], dataset_options={"organized": True}),
                out=out)
    assert [e["key"] for e in again.executed] == [bad]
    assert "damaged result: scores.npz" in again.report()
    assert RunStore(out).status(bad) == "ok"


def test_counts_mismatch_is_damage(tmp_path):
    out = tmp_path / "run"
    s = run(toy.toy_spec(categories=["alpha"]), out=out)
    store = RunStore(out)
    key = s.jobs[0].key
    result = store.load_result(key)
    result["scores_file"]["counts"]["alpha"] += 1
    store.save_result(key, result)
    assert store.verify(key).status is None and "recorded" in store.verify(key).reason


# --------------------------------------------------------------------------------------------
# 5. partial means and NaN cells are marked; compare refuses partial means


def test_failed_and_nan_categories_are_marked(tmp_path):
    out = tmp_path / "run"
    run(toy.toy_spec(methods=_nn(fail_on="beta")), out=out)
    [table] = run_tables(load_metrics(out), metrics=["image_auroc"]).values()
    row = dict(zip(table.columns, table.iloc[0]))
    assert row["beta"] == "failed (RuntimeError)" and row["Mean"].endswith("(3/4)")
    text = render_run(out)
    assert "(n/N)" in text
    rows = pd.DataFrame([
        {"method": "m", "preset": "m", "dataset": "d", "protocol": "one_class",
         "train_dataset": "d", "train_category": c, "test_category": c, "seed": 0,
         "metric": "image_auroc", "value": v, "variant": "", "evaluation": "e", "job": c,
         "n_categories": 3, "note": note, "uses_test_statistics": 0}
        for c, v, note in (("a", 0.8, ""), ("b", float("nan"), "no anomalous sample"),
                           ("c", 0.6, ""))])
    [t] = run_tables(rows).values()
    assert t.iloc[0].tolist() == ["m", "80.0", "nan (no anomalous sample)", "60.0",
                                  "70.0 (2/3)"]


def _toy_paper(tmp_path: Path) -> Path:
    root = tmp_path / "paper" / "toypaper"
    root.mkdir(parents=True)
    (root / "t1.csv").write_text("method,Alpha,Beta,Gamma,Delta,Mean\n"
                                 "NN,90.0,90.0,90.0,90.0,90.0\n")
    (root / "t1.meta.yaml").write_text(yaml.safe_dump({
        "paper": "toypaper", "table": "t1", "dataset": "toy", "protocol": "one_class",
        "metric": "image_auroc", "scale": 100, "row_keys": ["method"], "mean_column": "Mean",
        "category_map": {"Alpha": "alpha", "Beta": "beta", "Gamma": "gamma", "Delta": "delta"},
        "method_map": {"NN": "toy_nn"}}))
    return tmp_path / "paper"


def test_compare_refuses_partial_means_and_fails_without_overlap(tmp_path, capsys,
                                                                  monkeypatch):
    import benchmark.report.tables as tables

    monkeypatch.setattr(tables, "PAPER_ROOT", _toy_paper(tmp_path))
    out = tmp_path / "run"
    run(toy.toy_spec(categories=["alpha", "beta"]), out=out)
    paper = load_paper_table("toypaper:t1")
    cmp = compare(out, paper)
    assert set(cmp["column"]) == {"Alpha", "Beta"}  # the Mean over 2 of 4 is refused
    assert cmp.attrs["refused"][0]["coverage"] == "2/4"
    assert main(["compare", "--run", str(out), "--paper", "toypaper:t1"]) == 0
    assert "--allow-partial" in capsys.readouterr().out
    assert main(["compare", "--run", str(out), "--paper", "toypaper:t1", "--allow-partial",
                 "--format", "csv"]) == 0
    assert "Mean" in capsys.readouterr().out
    # nothing in common: non-zero exit
    other = tmp_path / "other"
    run(toy.toy_spec(methods=["toy_zs"], protocol="one_class", categories=["alpha"]), out=other)
    assert main(["compare", "--run", str(other), "--paper", "toypaper:t1"]) == 1
    assert "no cell in common" in capsys.readouterr().out


# --------------------------------------------------------------------------------------------
# 6. the same preset twice: one row each


def test_duplicate_preset_gets_automatic_labels(tmp_path):
    spec = toy.toy_spec(methods=[{"name": "toy_nn", "args": {"noise": 0.1}},
                                 {"name": "toy_nn", "args": {"noise": 0.2, "seed": 0}},
                                 {"name": "toy_nn", "args": {"noise": 0.3}, "label": "mine"}],
                        categories=["alpha"])
    labels = ["toy_nn(noise=0.1)", "toy_nn(noise=0.2,seed=0)", "mine"]
    assert [m.label for m in spec.methods] == labels
    run(spec, out=tmp_path / "run")
    [table] = run_tables(load_metrics(tmp_path / "run"), metrics=["image_auroc"]).values()
    assert sorted(table["method"]) == sorted(labels)


# --------------------------------------------------------------------------------------------
# 7. a method whose plugin failed to import


def test_run_of_a_broken_plugin_method_names_the_import_error(tmp_path, monkeypatch, capsys):
    import benchmark.registry as registry

    pkg = tmp_path / "broken_ad_plugin"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("import not_installed_dependency_xyz\n")
    dist = tmp_path / "broken_ad_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-ad-plugin\n"
                                   "Version: 0.1\n")
    (dist / "entry_points.txt").write_text("[benchmark.methods]\n"
                                           "fancy_ad = broken_ad_plugin:register\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    fresh = Registry("methods", "methods")
    monkeypatch.setattr(registry, "METHODS", fresh)
    with pytest.raises(ConfigError, match="failed to import.*not_installed_dependency_xyz"):
        fresh.get("fancy_ad")
    code = main(["run", "--method", "fancy_ad", "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2 and "fancy_ad" in err and "failed to import" in err
    assert "No module named 'not_installed_dependency_xyz'" in err
    assert not (tmp_path / "run").exists()


def test_manifest_marks_the_folder(tmp_path):
    run(toy.toy_spec(categories=["alpha"]), out=tmp_path / "run")
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["kind"] == "benchmark3dad-run" and manifest["current"]
    assert np.all([RunStore(tmp_path / "run").exists()])
