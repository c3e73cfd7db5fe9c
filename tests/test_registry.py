"""Registry behaviour, entry-point plugins and the `list` command."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from benchmark.detector import Detector
from benchmark.errors import ConfigError
from benchmark.registry import Registry
from benchmark.sample import Prediction

REPO = Path(__file__).resolve().parents[1]


class ConstantDetector(Detector):
    modalities = frozenset({"points"})
    learning = "one_class"

    def __init__(self, value: float = 0.0, seed: int = 0):
        self.value = value

    def fit(self, train):
        pass

    def predict(self, sample):
        return Prediction(self.value)


def test_register_create_and_metadata():
    reg = Registry("methods", "methods")
    reg._discovered = True  # isolated registry: no discovery
    reg.register(
        "const_one",
        ConstantDetector,
        kwargs={"value": 1.0},
        summary="always one",
        outputs=["score"],
        provenance="test",
        smoke={"value": 2.0},
    )
    entry = reg.get("const_one")
    assert entry.modalities == ("points",) and entry.learning == "one_class"
    assert entry.outputs == ("score",) and entry.smoke == {"value": 2.0}
    det = reg.create("const_one")
    assert det.value == 1.0 and det.name == "const_one"
    assert reg.create("const_one", value=3.0).value == 3.0
    assert "const_one" in reg and reg.names() == ["const_one"] and len(reg) == 1
    assert entry.describe()["summary"] == "always one"


def test_decorator_duplicate_and_unknown():
    reg = Registry("methods", "methods")
    reg._discovered = True

    @reg.register("alpha", summary="a")
    class Alpha(ConstantDetector):
        pass

    assert reg.get("alpha").factory is Alpha
    with pytest.raises(ConfigError, match="already registered"):
        reg.register("alpha", ConstantDetector)
    reg.register("beta", ConstantDetector)
    with pytest.raises(ConfigError) as info:
        reg.get("gamma")
    assert "alpha" in str(info.value) and "beta" in str(info.value) and "gamma" in str(info.value)


def _write_plugin(root: Path, broken: bool = False) -> None:
    pkg = root / "toy_ad_plugin"
    pkg.mkdir()
    body = "raise RuntimeError('boom')" if broken else ""
    (pkg / "__init__.py").write_text(
        textwrap.dedent(
            f"""
            from benchmark.detector import Detector
            from benchmark.sample import Prediction
            {body}

            class Toy(Detector):
                def fit(self, train):
                    pass

                def predict(self, sample):
                    return Prediction(0.0)

            def register(registry):
                registry.register("toy_plugin_method", Toy, summary="from an entry point")
            """
        )
    )
    dist = root / "toy_ad_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: toy-ad-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[benchmark.methods]\ntoy = toy_ad_plugin:register\n")


def test_entry_point_plugin_discovered(tmp_path, monkeypatch):
    _write_plugin(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    reg = Registry("methods", "methods")
    assert "toy_plugin_method" in reg.names()
    assert reg.get("toy_plugin_method").origin.startswith("plugin toy_ad_plugin")
    assert reg.create("toy_plugin_method").predict(None).score == 0.0


def test_broken_plugin_is_reported_not_fatal(tmp_path, monkeypatch):
    _write_plugin(tmp_path, broken=True)
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("toy_ad_plugin", None)
    reg = Registry("methods", "methods")
    assert "toy_plugin_method" not in reg.names()
    assert "boom" in reg.discovery_errors["toy"]


def test_list_command_subprocess(tmp_path):
    _write_plugin(tmp_path)
    env = {"PYTHONPATH": f"{tmp_path}:{REPO}", "HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"}
    out = subprocess.run(
        [sys.executable, "-m", "benchmark", "list", "--json"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    listing = json.loads(out.stdout)
    names = [row["name"] for row in listing["methods"]]
    assert "toy_plugin_method" in names
    assert "datasets" in listing
    table = subprocess.run(
        [sys.executable, "-m", "benchmark", "list"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert table.returncode == 0 and "toy_plugin_method" in table.stdout


def test_every_subcommand_has_help(capsys):
    from benchmark.cli import COMMANDS, build_parser

    parser = build_parser()
    for cmd in COMMANDS:
        with pytest.raises(SystemExit) as info:
            parser.parse_args([cmd, "--help"])
        assert info.value.code == 0
        assert "usage" in capsys.readouterr().out


def test_bad_constructor_arguments_are_config_errors():
    reg = Registry("methods", "methods")
    reg._discovered = True
    reg.register("const", ConstantDetector)
    with pytest.raises(ConfigError, match="unexpected keyword argument 'colour'.*value, seed"):
        reg.create("const", colour=1)

    class NeedsRoot:
        def __init__(self, root: str, size: str = "small"):
            self.root = root

    reg.register("needs_root", NeedsRoot)
    with pytest.raises(ConfigError, match="root.*--root"):
        reg.create("needs_root")
    assert reg.create("needs_root", root="/x").root == "/x"
