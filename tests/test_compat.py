"""The torchvision import fix lets open_clip and timm import on the CPU stack."""

from __future__ import annotations

import subprocess
import sys


def test_open_clip_and_timm_import_after_benchmark():
    code = "import benchmark, open_clip, timm, torchvision; print(torchvision.__version__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr


def test_cache_and_weights_helpers(tmp_path, monkeypatch):
    import pytest

    from benchmark.cache import cached_dir, recipe_hash
    from benchmark.errors import WeightsError
    from benchmark.weights import WeightSpec, resolve_weights

    monkeypatch.setenv("BENCHMARK_CACHE", str(tmp_path / "c"))
    assert recipe_hash({"a": 1, "b": [1, 2]}) == recipe_hash({"b": (1, 2), "a": 1})
    calls = []

    def build(d):
        calls.append(d)
        (d / "x.txt").write_text("ok")

    first = cached_dir("unit", {"k": 1}, build)
    second = cached_dir("unit", {"k": 1}, build)
    assert first == second and len(calls) == 1 and (first / "x.txt").read_text() == "ok"

    def failing(d):
        (d / "half.txt").write_text("partial")
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError):
        cached_dir("unit", {"k": 2}, failing)
    assert not list((tmp_path / "c" / "unit").glob("*/half.txt"))

    monkeypatch.setenv("BENCHMARK_WEIGHTS", str(tmp_path / "w"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    spec = WeightSpec("toy", "toy_weights.pth", "Toy backbone", url="https://example.invalid/t.pth")
    with pytest.raises(WeightsError) as info:
        resolve_weights(spec)
    assert "toy_weights.pth" in str(info.value) and str(tmp_path / "w") in str(info.value)
    (tmp_path / "w").mkdir()
    (tmp_path / "w" / "toy_weights.pth").write_bytes(b"x")
    assert resolve_weights(spec) == tmp_path / "w" / "toy_weights.pth"
    with pytest.raises(WeightsError, match="does not exist"):
        resolve_weights(spec, path=tmp_path / "missing.pth")
