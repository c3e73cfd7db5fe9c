"""Per-stage timing of detectors (reported per job in result.json as ``timings.stages_s``)."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager


class StageTimer:
    """Accumulates wall-clock seconds per named stage; `per_sample()` averages them."""

    def __init__(self) -> None:
        self.total: dict[str, float] = defaultdict(float)
        self.count: dict[str, int] = defaultdict(int)

    @contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.total[stage] += time.perf_counter() - t0
            self.count[stage] += 1

    def per_sample(self) -> dict[str, float]:
        return {k: self.total[k] / max(self.count[k], 1) for k in self.total}
