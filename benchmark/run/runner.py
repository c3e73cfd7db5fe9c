"""Runs the jobs of a spec into a run folder: resumable, fault-isolated, timed (DESIGN §6).

``run(spec)`` expands the spec, writes the manifest, skips jobs whose files verify (unless
``force``), hands the rest to an executor and rebuilds ``metrics.csv`` from every current job of
the folder. A worker claims its job with a file lock first, so concurrent runs split the jobs.
Each job (`run_job`, a plain picklable function so any executor can ship it) seeds everything,
builds the detector, fits it on what the protocol allows, scores every test sample, stores the
scores and evaluates them. A failing job records its traceback and the sweep goes on.
"""

from __future__ import annotations

import csv
import inspect
import io
import math
import os
import platform
import resource
import socket
import sys
import threading
import time
import traceback
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from benchmark.cache import atomic_write_text, recipe_hash
from benchmark.errors import ContractError
from benchmark.progress import Bar
from benchmark.run import protocols
from benchmark.run.spec import (
    EvalConfig,
    Job,
    RunSpec,
    code_changes,
    code_version,
    expand,
    import_plugins,
)
from benchmark.run.spec import open_dataset as _open_dataset
from benchmark.run.store import RunStore, ScoreCollector, identity_of

REPO = Path(__file__).resolve().parents[2]
METRICS_COLUMNS = ("method", "preset", "dataset", "protocol", "train_dataset", "train_category",
                   "test_category", "seed", "metric", "value", "variant", "evaluation", "job",
                   "n_categories", "note", "uses_test_statistics")
PACKAGES = ("numpy", "scipy", "scikit-learn", "torch", "torchvision", "open_clip_torch", "timm",
            "open3d", "open3d-cpu", "faiss-cpu", "pandas", "submitit", "pytorch3d")


def runs_root() -> Path:
    return Path(os.environ.get("BENCHMARK_RUNS") or REPO / "results" / "runs")


def default_run_dir(spec: RunSpec) -> Path:
    """results/runs/<method>_<dataset>_<protocol>_<short hash of the spec>, or the spec's name."""
    if spec.name:
        return runs_root() / spec.name
    method = spec.methods[0].name + (f"+{len(spec.methods) - 1}" if len(spec.methods) > 1 else "")
    data = spec.datasets[0] + (f"+{len(spec.datasets) - 1}" if len(spec.datasets) > 1 else "")
    proto = "+".join(spec.protocols)
    cfg = spec.to_dict()
    cfg.pop("evaluation")
    cfg.pop("device")
    return runs_root() / f"{method}_{data}_{proto}_{recipe_hash(cfg, 8)}"


# --------------------------------------------------------------------------------------------
# one job


class MemoryMonitor:
    """Peak resident memory of this process while the job runs (samples /proc every 20 ms)."""

    def __init__(self, interval: float = 0.02) -> None:
        self.interval = interval
        self.start_mb = self._rss_mb()
        self.peak_mb = self.start_mb
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    @staticmethod
    def _rss_mb() -> float:
        try:
            with open("/proc/self/statm") as fh:
                pages = int(fh.read().split()[1])
            return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
        except (OSError, ValueError, IndexError):
            return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak_mb = max(self.peak_mb, self._rss_mb())

    def __enter__(self) -> MemoryMonitor:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_mb = max(self.peak_mb, self._rss_mb())


def _accepts(factory: Any, name: str) -> bool:
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return False
    return name in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


def build_detector(job: Job) -> Any:
    from benchmark.registry import METHODS

    entry = METHODS.get(job.method)
    args = dict(job.method_args)
    if "seed" not in args and "seed" not in entry.kwargs and _accepts(entry.factory, "seed"):
        args["seed"] = job.seed
    detector = entry.create(**args)
    if job.device != "cpu" and hasattr(detector, "to"):
        detector = detector.to(job.device) or detector
    return detector


class _Timed:
    """Iterates samples, timing how long loading them takes and remembering them in order."""

    def __init__(self, samples: Iterable[Any]) -> None:
        self._it = iter(samples)
        self.pending: deque = deque()
        self.load_s = 0.0

    def __iter__(self) -> Iterator[Any]:
        while True:
            t0 = time.perf_counter()
            try:
                sample = next(self._it)
            except StopIteration:
                return
            self.load_s += time.perf_counter() - t0
            self.pending.append(sample)
            yield sample


def _predict_category(detector: Any, samples: Any, category: str, show: bool
                      ) -> tuple[Any, dict[str, float]]:
    collector = ScoreCollector(category)
    timed = _Timed(samples)
    t0 = time.perf_counter()
    with Bar(len(samples), f"  {category}", unit="sample", leave=False, show=show) as bar:
        for pred in detector.predict_many(timed):
            if not timed.pending:
                raise ContractError("predict_many yielded more predictions than samples")
            collector.add(timed.pending.popleft(), pred)
            bar.update()
    if timed.pending:
        raise ContractError(f"predict_many yielded {len(collector.ids)} predictions for "
                            f"{len(collector.ids) + len(timed.pending)} samples")
    total = time.perf_counter() - t0
    return collector.finish(), {"load_s": timed.load_s, "predict_s": total - timed.load_s,
                                "n": len(collector.ids)}


def execute_job(job: Job, store: RunStore, show_progress: bool = False) -> dict[str, Any]:
    """Runs one job and stores its result (status ``ok`` or ``failed``); returns the result."""
    from benchmark.run.evaluation import evaluate_scores
    from benchmark.seeding import seed_everything

    key = job.key
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    result: dict[str, Any] = {"key": key, "identity": job.identity, "job": job.to_dict(),
                              "started": started, "started_ts": time.time(),
                              "host": socket.gethostname(), "pid": os.getpid(),
                              "device": job.device}
    timings: dict[str, float] = {}
    t_start = time.perf_counter()
    monitor = MemoryMonitor()
    try:
        with monitor:
            import_plugins(job.plugins)
            seed_everything(job.seed)
            test_ds = _open_dataset(job.dataset, job.root, job.dataset_options)
            train_ds = (test_ds if job.same_dataset else
                        _open_dataset(job.train_dataset, job.train_root,
                                      job.train_dataset_options))
            detector = build_detector(job)
            learning = getattr(detector, "learning", "one_class")
            result["learning"] = learning
            result["uses_test_statistics"] = bool(getattr(detector, "uses_test_statistics", False))
            trial = protocols.Trial(job.train_dataset, job.train_category, job.test_categories)
            fit_set = protocols.fit_data(train_ds, trial, job.protocol, learning,
                                         job.same_dataset)
            result["fit"] = {"dataset": job.train_dataset, "category": job.train_category,
                             "split": fit_set.split, "n_samples": len(fit_set)}
            t0 = time.perf_counter()
            detector.fit(fit_set)
            timings["fit_s"] = time.perf_counter() - t0
            scored, load_s, predict_s, n = [], 0.0, 0.0, 0
            for category in job.test_categories:
                cs, t = _predict_category(detector, test_ds.test(category), category,
                                          show_progress)
                scored.append(cs)
                load_s += t["load_s"]
                predict_s += t["predict_s"]
                n += t["n"]
            timings.update(load_s=load_s, predict_s=predict_s, n_test_samples=n,
                           predict_per_sample_s=predict_s / max(n, 1))
            if hasattr(detector, "stage_timings"):
                timings["stages_s"] = detector.stage_timings()
            result["scores_file"] = store.save_scores(key, scored)
            t0 = time.perf_counter()
            result["metrics"] = {job.evaluation.id: evaluate_scores(scored, job.evaluation)}
            timings["eval_s"] = time.perf_counter() - t0
        result["status"] = "ok"
    except Exception as err:  # failure isolation: the sweep goes on
        result["status"] = "failed"
        result["error"] = {"type": type(err).__name__, "message": str(err),
                           "traceback": traceback.format_exc()}
    timings["total_s"] = time.perf_counter() - t_start
    result["timings"] = timings
    result["memory"] = {"peak_rss_mb": round(monitor.peak_mb, 1),
                        "start_rss_mb": round(monitor.start_mb, 1),
                        "job_rss_increase_mb": round(monitor.peak_mb - monitor.start_mb, 1)}
    if job.device.startswith("cuda"):
        try:
            import torch

            result["memory"]["cuda_peak_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
        except Exception:  # noqa: BLE001 - memory report must not fail the job
            pass
    result["finished"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    store.save_result(key, result)
    return result


def run_job(job_dict: dict[str, Any], run_dir: str, show_progress: bool = False,
            redo_before: float | None = None) -> dict[str, Any]:
    """Executor entry point: claims the job (a lock in its folder, so concurrent runs split the
    work), runs it unless it is done meanwhile, and returns a short summary whose status is
    ``ok``/``failed``, ``busy`` (claimed by another process) or ``done`` (finished by another
    process first). `redo_before` (``--force``): results started before it are recomputed."""
    job = Job.from_dict(job_dict)
    store = RunStore(run_dir)
    summary = {"key": job.key, "title": job.title}
    lock = store.job_lock(job.key)
    if not lock.acquire():
        return {**summary, "status": "busy"}
    try:
        store.clean_stale([job.key])
        verdict = store.verify(job.key)
        if verdict.done and (redo_before is None
                             or float(verdict.result.get("started_ts") or 0) >= redo_before):
            return {**summary, "status": "done"}
        result = execute_job(job, store, show_progress=show_progress)
    finally:
        lock.release()
    summary["status"] = result["status"]
    if result["status"] != "ok":
        summary["error"] = f"{result['error']['type']}: {result['error']['message']}"
    return summary


def record_crash(job_dict: dict[str, Any], store: RunStore, err: BaseException) -> dict[str, Any]:
    """Stores a failed result for a job whose worker died before it could record anything."""
    job = Job.from_dict(job_dict)
    message = f"worker died: {type(err).__name__}: {err}"
    lock = store.job_lock(job.key)
    if lock.acquire():  # otherwise another run is computing it now
        try:
            store.save_result(job.key, {
                "key": job.key, "identity": job.identity, "job": job.to_dict(),
                "status": "failed",
                "error": {"type": type(err).__name__, "message": message,
                          "traceback": "".join(traceback.format_exception(err))},
                "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            })
        finally:
            lock.release()
    return {"key": job.key, "status": "failed", "title": job.title, "error": message}


# --------------------------------------------------------------------------------------------
# the manifest and metrics.csv


def _git(*args: str) -> str:
    import subprocess

    try:
        out = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, timeout=10)
        return out.stdout.strip() if out.returncode == 0 else ""
    except (OSError, subprocess.SubprocessError):
        return ""


def environment() -> dict[str, Any]:
    versions = {}
    for pkg in PACKAGES:
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            continue
    env: dict[str, Any] = {"python": sys.version.split()[0], "platform": platform.platform(),
                           "host": socket.gethostname(), "packages": versions,
                           "git_commit": _git("rev-parse", "HEAD"),
                           "git_dirty": bool(_git("status", "--porcelain", "--untracked-files=no")),
                           "code_version": code_version()}
    try:
        import torch

        env["torch"] = {"version": torch.__version__, "cuda_available": torch.cuda.is_available(),
                        "cuda": torch.version.cuda,
                        "devices": [torch.cuda.get_device_name(i)
                                    for i in range(torch.cuda.device_count())],
                        "threads": torch.get_num_threads()}
    except ImportError:
        pass
    return env


def build_manifest(spec: RunSpec, jobs: list[Job], command: list[str] | None,
                   executor: str, previous: dict[str, Any] | None) -> dict[str, Any]:
    prints: dict[str, str] = dict((previous or {}).get("dataset_fingerprints") or {})
    for job in jobs:
        prints[f"{job.dataset} ({job.root or 'default root'})"] = job.fingerprints["test"]
        if "train" in job.fingerprints:
            prints[f"{job.train_dataset} ({job.train_root or 'default root'})"] = (
                job.fingerprints["train"])
    history = list((previous or {}).get("history", []))
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    history.append({"time": now, "command": command or sys.argv, "executor": executor,
                    "jobs": len(jobs)})
    current = dict((previous or {}).get("current") or {})
    current.update({j.identity: j.key for j in jobs})
    return {
        "command": command or sys.argv,
        "created": (previous or {}).get("created", now),
        "updated": now,
        "config": spec.to_dict(),
        "executor": executor,
        "seeds": spec.seeds,
        "dataset_fingerprints": prints,
        "environment": environment(),
        "jobs": [{"key": j.key, "title": j.title, "method": j.method_label,
                  "train_category": j.train_category, "test_categories": list(j.test_categories),
                  "seed": j.seed} for j in jobs],
        "current": current,
        "history": history[-50:],
    }


def metric_rows(result: dict[str, Any], label: str | None = None) -> list[dict[str, Any]]:
    """metrics.csv rows of one stored result; a failed job gives one row per test category with
    metric ``*``, value nan and the error in ``note``."""
    job = result["job"]
    base = {"method": label or job["method_label"], "preset": job["method"],
            "dataset": job["dataset"], "protocol": job["protocol"],
            "train_dataset": job["train_dataset"], "train_category": job["train_category"],
            "seed": job["seed"], "job": result["key"],
            "n_categories": int(job.get("category_total") or 0),
            "uses_test_statistics": int(bool(result.get("uses_test_statistics")))}
    if result.get("status") != "ok":
        err = result.get("error") or {}
        note = f"failed job: {err.get('type', 'error')}"
        return [{**base, "test_category": c, "metric": "*", "value": "nan", "variant": "",
                 "evaluation": "", "note": note} for c in job["test_categories"]]
    rows = []
    for _eval_id, per_cat in sorted((result.get("metrics") or {}).items()):
        for category in job["test_categories"]:
            for r in per_cat.get(category, []):
                value = r["value"]
                nan = value is None or not math.isfinite(float(value))
                rows.append({**base, "test_category": category, "metric": r["metric"],
                             "value": "nan" if nan else repr(float(value)),
                             "variant": r["variant"], "evaluation": r["evaluation"],
                             "note": (r.get("note") or "undefined") if nan else ""})
    return rows


def current_labels(results: list[dict[str, Any]]) -> list[str]:
    """Table labels of the folder's current results: a label shared by different presets or
    arguments (e.g. from two commands) is made distinct from the arguments that differ."""
    from benchmark.run.spec import distinguishing_labels

    return distinguishing_labels([(r["job"]["method_label"], r["job"]["method"],
                                   r["job"].get("method_args") or {}) for r in results])


def metrics_csv_text(store: RunStore, warn: Any = None) -> tuple[str, int]:
    """metrics.csv of the current result of every job in the folder (whatever command wrote it;
    damaged jobs are reported to `warn` and left out) and its number of rows."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=METRICS_COLUMNS, lineterminator="\n")
    writer.writeheader()
    results = [v.result for _key, v in store.current(warn) if v.result and "job" in v.result]
    n = 0
    for result, label in zip(results, current_labels(results)):
        for row in metric_rows(result, label):
            writer.writerow(row)
            n += 1
    return buf.getvalue(), n


def rebuild_metrics_csv(store: RunStore, warn: Any = None) -> int:
    """Rewrites metrics.csv (atomically) from the folder's current jobs; returns the number of
    rows. Call it holding the folder lock."""
    text, n = metrics_csv_text(store, warn)
    atomic_write_text(store.metrics_path, text)
    return n


# --------------------------------------------------------------------------------------------
# a whole run


def recompute_reason(job: Job, store: RunStore, force: bool,
                     by_identity: dict[str, list[tuple[str, dict[str, Any]]]]) -> str | None:
    """Why `job` must run (None: its result is done and verifies)."""
    verdict = store.verify(job.key)
    if verdict.done:
        return "--force" if force else None
    if verdict.status == "failed":
        return "previous attempt failed"
    if store.result_path(job.key).exists() or store.scores_path(job.key).exists():
        return f"damaged result: {verdict.reason}"
    older = [r for k, r in by_identity.get(job.identity, []) if k != job.key]
    if not older:
        return "new"
    old = max(older, key=lambda r: str(r.get("finished") or ""))["job"]
    why = []
    if old.get("fingerprints") != job.fingerprints:
        why.append("dataset files changed")
    if old.get("code") and job.code:
        changed = code_changes(old["code"], job.code)
        if changed:
            shown = ", ".join(changed[:6]) + (f" and {len(changed) - 6} more"
                                               if len(changed) > 6 else "")
            why.append(f"code changed ({shown})")
    elif old.get("code_version") != job.code_version or not old.get("code"):
        why.append("code changed (result made before code hashing)")
    return "; ".join(why) or "job recipe changed"


@dataclass
class RunSummary:
    run_dir: Path
    jobs: list[Job]
    executed: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    reasons: dict[str, str] = field(default_factory=dict)
    busy: list[str] = field(default_factory=list)

    @property
    def failures(self) -> list[dict[str, Any]]:
        return [s for s in self.executed if s["status"] not in ("ok", "done")]

    def failed_in_store(self) -> list[tuple[str, dict[str, Any]]]:
        store = RunStore(self.run_dir)
        out = []
        for job in self.jobs:
            verdict = store.verify(job.key)
            if verdict.status == "failed":
                out.append((job.key, verdict.result))
        return out

    def report(self) -> str:
        computed = [s for s in self.executed if s["status"] in ("ok", "failed")]
        done_elsewhere = [s for s in self.executed if s["status"] == "done"]
        lines = [f"run folder: {self.run_dir}",
                 f"jobs: {len(self.jobs)} total, {len(computed)} run, "
                 f"{len(self.skipped) + len(done_elsewhere)} already done, "
                 f"{len(self.failures)} failed"
                 + (f", {len(self.busy)} being computed by another process" if self.busy
                    else "")]
        titles = {j.key: j.title for j in self.jobs}
        counts: dict[str, int] = {}
        for s in computed:
            reason = self.reasons.get(s["key"], "new")
            counts[reason] = counts.get(reason, 0) + 1
        if counts:
            lines.append("recomputed: " + "; ".join(f"{n} x {r}" for r, n in counts.items()))
        listed = [s for s in computed if self.reasons.get(s["key"], "new") != "new"]
        for s in listed[:30]:
            lines.append(f"  {titles.get(s['key'], s['key'])} [{s['key']}]: "
                         f"{self.reasons[s['key']]}")
        for key in self.busy:
            lines.append(f"  BUSY {titles.get(key, key)} [{key}]: claimed by another process")
        for key, res in self.failed_in_store():
            err = res.get("error", {})
            lines.append(f"  FAILED {key} {Job.from_dict(res['job']).title}: "
                         f"{err.get('type')}: {err.get('message')}")
        return "\n".join(lines)


def run(spec: RunSpec, *, out: str | Path | None = None, executor: Any = None,
        force: bool = False, command: list[str] | None = None,
        show_progress: bool | None = None) -> RunSummary:
    """Runs `spec` into a run folder (see module docstring)."""
    from benchmark.run.executors import LocalExecutor

    executor = executor or LocalExecutor()
    run_dir = Path(out) if out else default_run_dir(spec)
    store = RunStore(run_dir)
    store.check_writable_target()
    jobs = expand(spec)
    started = time.time()
    run_dir.mkdir(parents=True, exist_ok=True)
    with store.lock():
        store.check_writable_target()
        store.clean_stale(keys=[])
        previous = store.read_manifest() if store.exists() else None
        store.write_manifest(build_manifest(spec, jobs, command, executor.name, previous))
    summary = RunSummary(run_dir, jobs)
    by_identity: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for key, result in store.iter_results():
        if "job" in result:
            by_identity.setdefault(identity_of(result, key), []).append((key, result))
    todo = []
    for job in jobs:
        reason = recompute_reason(job, store, force, by_identity)
        if reason is None:
            summary.skipped.append(job.key)
        else:
            summary.reasons[job.key] = reason
            todo.append(job)
    sample_bars = executor.name == "local" and (show_progress is not False)
    redo_before = started if force else None
    with Bar(len(todo), "jobs", unit="job", show=show_progress) as bar:
        for args, outcome in executor.map(run_job, [(j.to_dict(), str(run_dir), sample_bars,
                                                     redo_before) for j in todo]):
            result = outcome if isinstance(outcome, dict) else record_crash(args[0], store,
                                                                             outcome)
            if result["status"] == "busy":
                summary.busy.append(result["key"])
            else:
                summary.executed.append(result)
            bar.update()
            if result["status"] not in ("ok", "done", "busy"):
                bar.set_postfix(f"{len(summary.failures)} failed")
    with store.lock():
        rebuild_metrics_csv(store)
    return summary


def reevaluate(run_dir: str | Path, cfg: EvalConfig, show_progress: bool | None = None) -> int:
    """Evaluates a stored run under `cfg` from its scores.npz (no model runs); returns the
    number of jobs evaluated. Results keep their other evaluations; metrics.csv is rebuilt.
    A damaged job, or one being computed by another process, is skipped with a warning."""
    from benchmark.run.evaluation import evaluate_scores
    from benchmark.run.store import StoreError, warn, write_json

    store = RunStore(run_dir).require()
    done = 0
    keys = [k for k, v in store.current(warn) if v.done]
    with Bar(len(keys), "evaluate", unit="job", show=show_progress) as bar:
        for key in keys:
            lock = store.job_lock(key)
            if not lock.acquire():
                warn(f"job {key} skipped: being computed by another process")
                continue
            try:
                result = store.load_result(key)
                scores = store.load_scores(key)
                result.setdefault("metrics", {})[cfg.id] = evaluate_scores(scores, cfg)
                write_json(store.result_path(key), result)
                done += 1
            except StoreError as err:
                warn(f"job {key} skipped: {err}")
            finally:
                lock.release()
            bar.update()
    with store.lock():
        rebuild_metrics_csv(store)
    return done
