"""Base pieces of dataset adapters: the file index record, the lazy sample sequence, fingerprints,
descriptions and category checks.

An adapter scans folders only (cheap) to build `Record`s — one per sample with its files — and
loads a `Sample` from a record when the sequence item is accessed. Nothing is read before that.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, overload

from benchmark.errors import DatasetError
from benchmark.sample import Sample


@dataclass(frozen=True)
class Record:
    """What the folder scan knows about one sample, before any file is read."""

    id: str
    category: str
    split: str
    defect: str
    label: int
    files: dict[str, str] = field(default_factory=dict)


class SampleSequence(Sequence):
    """A read-only sequence of samples whose items are loaded (by `loader`) only on access."""

    def __init__(self, records: Sequence[Record], loader: Callable[[Record], Sample]) -> None:
        self.records = list(records)
        self._loader = loader

    def __len__(self) -> int:
        return len(self.records)

    @overload
    def __getitem__(self, index: int) -> Sample: ...

    @overload
    def __getitem__(self, index: slice) -> SampleSequence: ...

    def __getitem__(self, index):
        if isinstance(index, slice):
            return SampleSequence(self.records[index], self._loader)
        return self._loader(self.records[index])

    def __iter__(self) -> Iterator[Sample]:
        for record in self.records:
            yield self._loader(record)

    @property
    def labels(self) -> list[int]:
        return [r.label for r in self.records]

    @property
    def ids(self) -> list[str]:
        return [r.id for r in self.records]

    def __repr__(self) -> str:
        return f"SampleSequence({len(self)} samples)"


def require_dir(path: Path, what: str) -> Path:
    if not path.is_dir():
        raise DatasetError(f"{path}: {what} not found (expected a folder)")
    return path


#: files whose mtime is this recent are re-hashed next time (an edit within the same clock tick
#: could otherwise keep size and mtime; the "racy git" problem)
_RACY_NS = 2_000_000_000


def _file_digest(path: Path) -> str:
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _hash_cache_path(root: Path) -> Path:
    from benchmark.cache import cache_root

    name = hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:24]
    return cache_root() / "fingerprints" / f"{name}.json"


def fingerprint_tree(root: Path, patterns: Sequence[str] = ("**/*",)) -> str:
    """A hash of the relative paths and contents of the files under `root` (hidden files and
    folders excluded).

    Content hashes are cached in ``<cache>/fingerprints/`` keyed by path, size, mtime and ctime,
    so a rerun reads only files that changed since (an in-place edit that keeps the size still
    changes mtime/ctime and is re-hashed)."""
    import json

    from benchmark.cache import atomic_write_text

    root = Path(root)
    cache_path = _hash_cache_path(root)
    try:
        cached = json.loads(cache_path.read_text())
    except (OSError, ValueError):
        cached = {}
    if not isinstance(cached, dict):
        cached = {}
    fresh: dict[str, list] = {}
    changed = False
    now = time.time_ns()
    entries = []
    for dirpath, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in files:
            if name.startswith("."):
                continue
            full = Path(dirpath) / name
            rel = full.relative_to(root).as_posix()
            try:
                st = full.stat()
            except OSError:
                continue
            stamp = [st.st_size, st.st_mtime_ns, st.st_ctime_ns]
            hit = cached.get(rel)
            if isinstance(hit, list) and len(hit) == 4 and hit[:3] == stamp:
                digest = hit[3]
            else:
                try:
                    digest = _file_digest(full)
                except OSError:
                    continue
                changed = True
            if now - max(st.st_mtime_ns, st.st_ctime_ns) > _RACY_NS:
                fresh[rel] = [*stamp, digest]
            else:
                changed = True
            entries.append(f"{rel}\t{st.st_size}\t{digest}")
    if changed or set(fresh) != set(cached):
        try:
            atomic_write_text(cache_path, json.dumps(fresh, separators=(",", ":")))
        except OSError:  # a read-only cache only costs speed
            pass
    h = hashlib.sha256()
    for line in sorted(entries):
        h.update(line.encode())
        h.update(b"\n")
    return h.hexdigest()[:16]


class DatasetBase:
    """Common behaviour of the adapters. Subclasses set `name`, `organized`, implement
    `_scan_categories()`, `_records(category, split)` and `_load(record)`."""

    name: str = "dataset"
    organized: bool = False
    splits: tuple[str, ...] = ("train", "test")

    def __init__(self, root: str | os.PathLike) -> None:
        if root is None:
            raise DatasetError(f"{self.name}: no dataset root given (pass root=...)")
        self.root = Path(root).expanduser()
        require_dir(self.root, f"{self.name} dataset root")
        self._categories: list[str] | None = None
        self._index: dict[tuple[str, str], list[Record]] = {}

    # ---- to implement
    def _scan_categories(self) -> list[str]:
        raise NotImplementedError

    def _records(self, category: str, split: str) -> list[Record]:
        raise NotImplementedError

    def _load(self, record: Record) -> Sample:
        raise NotImplementedError

    # ---- public API
    @property
    def categories(self) -> list[str]:
        if self._categories is None:
            cats = sorted(self._scan_categories())
            if not cats:
                raise DatasetError(f"{self.root}: no {self.name} categories found")
            self._categories = cats
        return list(self._categories)

    def check_category(self, category: str) -> str:
        if category not in self.categories:
            raise DatasetError(
                f"{self.root}: unknown {self.name} category {category!r}; "
                f"known categories: {', '.join(self.categories)}"
            )
        return category

    def records(self, category: str, split: str) -> list[Record]:
        self.check_category(category)
        key = (category, split)
        if key not in self._index:
            self._index[key] = self._records(category, split)
        return self._index[key]

    def train(self, category: str) -> SampleSequence:
        return SampleSequence(self.records(category, "train"), self._load)

    def validation(self, category: str) -> SampleSequence:
        if "validation" not in self.splits:
            raise DatasetError(f"{self.root}: {self.name} has no validation split")
        recs = self.records(category, "validation")
        if not recs:
            raise DatasetError(
                f"{self.root}: {self.name} category {category!r} has no validation samples"
            )
        return SampleSequence(recs, self._load)

    def test(self, category: str) -> SampleSequence:
        return SampleSequence(self.records(category, "test"), self._load)

    def fingerprint(self) -> str:
        return fingerprint_tree(self.root)

    def describe(self):
        """Counts per category, split and defect type (from the folder scan; no file is read)."""
        import pandas as pd

        rows: list[dict[str, Any]] = []
        for cat in self.categories:
            for split in self.splits:
                counts: dict[tuple[str, int], int] = {}
                for r in self.records(cat, split):
                    counts[(r.defect, r.label)] = counts.get((r.defect, r.label), 0) + 1
                for (defect, label), n in sorted(counts.items()):
                    rows.append(
                        {
                            "category": cat,
                            "split": split,
                            "defect": defect,
                            "label": label,
                            "count": n,
                        }
                    )
        return pd.DataFrame(rows, columns=["category", "split", "defect", "label", "count"])

    def __repr__(self) -> str:
        return f"{type(self).__name__}(root={str(self.root)!r})"
