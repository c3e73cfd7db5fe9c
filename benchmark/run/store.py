"""The results store of one run folder (DESIGN §6)::

    <run>/manifest.json             marker (kind), command, config, environment, jobs of the last
                                    invocation, the current job of each job identity
    <run>/metrics.csv               long format: one row per (job, test category, metric, variant)
                                    of every current job in the folder, whatever command wrote it
    <run>/jobs/<key>/result.json    status, metrics per evaluation, timings, memory, traceback,
                                    size and per-category counts of scores.npz
    <run>/jobs/<key>/scores.npz     per-sample scores, labels and dense maps (re-evaluation)

Every file is written atomically (temporary file ``.<name>.<random>`` + rename); ``result.json`` is
written last, and a job counts as done only when its files verify (`RunStore.verify`).
``<run>/.lock`` (aggregate files) and ``jobs/<key>/.lock`` (a job being computed) are ``flock``
locks, so concurrent runs into one folder split the jobs between them.

``scores.npz`` holds, per test category i (array names prefixed ``c<i>.``): ``ids``, ``labels``,
``scores``; ``point_scores``/``point_masks``/``points`` concatenated over samples with
``point_offsets``; for organized data ``grid_shapes`` and, concatenated row-major, ``pixel_masks``
(GT at native resolution), ``valid`` (cells with a 3D point), ``grid_index`` when it differs from
the valid cells, and the method's own ``pixel_scores`` with ``map_shapes``.
"""

from __future__ import annotations

import fcntl
import json
import math
import os
import re
import sys
import time
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from benchmark.cache import atomic_save_npz, atomic_write_text
from benchmark.errors import BenchmarkError
from benchmark.sample import Prediction, Sample

#: unorganized clouds are stored with their coordinates (needed by the framework-defined point
#: AUPRO) only up to this many points per category ($BENCHMARK_MAX_STORED_POINTS); beyond it the
#: point AUPRO is not computed, neither at run time nor on re-evaluation
MAX_STORED_POINTS = int(os.environ.get("BENCHMARK_MAX_STORED_POINTS", 5_000_000))


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    return str(value)


def _clean_nan(value: Any) -> Any:
    """JSON has no NaN: undefined metrics become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean_nan(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean_nan(v) for v in value]
    return value


def write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(_clean_nan(data), indent=1, default=_json_default) + "\n")


class StoreError(BenchmarkError):
    """A run folder or one of its files is missing or unreadable."""


# --------------------------------------------------------------------------------------------
# per-category score sets


@dataclass
class CategoryScores:
    """Everything needed to evaluate one test category of one job, as flat numpy arrays."""

    category: str
    ids: np.ndarray
    labels: np.ndarray
    scores: np.ndarray
    point_offsets: np.ndarray | None = None
    point_scores: np.ndarray | None = None
    point_masks: np.ndarray | None = None
    points: np.ndarray | None = None
    grid_shapes: np.ndarray | None = None
    pixel_masks: np.ndarray | None = None
    valid: np.ndarray | None = None
    grid_index: np.ndarray | None = None
    pixel_scores: np.ndarray | None = None
    map_shapes: np.ndarray | None = None

    ARRAYS = ("ids", "labels", "scores", "point_offsets", "point_scores", "point_masks", "points",
              "grid_shapes", "pixel_masks", "valid", "grid_index", "pixel_scores", "map_shapes")

    @property
    def organized(self) -> bool:
        return self.grid_shapes is not None

    def __len__(self) -> int:
        return len(self.ids)

    # ragged accessors ------------------------------------------------------------------------
    def _cells(self) -> np.ndarray:
        sizes = self.grid_shapes[:, 0] * self.grid_shapes[:, 1]
        return np.concatenate([[0], np.cumsum(sizes)])

    def point_slice(self, i: int) -> slice:
        return slice(int(self.point_offsets[i]), int(self.point_offsets[i + 1]))

    def sample_points_scores(self, i: int) -> np.ndarray:
        return self.point_scores[self.point_slice(i)]

    def sample_grid(self, name: str, i: int) -> np.ndarray:
        """`pixel_masks` or `valid` of sample i as an (H, W) array."""
        cells = self._cells()
        h, w = (int(v) for v in self.grid_shapes[i])
        return getattr(self, name)[cells[i]:cells[i + 1]].reshape(h, w)

    def sample_grid_index(self, i: int) -> np.ndarray:
        if self.grid_index is not None:
            return self.grid_index[self.point_slice(i)]
        return np.flatnonzero(self.sample_grid("valid", i))

    def sample_pixel_scores(self, i: int) -> np.ndarray | None:
        if self.pixel_scores is None:
            return None
        sizes = self.map_shapes[:, 0] * self.map_shapes[:, 1]
        starts = np.concatenate([[0], np.cumsum(sizes)])
        h, w = (int(v) for v in self.map_shapes[i])
        return self.pixel_scores[starts[i]:starts[i + 1]].reshape(h, w)

    def to_arrays(self, prefix: str) -> dict[str, np.ndarray]:
        out = {f"{prefix}category": np.array(self.category)}
        for name in self.ARRAYS:
            value = getattr(self, name)
            if value is not None:
                out[prefix + name] = value
        return out

    @classmethod
    def from_arrays(cls, arrays: Any, prefix: str) -> CategoryScores:
        kwargs = {name: arrays[prefix + name] for name in cls.ARRAYS if prefix + name in arrays}
        return cls(category=str(arrays[prefix + "category"]), **kwargs)


@dataclass
class ScoreCollector:
    """Accumulates (sample, prediction) pairs of one test category into a `CategoryScores`."""

    category: str
    max_points: int = MAX_STORED_POINTS
    ids: list[str] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    _pts: dict[str, list[np.ndarray]] = field(default_factory=dict)
    _org: dict[str, list[np.ndarray]] = field(default_factory=dict)
    _n_points: int = 0
    _flags: dict[str, bool] = field(default_factory=dict)

    def _append(self, store: dict[str, list[np.ndarray]], name: str, value: np.ndarray | None,
                first: bool) -> None:
        # an output is stored only if every sample has it (otherwise metrics are undefined)
        ok = self._flags.get(name, first) and value is not None
        self._flags[name] = ok
        if ok:
            store.setdefault(name, []).append(value)
        else:
            store.pop(name, None)

    def add(self, sample: Sample, pred: Prediction) -> None:
        pred.check_against(sample)
        first = not self.ids
        if not first and sample.organized != ("grid_shapes" in self._org):
            raise BenchmarkError(f"category {self.category}: organized and unorganized samples mix")
        self.ids.append(sample.id)
        self.labels.append(int(sample.label))
        self.scores.append(float(pred.score))
        self._append(self._pts, "point_scores", pred.point_scores, first)
        self._append(self._pts, "point_masks", sample.point_mask, first)
        self._pts.setdefault("point_counts", []).append(np.array([len(sample.points)]))
        self._n_points += len(sample.points)
        if not sample.organized:
            keep = self._n_points <= self.max_points
            self._append(self._pts, "points", sample.points if keep else None, first)
            return
        h, w = sample.grid_shape
        self._org.setdefault("grid_shapes", []).append(np.array([[h, w]]))
        mask = sample.pixel_mask if sample.pixel_mask is not None else np.zeros((h, w), np.uint8)
        self._org.setdefault("pixel_masks", []).append((mask.reshape(-1) > 0).astype(np.uint8))
        valid = np.zeros(h * w, np.uint8)
        valid[sample.grid_index] = 1
        self._org.setdefault("valid", []).append(valid)
        self._org.setdefault("grid_index", []).append(sample.grid_index)
        if not np.array_equal(sample.grid_index, np.flatnonzero(valid)):
            self._flags["grid_index_needed"] = True
        ps = pred.pixel_scores
        self._append(self._org, "pixel_scores", None if ps is None else ps.reshape(-1), first)
        self._append(self._org, "map_shapes", None if ps is None else np.array([ps.shape]), first)

    def finish(self) -> CategoryScores:
        if not self.ids:
            raise BenchmarkError(f"test category {self.category} has no samples")
        counts = np.concatenate(self._pts["point_counts"])
        cat = lambda store, name: (np.concatenate(store[name]) if name in store else None)  # noqa: E731
        result = CategoryScores(
            category=self.category,
            ids=np.array(self.ids),
            labels=np.array(self.labels, np.int8),
            scores=np.array(self.scores, np.float64),
            point_offsets=np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
            point_scores=cat(self._pts, "point_scores"),
            point_masks=cat(self._pts, "point_masks"),
            points=cat(self._pts, "points"),
        )
        if self._org:
            result.grid_shapes = cat(self._org, "grid_shapes").astype(np.int64)
            result.pixel_masks = cat(self._org, "pixel_masks")
            result.valid = cat(self._org, "valid")
            if self._flags.get("grid_index_needed"):
                result.grid_index = cat(self._org, "grid_index").astype(np.int64)
            result.pixel_scores = cat(self._org, "pixel_scores")
            if result.pixel_scores is not None:
                result.pixel_scores = result.pixel_scores.astype(np.float32)
                result.map_shapes = cat(self._org, "map_shapes").astype(np.int64)
        return result


def save_scores(path: Path, categories: list[CategoryScores]) -> None:
    arrays: dict[str, np.ndarray] = {"n_categories": np.array(len(categories))}
    for i, cs in enumerate(categories):
        arrays.update(cs.to_arrays(f"c{i}."))
    atomic_save_npz(path, **arrays)


def load_scores(path: Path) -> list[CategoryScores]:
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
        n = int(arrays["n_categories"])
        return [CategoryScores.from_arrays(arrays, f"c{i}.") for i in range(n)]
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError, zlib.error) as err:
        raise StoreError(f"scores file {path} is unreadable: {type(err).__name__}: {err}"
                         ) from err


# --------------------------------------------------------------------------------------------
# locks


class FileLock:
    """An exclusive ``fcntl.flock`` on `path`, held while the context is open.

    The lock file is removed on release (while still held), so no lock file outlives its holder
    except after a kill; whoever then locks a path that was unlinked under it retries on the new
    file. ``blocking=False`` makes `acquire` return False instead of waiting.
    """

    def __init__(self, path: str | Path, blocking: bool = True, timeout: float | None = None
                 ) -> None:
        self.path = Path(path)
        self.blocking = blocking
        self.timeout = timeout
        self._fd: int | None = None

    def acquire(self) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        deadline = None if self.timeout is None else time.monotonic() + self.timeout
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
            try:
                if self.blocking and deadline is None:
                    fcntl.flock(fd, fcntl.LOCK_EX)
                else:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                if not self.blocking:
                    return False
                if time.monotonic() > deadline:
                    raise StoreError(f"timed out waiting for the lock {self.path}") from None
                time.sleep(0.05)
                continue
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                self._fd = fd
                return True
            os.close(fd)  # the holder removed the file while we waited: lock the new one

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            self.path.unlink(missing_ok=True)
        finally:
            os.close(self._fd)  # closing releases the flock
            self._fd = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def __enter__(self) -> FileLock:
        if not self.acquire():
            raise StoreError(f"{self.path} is locked by another process")
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()


# --------------------------------------------------------------------------------------------
# the run folder

#: the ``kind`` field of a run folder's manifest.json: what makes a folder a run folder
RUN_KIND = "benchmark3dad-run"
#: the files the store writes; its temporary files are ``.<name>.<random>`` next to them
STORE_FILES = ("manifest.json", "metrics.csv", "result.json", "scores.npz")
_TEMP_NAME = re.compile(r"^\.(" + "|".join(re.escape(n) for n in STORE_FILES) + r")\.[a-z0-9_]+$")


@dataclass
class Verdict:
    """Whether a job's files verify: `status` is "ok", "failed" or None (no usable result)."""

    status: str | None
    reason: str = ""
    result: dict[str, Any] | None = None

    @property
    def done(self) -> bool:
        return self.status == "ok"


class RunStore:
    """Access to one run folder; all writes are atomic."""

    def __init__(self, run_dir: str | Path) -> None:
        self.dir = Path(run_dir)

    @property
    def manifest_path(self) -> Path:
        return self.dir / "manifest.json"

    @property
    def metrics_path(self) -> Path:
        return self.dir / "metrics.csv"

    @property
    def lock_path(self) -> Path:
        return self.dir / ".lock"

    def job_dir(self, key: str) -> Path:
        return self.dir / "jobs" / key

    def result_path(self, key: str) -> Path:
        return self.job_dir(key) / "result.json"

    def scores_path(self, key: str) -> Path:
        return self.job_dir(key) / "scores.npz"

    def job_lock(self, key: str, blocking: bool = False) -> FileLock:
        return FileLock(self.job_dir(key) / ".lock", blocking=blocking)

    def lock(self, timeout: float | None = 600.0) -> FileLock:
        """The lock of the folder's aggregate files (manifest.json, metrics.csv)."""
        return FileLock(self.lock_path, blocking=True, timeout=timeout)

    def exists(self) -> bool:
        """Whether the folder is a run folder: its manifest.json carries the store's marker (or
        the layout of a manifest written before the marker existed)."""
        if not self.manifest_path.is_file():
            return False
        try:
            data = json.loads(self.manifest_path.read_text())
        except (OSError, ValueError):
            # a manifest being replaced, or damaged: a run folder if it has its jobs folder
            return (self.dir / "jobs").is_dir()
        if not isinstance(data, dict):
            return False
        return data.get("kind") == RUN_KIND or {"config", "jobs"} <= set(data)

    def require(self) -> RunStore:
        if not self.exists():
            raise StoreError(f"{self.dir} is not a run folder (no manifest.json of this benchmark)")
        return self

    def check_writable_target(self) -> None:
        """Refuses (touching nothing) an existing, non-empty folder that is not a run folder."""
        if not self.dir.exists():
            return
        if not self.dir.is_dir():
            raise StoreError(f"--out {self.dir} exists and is not a folder")
        own = [p for p in self.dir.iterdir()
               if p.name != self.lock_path.name and not self.is_temp_name(p.name)]
        if self.exists() or not own:
            return
        raise StoreError(
            f"--out {self.dir} is an existing folder that is not a run folder (it has files but "
            f"no manifest.json of this benchmark); refusing to write into it. Choose a new or "
            f"empty folder, or an existing run folder")

    def is_temp_name(self, name: str) -> bool:
        return bool(_TEMP_NAME.match(name))

    def clean_stale(self, keys: list[str] | None = None) -> int:
        """Removes temporary files left by an interrupted write of the store's own files (never
        anything else); in the folder itself and in the job folders of `keys` (all when None).
        Returns how many. Call it holding the locks of what it cleans."""
        removed = 0
        if not self.dir.is_dir():
            return 0
        folders = [self.dir]
        if keys is None:
            folders += [p for p in (self.dir / "jobs").glob("*") if p.is_dir()]
        else:
            folders += [self.job_dir(k) for k in keys]
        for folder in folders:
            if not folder.is_dir():
                continue
            for tmp in folder.iterdir():
                if self.is_temp_name(tmp.name) and tmp.is_file():
                    tmp.unlink(missing_ok=True)
                    removed += 1
        return removed

    # ---- one job ------------------------------------------------------------------------------
    def verify(self, key: str) -> Verdict:
        """Checks a job's files: result.json readable; for an ``ok`` result, scores.npz loads and
        holds the categories and sample counts result.json records."""
        try:
            result = self.load_result(key)
        except StoreError as err:
            return Verdict(None, "no result" if not self.result_path(key).exists() else str(err))
        status = result.get("status")
        if status != "ok":
            return Verdict(status, "previous attempt failed", result)
        path = self.scores_path(key)
        if not path.is_file():
            return Verdict(None, "scores.npz is missing", result)
        recorded = result.get("scores_file") or {}
        if "bytes" in recorded and path.stat().st_size != recorded["bytes"]:
            return Verdict(None, f"scores.npz has {path.stat().st_size} bytes, result.json "
                                 f"recorded {recorded['bytes']}", result)
        try:
            with np.load(path, allow_pickle=False) as data:
                n = int(data["n_categories"])
                counts = {str(data[f"c{i}.category"]): int(len(data[f"c{i}.ids"]))
                          for i in range(n)}
        except Exception as err:  # noqa: BLE001 - any damage means "recompute"
            return Verdict(None, f"scores.npz is unreadable: {type(err).__name__}: {err}",
                           result)
        expected = recorded.get("counts")
        if expected is None:  # results written before counts were recorded
            expected_cats = list((result.get("job") or {}).get("test_categories") or [])
            if expected_cats and sorted(expected_cats) != sorted(counts):
                return Verdict(None, f"scores.npz holds categories {sorted(counts)}, expected "
                                     f"{sorted(expected_cats)}", result)
        elif {str(k): int(v) for k, v in expected.items()} != counts:
            return Verdict(None, f"scores.npz holds {counts}, result.json recorded {expected}",
                           result)
        return Verdict("ok", "", result)

    def status(self, key: str) -> str | None:
        """"ok" (files verify), "failed", or None when the job has no usable result."""
        return self.verify(key).status

    def load_result(self, key: str) -> dict[str, Any]:
        path = self.result_path(key)
        if not path.is_file():
            raise StoreError(f"no result for job {key} ({path})")
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise StoreError(f"result file {path} is unreadable: {err}") from err
        if not isinstance(data, dict):
            raise StoreError(f"result file {path} is unreadable: not a JSON object")
        return data

    def save_result(self, key: str, result: dict[str, Any]) -> None:
        write_json(self.result_path(key), result)

    def save_scores(self, key: str, categories: list[CategoryScores]) -> dict[str, Any]:
        """Writes scores.npz; returns what result.json records to verify it later."""
        save_scores(self.scores_path(key), categories)
        return {"bytes": self.scores_path(key).stat().st_size,
                "counts": {cs.category: len(cs) for cs in categories}}

    def load_scores(self, key: str) -> list[CategoryScores]:
        path = self.scores_path(key)
        if not path.is_file():
            raise StoreError(f"job {key} has no scores file ({path})")
        return load_scores(path)

    # ---- the folder ---------------------------------------------------------------------------
    def write_manifest(self, manifest: dict[str, Any]) -> None:
        write_json(self.manifest_path, {"kind": RUN_KIND, **manifest})

    def read_manifest(self) -> dict[str, Any]:
        self.require()
        try:
            return json.loads(self.manifest_path.read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise StoreError(f"{self.manifest_path} is unreadable: {err}") from err

    def job_keys(self) -> list[str]:
        """The jobs of the run's last invocation (manifest order)."""
        return [j["key"] for j in self.read_manifest().get("jobs", [])]

    def all_keys(self) -> list[str]:
        """Every job folder with a result.json, whatever command wrote it (sorted)."""
        jobs = self.dir / "jobs"
        if not jobs.is_dir():
            return []
        return sorted(p.parent.name for p in jobs.glob("*/result.json"))

    def iter_results(self) -> Iterator[tuple[str, dict[str, Any]]]:
        """(key, result) of every readable result in the folder."""
        for key in self.all_keys():
            try:
                yield key, self.load_result(key)
            except StoreError:
                continue

    def current(self, warn: Callable[[str], None] | None = None
                ) -> list[tuple[str, Verdict]]:
        """The job results the folder's tables show: of every job that verifies (or failed),
        the current one per job identity (see `benchmark.run.spec.Job.identity`): the one the
        manifest names as current, else the newest. Damaged jobs are reported to `warn` (with
        their key and why) and left out."""
        chosen: dict[str, tuple[str, Verdict]] = {}
        pinned: dict[str, str] = {}
        try:
            pinned = dict(self.read_manifest().get("current") or {})
        except StoreError:
            pass
        for key in self.all_keys():
            verdict = self.verify(key)
            if verdict.status is None:
                if warn is not None:
                    warn(f"job {key}{_title(verdict.result)} skipped: {verdict.reason}")
                continue
            identity = identity_of(verdict.result or {}, key)
            previous = chosen.get(identity)
            if previous is None or pinned.get(identity) == key:
                chosen[identity] = (key, verdict)
                continue
            if pinned.get(identity) == previous[0]:
                continue
            if _finished(verdict.result) > _finished(previous[1].result):
                chosen[identity] = (key, verdict)
        return sorted(chosen.values(), key=lambda kv: kv[0])


def _title(result: dict[str, Any] | None) -> str:
    try:
        from benchmark.run.spec import Job

        return f" ({Job.from_dict(result['job']).title})"
    except Exception:  # noqa: BLE001 - the key alone names it
        return ""


def _finished(result: dict[str, Any] | None) -> str:
    return str((result or {}).get("finished") or "")


def identity_of(result: dict[str, Any], key: str) -> str:
    """The job identity of a stored result (recomputed from its job for results written before
    identities were recorded; its key when even that fails)."""
    found = result.get("identity") or (result.get("job") or {}).get("identity")
    if found:
        return str(found)
    try:
        from benchmark.run.spec import Job

        return Job.from_dict(result["job"]).identity
    except Exception:  # noqa: BLE001 - an unreadable job stands alone
        return key


def warn(message: str) -> None:
    """A warning on stderr (the CLI's channel for skipped, damaged or partial data)."""
    print(f"warning: {message}", file=sys.stderr)
