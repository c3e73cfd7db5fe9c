"""Performance suites for `make perf`. A suite is a function ``(quick: bool) -> list[dict]``
registered with ``@suite("name")`` in a module of this package; each dict is one table row."""

from __future__ import annotations

import importlib
import pkgutil
import resource
from collections.abc import Callable

SUITES: dict[str, Callable[..., list[dict]]] = {}


def suite(name: str):
    def add(fn: Callable[..., list[dict]]) -> Callable[..., list[dict]]:
        SUITES[name] = fn
        return fn

    return add


def discover() -> None:
    for info in pkgutil.iter_modules(__path__, __name__ + "."):
        importlib.import_module(info.name)


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def print_rows(rows: list[dict]) -> None:
    if not rows:
        print("(no rows)")
        return
    cols = list(dict.fromkeys(k for row in rows for k in row))
    fmt = [
        [
            f"{row.get(c, ''):.4g}" if isinstance(row.get(c), float) else str(row.get(c, ""))
            for c in cols
        ]
        for row in rows
    ]
    widths = [max(len(c), *(len(r[i]) for r in fmt)) for i, c in enumerate(cols)]
    print("| " + " | ".join(c.ljust(w) for c, w in zip(cols, widths)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in fmt:
        print("| " + " | ".join(v.ljust(w) for v, w in zip(r, widths)) + " |")
