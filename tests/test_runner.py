"""Runner: resume, --force, failure isolation, determinism, executors, interruption, records."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import test_runner_fixtures as toy

from benchmark.run.executors import ProcessExecutor, SlurmExecutor
from benchmark.run.runner import run
from benchmark.run.spec import expand
from benchmark.run.store import RunStore

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent


@pytest.fixture(autouse=True)
def _registered(monkeypatch):
    toy.activate(monkeypatch)
    yield
    toy.unregister()


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS), str(REPO), env.get("PYTHONPATH", "")])
    return env


def _nn(**args):
    return [{"name": "toy_nn", "args": args}]


def test_resume_skips_done_jobs_and_force_recomputes(tmp_path):
    log = tmp_path / "fit.log"
    spec = toy.toy_spec(methods=_nn(fit_log=str(log)), categories=["alpha", "beta"])
    first = run(spec, out=tmp_path / "run")
    assert len(first.executed) == 2 and len(toy.read_log(log)) == 2
    second = run(spec, out=tmp_path / "run")
    assert len(toy.read_log(log)) == 2, "the second run must fit nothing"
    assert len(second.skipped) == 2 and not second.executed
    third = run(spec, out=tmp_path / "run", force=True)
    assert len(third.executed) == 2 and len(toy.read_log(log)) == 4


def test_failure_is_isolated_and_reported(tmp_path):
    spec = toy.toy_spec(methods=_nn(fail_on="beta"))
    s = run(spec, out=tmp_path / "run")
    assert len(s.jobs) == 4 and len(s.failures) == 1
    report = s.report()
    assert "1 failed" in report and "FAILED" in report and "told to fail on beta" in report
    store = RunStore(tmp_path / "run")
    failed = store.load_result(s.failures[0]["key"])
    assert failed["status"] == "failed"
    assert "RuntimeError" in failed["error"]["traceback"] and "fit" in failed["error"]["traceback"]
    text = (tmp_path / "run" / "metrics.csv").read_text()
    assert ",alpha," in text and ",gamma," in text
    beta = [line for line in text.splitlines() if ",beta," in line]
    assert beta and all(",*,nan," in line and "failed job: RuntimeError" in line for line in beta)
    # a rerun retries only the failed job
    again = run(spec, out=tmp_path / "run")
    assert len(again.executed) == 1 and len(again.skipped) == 3


def test_same_seed_gives_identical_metrics(tmp_path):
    spec = toy.toy_spec(methods=_nn(noise=0.2), dataset_options={"organized": True},
                        categories=["alpha", "beta"], seeds=[3])
    run(spec, out=tmp_path / "a")
    run(spec, out=tmp_path / "b")
    a = (tmp_path / "a" / "metrics.csv").read_text()
    assert a == (tmp_path / "b" / "metrics.csv").read_text()
    run(toy.toy_spec(methods=_nn(noise=0.2), dataset_options={"organized": True},
                     categories=["alpha", "beta"], seeds=[4]), out=tmp_path / "c")
    c = (tmp_path / "c" / "metrics.csv").read_text()
    values = lambda t: [line.split(",")[9] for line in t.splitlines()[1:]]  # noqa: E731
    assert values(a) != values(c), "another seed must change the noisy scores"


def test_result_records_timings_memory_and_flags(tmp_path):
    spec = toy.toy_spec(methods=_nn(test_stats=True), categories=["alpha"])
    s = run(spec, out=tmp_path / "run")
    store = RunStore(tmp_path / "run")
    result = store.load_result(s.jobs[0].key)
    t = result["timings"]
    assert t["fit_s"] >= 0 and t["predict_per_sample_s"] > 0 and t["n_test_samples"] == 4
    assert set(t["stages_s"]) == {"query"} and 0 < t["stages_s"]["query"] <= t["predict_s"]
    assert result["memory"]["peak_rss_mb"] > 10
    assert result["uses_test_statistics"] is True
    assert result["fit"] == {"dataset": "toy", "category": "alpha", "split": "train",
                             "n_samples": 3}
    assert ",1\n" in (tmp_path / "run" / "metrics.csv").read_text()  # the flag column
    manifest = store.read_manifest()
    env = manifest["environment"]
    assert {"numpy", "torch"} <= set(env["packages"]) and "torch" in env
    assert manifest["seeds"] == [0] and manifest["dataset_fingerprints"]
    assert manifest["jobs"][0]["key"] == s.jobs[0].key and manifest["command"]


def test_job_key_covers_what_changes_results():
    base = expand(toy.toy_spec(categories=["alpha"]))[0]
    assert expand(toy.toy_spec(categories=["alpha"]))[0].key == base.key
    changed = [
        toy.toy_spec(categories=["alpha"], seeds=[1]),
        toy.toy_spec(methods=_nn(noise=0.1), categories=["alpha"]),
        toy.toy_spec(categories=["alpha"], dataset_options={"n_test": 6}),
        toy.toy_spec(categories=["alpha"], protocol="zero_shot", aux_categories=["beta"]),
    ]
    keys = {expand(s)[0].key for s in changed}
    assert base.key not in keys and len(keys) == 4
    # evaluation settings do not change the key (re-evaluation is offline)
    assert expand(toy.toy_spec(categories=["alpha"], evaluation={"grid": "224"}))[0].key == base.key


def test_process_executor_matches_local(tmp_path):
    spec = toy.toy_spec(methods=_nn(noise=0.2), categories=["alpha", "beta"])
    run(spec, out=tmp_path / "local")
    s = run(spec, out=tmp_path / "proc", executor=ProcessExecutor(2))
    assert len(s.executed) == 2 and not s.failures
    assert {r["key"] for r in s.executed} == {j.key for j in s.jobs}
    pids = {RunStore(tmp_path / "proc").load_result(j.key)["pid"] for j in s.jobs}
    assert os.getpid() not in pids
    assert ((tmp_path / "local" / "metrics.csv").read_text()
            == (tmp_path / "proc" / "metrics.csv").read_text())


def test_submitit_local_round_trip(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", _env()["PYTHONPATH"])
    spec = toy.toy_spec(categories=["alpha", "beta"])
    executor = SlurmExecutor(tmp_path / "logs", cluster="local", time_min=5, gpus=0,
                             partition="ignored-by-local", poll_s=0.2)
    s = run(spec, out=tmp_path / "run", executor=executor)
    assert not s.failures and len(s.executed) == 2
    assert len(executor.submitted) == 2
    assert all(j.state in ("DONE", "FINISHED", "COMPLETED") or j.done()
               for j in executor.submitted)
    store = RunStore(tmp_path / "run")
    assert all(store.status(j.key) == "ok" for j in s.jobs)
    assert "image_auroc" in (tmp_path / "run" / "metrics.csv").read_text()


def test_interrupted_run_resumes_without_corrupt_files(tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "benchmark", "run", "--plugin", "test_runner_fixtures",
           "--method", "toy_nn", "--dataset", "toy", "--set", "sleep=0.15", "--out", str(out),
           "--no-table"]
    proc = subprocess.Popen(cmd, cwd=REPO, env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.time() + 120
    while time.time() < deadline and len(list(out.glob("jobs/*/result.json"))) < 1:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = len(list(out.glob("jobs/*/result.json")))
    assert 1 <= done_before < 4, "the run should have been killed half-way"
    done = subprocess.run(cmd, cwd=REPO, env=_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert f"{done_before} already done" in done.stderr
    store = RunStore(out)
    keys = store.job_keys()
    assert len(keys) == 4 and all(store.status(k) == "ok" for k in keys)
    for k in keys:
        json.loads(store.result_path(k).read_text())
        cats = store.load_scores(k)
        assert len(cats[0]) == 4
    assert not [p for p in out.rglob(".*") if p.is_file()], "temporary files left behind"
    assert len((out / "metrics.csv").read_text().splitlines()) == 1 + 4 * 5  # 5 metrics


def test_progress_is_quiet_off_a_terminal(monkeypatch, capsys):
    from benchmark import progress

    monkeypatch.delenv("BENCHMARK_PROGRESS", raising=False)
    assert not progress.enabled(open(os.devnull, "w"))
    assert list(progress.track(range(3), desc="x")) == [0, 1, 2]
    assert capsys.readouterr().err == ""
    monkeypatch.setenv("BENCHMARK_PROGRESS", "1")
    assert progress.enabled(open(os.devnull, "w"))


def test_per_dataset_options_and_roots():
    from benchmark.commands.run_cmd import parse_roots

    spec = toy.toy_spec(datasets=["toy", "other"],
                        dataset_options={"toy": {"organized": True}, "other": {}})
    assert spec.options_of("toy") == {"organized": True} and spec.options_of("other") == {}
    flat = toy.toy_spec(dataset_options={"organized": True})
    assert flat.options_of("toy") == {"organized": True}
    assert parse_roots(["/data/x"]) == "/data/x"
    assert parse_roots(["mvtec3d=/a", "eyecandies=/b"]) == {"mvtec3d": "/a", "eyecandies": "/b"}
