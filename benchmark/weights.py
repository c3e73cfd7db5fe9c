"""Where pretrained weights come from: an explicit path, then the usual caches, then a download.

Offline with no weights this raises `WeightsError` naming the file and where to put it; it never
falls back to random initialisation (that happens only behind an explicit ``pretrained=False``).

Offline is decided once per process, before any download is attempted: ``HF_HUB_OFFLINE``,
``TRANSFORMERS_OFFLINE`` or ``BENCHMARK_OFFLINE`` set (to anything but 0) means offline;
``BENCHMARK_OFFLINE=0`` means online without a check; otherwise one quick reachability probe
(TCP connect to huggingface.co:443 / github.com:443, 3 s in all, name resolution included) decides,
and a failed probe sets ``HF_HUB_OFFLINE=1`` for the libraries loaded later, so a missing file is
refused in seconds with one line instead of a minute of hub retries.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from benchmark.errors import WeightsError


@dataclass(frozen=True)
class WeightSpec:
    """A named pretrained file: its file name, where to look, where it can be downloaded from."""

    name: str
    filename: str
    description: str
    url: str | None = None
    cache_globs: tuple[str, ...] = field(default_factory=tuple)


def weights_dir() -> Path:
    """Weights folder: ``$BENCHMARK_WEIGHTS``, else ``weights/`` of the cache root
    (``$BENCHMARK_CACHE``, default ``~/.cache/benchmark3dad``)."""
    from benchmark.cache import cache_root

    env = os.environ.get("BENCHMARK_WEIGHTS")
    return Path(env).expanduser() if env else cache_root() / "weights"


def _standard_caches() -> list[Path]:
    home = Path.home()
    hf = Path(os.environ.get("HF_HOME", home / ".cache" / "huggingface"))
    torch_home = Path(os.environ.get("TORCH_HOME", home / ".cache" / "torch"))
    return [weights_dir(), hf / "hub", torch_home / "hub" / "checkpoints", home / ".cache" / "clip"]


OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "BENCHMARK_OFFLINE")
PROBE_HOSTS = (("huggingface.co", 443), ("github.com", 443))
PROBE_TIMEOUT_S = 3.0
_probe_result: bool | None = None


def _truthy(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() not in ("", "0", "false", "no", "off")


def _probe(hosts: tuple[tuple[str, int], ...] = PROBE_HOSTS,
           timeout: float = PROBE_TIMEOUT_S) -> bool:
    """Whether any host accepts a TCP connection within `timeout` seconds in all (resolution
    runs in daemon threads, since getaddrinfo ignores socket timeouts)."""
    import socket
    import threading

    reached = threading.Event()

    def attempt(host: str, port: int) -> None:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                reached.set()
        except OSError:
            pass

    threads = [threading.Thread(target=attempt, args=hp, daemon=True) for hp in hosts]
    for t in threads:
        t.start()
    deadline = time.monotonic() + timeout
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
        if reached.is_set():
            return True
    return reached.is_set()


def network_available() -> bool:
    """The reachability probe's answer, computed once per process."""
    global _probe_result
    if _probe_result is None:
        _probe_result = _probe()
        if not _probe_result:
            for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
                os.environ.setdefault(name, "1")
    return _probe_result


def offline() -> bool:
    """True when downloads must not be attempted (see the module docstring)."""
    if any(_truthy(v) for v in OFFLINE_VARIABLES):
        return True
    if os.environ.get("BENCHMARK_OFFLINE", "").strip() == "0":
        return False
    return not network_available()


def offline_reason() -> str:
    names = [v for v in OFFLINE_VARIABLES if _truthy(v)]
    if names and _probe_result is not False:
        return f"offline ({'/'.join(names)} set)"
    return "offline (no network: huggingface.co and github.com unreachable)"


def resolve_weights(
    spec: WeightSpec, path: str | os.PathLike | None = None, download: bool = True
) -> Path:
    """Returns a local file for `spec`, looking at `path`, then caches, then downloading."""
    if path is not None:
        p = Path(path).expanduser()
        if not p.is_file():
            raise WeightsError(f"{spec.description}: weights file {p} does not exist")
        return p
    for root in _standard_caches():
        direct = root / spec.filename
        if direct.is_file():
            return direct
        for pattern in spec.cache_globs:
            hits = sorted(root.glob(pattern)) if root.is_dir() else []
            if hits:
                return hits[0]
    target = weights_dir() / spec.filename
    if download and spec.url and not offline():
        try:
            import torch

            target.parent.mkdir(parents=True, exist_ok=True)
            torch.hub.download_url_to_file(spec.url, str(target), progress=True)
            return target
        except Exception as err:  # network refused, DNS failure, HTTP error
            raise WeightsError(
                _missing(spec, target, f"download from {spec.url} failed: {err}")
            ) from err
    return_reason = offline_reason() if offline() else "no download URL"
    raise WeightsError(_missing(spec, target, return_reason))


def _missing(spec: WeightSpec, target: Path, reason: str) -> str:
    src = f" (download: {spec.url})" if spec.url else ""
    return (
        f"{spec.description}: weights file '{spec.filename}' not found and {reason}. "
        f"Place it at {target}{src}, or pass its path explicitly; "
        f"use pretrained=False only if you really want random initialisation."
    )
