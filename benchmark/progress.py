"""Progress: bars on a terminal, plain log lines elsewhere (CI logs, nohup, Slurm).

``BENCHMARK_PROGRESS`` chooses the mode:
- unset: bars when stderr is a terminal, log lines otherwise;
- ``1`` / ``bars``: bars always (e.g. a tailed Slurm log);
- ``log``: log lines always;
- ``0`` / ``off``: nothing.

Log lines go to stderr: one per finished job (``[3/10] ok     <job title>``, failures with their
error) and, while a bar is open, a ``still running`` line every ``BENCHMARK_PROGRESS_INTERVAL``
seconds (default 60) without other output, so a long job shows it is alive.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

T = TypeVar("T")
_active: list[Bar] = []  # open log-mode bars; only the innermost one sends heartbeats
_last_line = [time.monotonic()]
_ON = ("1", "true", "yes", "on", "bars")
_OFF = ("0", "false", "no", "off")


def mode(stream: Any = None) -> str:
    """"bars", "log" or "off" (see the module docstring)."""
    forced = os.environ.get("BENCHMARK_PROGRESS", "").strip().lower()
    if forced in _ON:
        return "bars"
    if forced in _OFF:
        return "off"
    if forced == "log":
        return "log"
    stream = stream if stream is not None else sys.stderr
    isatty = getattr(stream, "isatty", None)
    return "bars" if isatty and isatty() else "log"


def enabled(stream: Any = None) -> bool:
    """Whether bars are drawn (the env override, else whether stderr is a TTY)."""
    return mode(stream) == "bars"


def interval_s() -> float:
    try:
        return max(0.05, float(os.environ.get("BENCHMARK_PROGRESS_INTERVAL", "60")))
    except ValueError:
        return 60.0


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class Bar:
    """A tqdm bar on a terminal; log lines (`log`, periodic heartbeat) when the output is not a
    terminal; nothing when off or when `show` is False (same small interface either way)."""

    def __init__(self, total: int | None, desc: str, unit: str = "it", leave: bool = True,
                 show: bool | None = None) -> None:
        self._bar = None
        self.total, self.desc, self.unit = total, desc.strip(), unit
        self.n = 0
        self._mode = "off" if show is False else mode()
        self._postfix = ""
        self._started = time.monotonic()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if self._mode == "bars":
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total, desc=desc, unit=unit, leave=leave, dynamic_ncols=True)
        elif self._mode == "log":
            _active.append(self)
            self._thread = threading.Thread(target=self._heartbeat, daemon=True)
            self._thread.start()

    def _emit(self, text: str) -> None:
        _last_line[0] = time.monotonic()
        print(text, file=sys.stderr, flush=True)

    def _count(self) -> str:
        return f"{self.n}/{self.total}" if self.total is not None else str(self.n)

    def _heartbeat(self) -> None:
        every = interval_s()
        while not self._stop.wait(min(every, 1.0)):
            now = time.monotonic()
            if _active and _active[-1] is self and now - _last_line[0] >= every:
                extra = f", {self._postfix}" if self._postfix else ""
                self._emit(f"{self.desc}: {self._count()} {self.unit}s done{extra}, still "
                           f"running ({_duration(now - self._started)} elapsed)")

    def update(self, n: int = 1) -> None:
        self.n += n
        if self._bar is not None:
            self._bar.update(n)

    def log(self, text: str) -> None:
        """One line about the item just finished (log mode only; bars stay as they are)."""
        if self._mode == "log":
            self._emit(f"[{self._count()}] {text}")

    def set_postfix(self, text: str) -> None:
        self._postfix = text
        if self._bar is not None:
            self._bar.set_postfix_str(text, refresh=False)

    def close(self) -> None:
        self._stop.set()
        if self in _active:
            _active.remove(self)
        if self._bar is not None:
            self._bar.close()

    def __enter__(self) -> Bar:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def track(items: Iterable[T], total: int | None = None, desc: str = "", unit: str = "it",
          show: bool | None = None) -> Iterator[T]:
    """Yields `items`, advancing a bar (on a terminal) or a heartbeat line (in a log)."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    with Bar(total, desc, unit=unit, leave=False, show=show) as bar:
        for item in items:
            yield item
            bar.update()
