"""Recipe-keyed cache for expensive preprocessing, and atomic file writes.

The cache root is ``$BENCHMARK_CACHE`` or ``~/.cache/benchmark3dad``. An entry lives at
``<root>/<kind>/<recipe hash>/``; it is written into a temporary folder and renamed into place, so
an interrupted computation never leaves a half-written entry behind.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any


def cache_root() -> Path:
    root = os.environ.get("BENCHMARK_CACHE") or Path.home() / ".cache" / "benchmark3dad"
    return Path(root)


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "tolist"):
        return value.tolist()
    return value


def recipe_hash(recipe: dict[str, Any], length: int = 16) -> str:
    """Stable hash of a recipe (any JSON-able dict; numpy arrays and paths allowed)."""
    text = json.dumps(_jsonable(recipe), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def entry_dir(kind: str, recipe: dict[str, Any]) -> Path:
    return cache_root() / kind / recipe_hash(recipe)


def cached_dir(kind: str, recipe: dict[str, Any], build: Callable[[Path], None]) -> Path:
    """Returns the cache folder of `recipe`, calling ``build(tmp_dir)`` to fill it when missing.

    `build` writes into a fresh temporary folder that is renamed into place only when it returns.
    """
    final = entry_dir(kind, recipe)
    if (final / ".complete").exists():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    try:
        build(tmp)
        (tmp / "recipe.json").write_text(json.dumps(_jsonable(recipe), indent=1, default=str))
        (tmp / ".complete").touch()
        try:
            os.replace(tmp, final)
        except OSError:  # another process finished first (or a stale folder is in the way)
            if (final / ".complete").exists():
                shutil.rmtree(tmp, ignore_errors=True)
            else:
                shutil.rmtree(final, ignore_errors=True)
                os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Writes `data` to `path` through a temporary file in the same folder and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; results must stay shareable
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def atomic_save_npz(path: str | os.PathLike, **arrays: Any) -> None:
    """`numpy.savez_compressed` through a temporary file and a rename."""
    import io

    import numpy as np

    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    atomic_write_bytes(path, buf.getvalue())
