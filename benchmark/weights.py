"""Where pretrained weights come from: an explicit path, then the usual caches, then a download.

Offline with no weights this raises `WeightsError` naming the file and where to put it; it never
falls back to random initialisation (that happens only behind an explicit ``pretrained=False``).
"""

from __future__ import annotations

import os
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
    """Weights folder: ``$BENCHMARK_WEIGHTS`` or ``~/.cache/benchmark3dad/weights``."""
    env = os.environ.get("BENCHMARK_WEIGHTS")
    return Path(env) if env else Path.home() / ".cache" / "benchmark3dad" / "weights"


def _standard_caches() -> list[Path]:
    home = Path.home()
    hf = Path(os.environ.get("HF_HOME", home / ".cache" / "huggingface"))
    torch_home = Path(os.environ.get("TORCH_HOME", home / ".cache" / "torch"))
    return [weights_dir(), hf / "hub", torch_home / "hub" / "checkpoints", home / ".cache" / "clip"]


def offline() -> bool:
    return any(
        os.environ.get(v, "") not in ("", "0") for v in ("HF_HUB_OFFLINE", "BENCHMARK_OFFLINE")
    )


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
    return_reason = (
        "offline (HF_HUB_OFFLINE/BENCHMARK_OFFLINE set)" if offline() else "no download URL"
    )
    raise WeightsError(_missing(spec, target, return_reason))


def _missing(spec: WeightSpec, target: Path, reason: str) -> str:
    src = f" (download: {spec.url})" if spec.url else ""
    return (
        f"{spec.description}: weights file '{spec.filename}' not found and {reason}. "
        f"Place it at {target}{src}, or pass its path explicitly; "
        f"use pretrained=False only if you really want random initialisation."
    )
