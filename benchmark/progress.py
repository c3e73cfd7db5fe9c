"""Progress bars for jobs and samples that stay quiet when the output is not a terminal.

``BENCHMARK_PROGRESS=1`` forces bars on (e.g. under Slurm with a log that is tailed), ``=0`` off.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

T = TypeVar("T")


def enabled(stream: Any = None) -> bool:
    """Whether bars are drawn: the env override, else whether `stream` (stderr) is a TTY."""
    forced = os.environ.get("BENCHMARK_PROGRESS", "").strip().lower()
    if forced in ("1", "true", "yes", "on"):
        return True
    if forced in ("0", "false", "no", "off"):
        return False
    stream = stream if stream is not None else sys.stderr
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


class Bar:
    """A tqdm bar when enabled, a no-op otherwise (same small interface either way)."""

    def __init__(self, total: int | None, desc: str, unit: str = "it", leave: bool = True,
                 show: bool | None = None) -> None:
        self._bar = None
        if enabled() if show is None else (show and enabled()):
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total, desc=desc, unit=unit, leave=leave, dynamic_ncols=True)

    def update(self, n: int = 1) -> None:
        if self._bar is not None:
            self._bar.update(n)

    def set_postfix(self, text: str) -> None:
        if self._bar is not None:
            self._bar.set_postfix_str(text, refresh=False)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()

    def __enter__(self) -> Bar:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def track(items: Iterable[T], total: int | None = None, desc: str = "", unit: str = "it",
          show: bool | None = None) -> Iterator[T]:
    """Yields `items`, advancing a bar (drawn only on a terminal)."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    with Bar(total, desc, unit=unit, leave=False, show=show) as bar:
        for item in items:
            yield item
            bar.update()
