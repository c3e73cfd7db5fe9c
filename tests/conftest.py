"""Shared test setup: offline, small thread counts, a private cache per test session."""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
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


@pytest.fixture(autouse=True)
def _no_lingering_workers():
    """A test may not leave a child process or a non-daemon thread behind: either keeps the
    interpreter from exiting, so the suite would print its summary and then hang (as CI did)."""
    threads_before = set(threading.enumerate())
    yield
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline:
        children = multiprocessing.active_children()
        threads = [t for t in threading.enumerate() if t not in threads_before
                   and t.is_alive() and not t.daemon]
        if not children and not threads:
            return
        time.sleep(0.05)
    for child in children:
        child.kill()
    pytest.fail(f"the test left child processes {children} and threads {threads} running")
