"""Where jobs run: in this process, in a pool of processes, or on Slurm through submitit.

An executor has a ``name`` and ``map(fn, arg_tuples)``, which yields ``(args, outcome)`` as jobs
finish, in any order; ``outcome`` is ``fn(*args)`` or the exception that killed the worker
(the job function itself never raises: it records its own failures).
"""

from __future__ import annotations

import contextlib
import multiprocessing
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Any

from benchmark.errors import ConfigError

EXECUTORS = ("local", "processes", "slurm")
Outcome = tuple[tuple[Any, ...], Any]


class LocalExecutor:
    """Runs jobs one after the other in this process (the default)."""

    name = "local"

    def map(self, fn: Callable[..., Any], args: Sequence[tuple[Any, ...]]) -> Iterator[Outcome]:
        for a in args:
            yield a, fn(*a)


class ProcessExecutor:
    """A pool of `workers` fresh processes (spawned; one job per process, so a crash, a leak or
    a peak-memory reading stays with its job)."""

    name = "processes"

    def __init__(self, workers: int = 2) -> None:
        if workers < 1:
            raise ConfigError(f"--workers must be >= 1, got {workers}")
        self.workers = workers

    def map(self, fn: Callable[..., Any], args: Sequence[tuple[Any, ...]]) -> Iterator[Outcome]:
        if not args:
            return
        ctx = multiprocessing.get_context("spawn")
        pool = ProcessPoolExecutor(self.workers, mp_context=ctx, max_tasks_per_child=1,
                                   initializer=_ignore_sigint)
        futures: dict[Future, tuple[Any, ...]] = {}
        try:
            futures = {pool.submit(fn, *a): a for a in args}
            pending = set(futures)
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for fut in done:
                    try:
                        yield futures[fut], fut.result()
                    except Exception as err:  # the worker process died (OOM kill, segfault)
                        yield futures[fut], err
        except BaseException:  # Ctrl-C (or the consumer stopped): stop the workers now, quietly
            _stop_pool(pool, futures)
            raise
        pool.shutdown(wait=True)


def _stop_pool(pool: ProcessPoolExecutor, futures: Iterable[Future], grace_s: float = 10.0) -> None:
    """Cancels the queued jobs and terminates workers until no job runs, then shuts the pool.

    One pass is not enough: with max_tasks_per_child=1 the manager thread may be starting a
    replacement worker meanwhile, and a live worker keeps the manager (and so the interpreter's
    exit) waiting for ever. shutdown(wait=False) is not used: in Python 3.11 it races with
    that replacement and crashes the manager thread."""
    futures = list(futures)
    for fut in futures:
        fut.cancel()
    manager = getattr(pool, "_executor_manager_thread", None)
    deadline = time.monotonic() + grace_s
    while manager is not None and manager.is_alive() and any(f.running() for f in futures):
        late = time.monotonic() > deadline
        try:
            workers = list((getattr(pool, "_processes", None) or {}).values())
        except RuntimeError:  # the manager changed the dict under us: look again
            workers = []
        for proc in workers:
            if proc.is_alive():
                proc.kill() if late else proc.terminate()
        manager.join(0.05)
    pool.shutdown(wait=True)


def _ignore_sigint() -> None:
    """Workers leave Ctrl-C to the parent, which stops them (no traceback per worker)."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)


class SlurmExecutor:
    """Submits each job as a Slurm array task through submitit.

    `cluster` is passed to ``submitit.AutoExecutor``: None picks Slurm when available, "local"
    runs the same submission machinery with local subprocesses (used by the tests), "debug" runs
    in this process. `partition`, `time_min`, `gpus`, `cpus`, `mem_gb` and any extra
    ``slurm_*`` parameters are passed through.
    """

    name = "slurm"

    def __init__(self, folder: str | Path, *, cluster: str | None = None,
                 partition: str | None = None, time_min: int = 240, gpus: int = 0,
                 cpus: int | None = None, mem_gb: float | None = None, parallelism: int = 64,
                 poll_s: float = 1.0, extra: dict[str, Any] | None = None) -> None:
        try:
            import submitit
        except ImportError as err:
            raise ConfigError("the slurm executor needs submitit (pip install submitit)") from err
        self.executor = submitit.AutoExecutor(folder=str(folder), cluster=cluster)
        params: dict[str, Any] = {"timeout_min": int(time_min), "gpus_per_node": int(gpus),
                                  "slurm_array_parallelism": int(parallelism),
                                  "name": "benchmark3dad"}
        if partition:
            params["slurm_partition"] = partition
        if cpus:
            params["cpus_per_task"] = int(cpus)
        if mem_gb:
            params["mem_gb"] = float(mem_gb)
        params.update(extra or {})
        self.executor.update_parameters(**params)
        self.poll_s = poll_s
        self.submitted: list[Any] = []

    def map(self, fn: Callable[..., Any], args: Sequence[tuple[Any, ...]]) -> Iterator[Outcome]:
        if not args:
            return
        with _sigint_ignored_in_children():  # local-cluster controllers leave Ctrl-C to us
            with self.executor.batch():
                jobs = [self.executor.submit(fn, *a) for a in args]
        self.submitted = jobs
        pending = dict(zip(range(len(jobs)), jobs))
        try:
            while pending:
                finished = [i for i, j in pending.items() if j.done()]
                for i in finished:
                    job = pending.pop(i)
                    try:
                        yield args[i], job.result()
                    except Exception as err:  # the task failed outside the job function
                        yield args[i], err
                if pending and not finished:
                    time.sleep(self.poll_s)
        except BaseException:  # Ctrl-C: cancel what is still queued or running
            for job in pending.values():
                try:
                    process = getattr(job, "_process", None)  # submitit's local-cluster jobs
                    if process is not None:
                        process.terminate()  # its controller forwards SIGTERM to the task
                    else:
                        job.cancel(check=False)
                except Exception:  # noqa: BLE001 - best effort; the interrupt wins
                    pass
            raise


@contextlib.contextmanager
def _sigint_ignored_in_children() -> Iterator[None]:
    """Ignores SIGINT while child processes are started, so they inherit SIG_IGN (Python then
    installs no KeyboardInterrupt handler in them); the parent stops them on Ctrl-C."""
    import signal

    try:
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def make_executor(name: str, *, workers: int = 2, folder: str | Path | None = None,
                  **slurm: Any) -> Any:
    if name == "local":
        return LocalExecutor()
    if name == "processes":
        return ProcessExecutor(workers)
    if name == "slurm":
        if folder is None:
            raise ConfigError("the slurm executor needs a log folder")
        return SlurmExecutor(folder, **slurm)
    raise ConfigError(f"unknown executor '{name}'; known: {list(EXECUTORS)}")
