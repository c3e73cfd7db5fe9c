"""The results store of one run folder (DESIGN §6)::

    <run>/manifest.json             command, config, environment, jobs of the last invocation
    <run>/metrics.csv               long format: one row per (job, test category, metric, variant)
    <run>/jobs/<key>/result.json    status, metrics per evaluation, timings, memory, traceback
    <run>/jobs/<key>/scores.npz     per-sample scores, labels and dense maps (re-evaluation)

Every file is written atomically (temporary file + rename); ``result.json`` is written last, so a
job whose ``result.json`` says ``ok`` has a complete ``scores.npz``.

``scores.npz`` holds, per test category i (array names prefixed ``c<i>.``): ``ids``, ``labels``,
``scores``; ``point_scores``/``point_masks``/``points`` concatenated over samples with
``point_offsets``; for organized data ``grid_shapes`` and, concatenated row-major, ``pixel_masks``
(GT at native resolution), ``valid`` (cells with a 3D point), ``grid_index`` when it differs from
the valid cells, and the method's own ``pixel_scores`` with ``map_shapes``.
"""

from __future__ import annotations

import json
import math
import os
import zipfile
from collections.abc import Iterator
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
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as err:
        raise StoreError(f"scores file {path} is unreadable: {err}") from err
    n = int(arrays["n_categories"])
    return [CategoryScores.from_arrays(arrays, f"c{i}.") for i in range(n)]


# --------------------------------------------------------------------------------------------
# the run folder


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

    def job_dir(self, key: str) -> Path:
        return self.dir / "jobs" / key

    def result_path(self, key: str) -> Path:
        return self.job_dir(key) / "result.json"

    def scores_path(self, key: str) -> Path:
        return self.job_dir(key) / "scores.npz"

    def exists(self) -> bool:
        return self.manifest_path.is_file()

    def require(self) -> RunStore:
        if not self.exists():
            raise StoreError(f"{self.dir} is not a run folder (no manifest.json)")
        return self

    def clean_stale(self) -> int:
        """Removes temporary files left by an interrupted write; returns how many."""
        removed = 0
        if not self.dir.is_dir():
            return 0
        for tmp in list(self.dir.glob(".*.*")) + list(self.dir.glob("jobs/*/.*")):
            if tmp.is_file():
                tmp.unlink(missing_ok=True)
                removed += 1
        return removed

    def status(self, key: str) -> str | None:
        """"ok", "failed", or None when the job has no readable result."""
        try:
            result = self.load_result(key)
        except StoreError:
            return None
        if result.get("status") == "ok" and not self.scores_path(key).is_file():
            return None
        return result.get("status")

    def load_result(self, key: str) -> dict[str, Any]:
        path = self.result_path(key)
        if not path.is_file():
            raise StoreError(f"no result for job {key} ({path})")
        try:
            return json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise StoreError(f"result file {path} is unreadable: {err}") from err

    def save_result(self, key: str, result: dict[str, Any]) -> None:
        write_json(self.result_path(key), result)

    def save_scores(self, key: str, categories: list[CategoryScores]) -> None:
        save_scores(self.scores_path(key), categories)

    def load_scores(self, key: str) -> list[CategoryScores]:
        path = self.scores_path(key)
        if not path.is_file():
            raise StoreError(f"job {key} has no scores file ({path})")
        return load_scores(path)

    def write_manifest(self, manifest: dict[str, Any]) -> None:
        write_json(self.manifest_path, manifest)

    def read_manifest(self) -> dict[str, Any]:
        self.require()
        try:
            return json.loads(self.manifest_path.read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise StoreError(f"{self.manifest_path} is unreadable: {err}") from err

    def job_keys(self) -> list[str]:
        """The jobs of the run's last invocation (manifest order)."""
        return [j["key"] for j in self.read_manifest().get("jobs", [])]

    def iter_results(self) -> Iterator[tuple[str, dict[str, Any]]]:
        for key in self.job_keys():
            try:
                yield key, self.load_result(key)
            except StoreError:
                continue
