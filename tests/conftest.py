"""Shared test setup: offline, small thread counts, a private cache per test session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("BENCHMARK_OFFLINE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "2")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session", autouse=True)
def _private_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Every test session gets its own cache and weights folder (nothing from the user's)."""
    root = tmp_path_factory.mktemp("benchmark-cache")
    os.environ["BENCHMARK_CACHE"] = str(root / "cache")
    os.environ["BENCHMARK_WEIGHTS"] = str(root / "weights")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real dataset samples beside the checkout (skips when absent, as in a user's clone)."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real sample data not found at {SHARED_DATA}")
    return SHARED_DATA
