"""Out-of-the-box behaviour (issue 17): dataset units and unit-aware defaults, presets with their
DEFAULT arguments on the default dataset, fast offline refusals, `describe`, file plugins,
log-mode progress, the pre-run modality check and Ctrl-C."""

from __future__ import annotations

import os
import socket

import numpy as np
import pytest

from benchmark import weights as W
from benchmark.cli import main
from benchmark.errors import ConfigError, ContractError, WeightsError
from benchmark.registry import DATASETS, METHODS
from benchmark.units import parse_length, to_data_units
from methods._memorybank_common import auto_voxel

FORMAT_UNITS = {"real3d": "mm", "mvtec3d": "m", "eyecandies": "dam", "anomaly_shapenet": None}


# --- units -------------------------------------------------------------------------------------
def test_lengths_parse_and_convert():
    assert parse_length("0.5mm") == (0.5, "mm")
    assert parse_length("5e-2 m") == (0.05, "m")
    assert parse_length(0.25) == (0.25, None) and parse_length("0.25") == (0.25, None)
    assert to_data_units("0.5mm", "mm") == 0.5
    assert to_data_units("0.5mm", "m") == pytest.approx(0.0005)
    assert to_data_units("0.05m", "dam") == pytest.approx(0.005)
    assert to_data_units("0.5mm", None) is None  # unit-less data: the caller's rule applies
    assert to_data_units(0.5, None) == 0.5  # a bare number is in the data's units
    for bad in ("0.5 parsec", "mm", True, "-"):
        with pytest.raises(ConfigError):
            parse_length(bad)


def test_sample_unit_is_checked(tmp_path):
    from benchmark.sample import Sample

    kw = dict(id="a", dataset="d", category="c", split="test", defect="good", label=0,
              points=np.zeros((3, 3), np.float32))
    assert Sample(**kw).unit is None
    assert Sample(**kw, unit="mm").unit == "mm"
    with pytest.raises(ContractError, match="unit"):
        Sample(**kw, unit="furlong")


@pytest.mark.parametrize("fmt", sorted(FORMAT_UNITS))
def test_every_format_declares_its_unit_on_every_sample(fmt):
    ds = DATASETS.create("synthetic", format=fmt, size="small", categories=1)
    assert ds.unit == FORMAT_UNITS[fmt]
    cat = ds.categories[0]
    assert {s.unit for s in ds.test(cat)} == {FORMAT_UNITS[fmt]}
    assert ds.train(cat)[0].unit == FORMAT_UNITS[fmt]
    organized = fmt in ("mvtec3d", "eyecandies")
    want = {"points", "xyz_grid", "rgb"} if organized else {"points"}
    assert set(ds.modalities) == want


def test_real_adapters_declare_units():
    assert DATASETS.get("real3d").factory.unit == "mm"
    assert DATASETS.get("mvtec3d").factory.unit == "m"
    assert DATASETS.get("eyecandies").factory.unit == "dam"
    assert DATASETS.get("anomaly_shapenet").factory.unit is None


def test_voxel_defaults_are_official_on_real3d_and_physical_elsewhere():
    rng = np.random.default_rng(0)
    cloud = rng.normal(size=(500, 3)).astype(np.float32)
    for name in ("patchcore_fpfh", "patchcore_raw", "patchcore_fpfh_raw", "reg3dad"):
        entry = METHODS.get(name)
        default = {**_defaults(entry.factory), **entry.kwargs}["voxel_size"]
        assert auto_voxel(cloud, default, unit="mm") == 0.5  # exactly the official value
        assert auto_voxel(cloud, default, unit="m") == pytest.approx(0.0005)
        assert auto_voxel(cloud, default, unit=None) == auto_voxel(cloud, "auto")  # the rule
    btf = {**_defaults(METHODS.get("btf_fpfh").factory), **METHODS.get("btf_fpfh").kwargs}
    det = METHODS.create("btf_fpfh")
    assert det._voxel("m") == 0.05 == parse_length(btf["voxel_size"])[0]
    assert det._voxel("dam") == pytest.approx(0.005)


def test_a_voxel_finer_than_the_sampling_is_warned_about():
    from methods._memorybank_common import warn_if_finer_than_spacing

    side = np.linspace(0, 0.1, 50)  # 2 mm spacing, in metres
    grid = np.stack(np.meshgrid(side, side), -1).reshape(-1, 2)
    cloud = np.c_[grid, np.zeros(len(grid))].astype(np.float32)
    with pytest.warns(UserWarning, match="voxel_size='auto'"):
        warn_if_finer_than_spacing(cloud, 0.0005, "test")  # 0.5 mm: radius 1 mm < 2 mm
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warn_if_finer_than_spacing(cloud, 0.005, "test")


def _defaults(factory) -> dict:
    import inspect

    return {p.name: p.default for p in inspect.signature(factory).parameters.values()
            if p.default is not p.empty}


# --- every preset with its DEFAULT arguments on the default dataset ---------------------------
WEIGHT_FREE = ("btf_fpfh", "btf_raw", "patchcore_fpfh", "patchcore_fpfh_raw", "patchcore_raw")
WEIGHT_NEEDING = ("btf_rgb", "btf_rgb_fpfh", "clip_rendering", "patchcore_pointmae",
                  "patchcore_rgb", "pointad", "pointad_coop", "pointad_plus",
                  "pointad_plus_coop", "reg3dad")  # fmt: skip


@pytest.mark.parametrize("name", WEIGHT_NEEDING)
def test_weight_needing_presets_refuse_for_weights_only(name):
    """Default arguments, offline, no weights: a WeightsError (nothing else) at build or fit."""
    with pytest.raises(WeightsError):
        _fit_one(name, train=1)


def _default_samples(train: int, test: int):
    ds = DATASETS.create("synthetic")  # the embedded default, default options
    cat = ds.categories[0]
    tests = ds.test(cat)
    picked = [tests[i] for i in range(len(tests)) if tests[i].label == 1][:test]
    return [ds.train(cat)[i] for i in range(train)], picked, ds.test(ds.categories[1])


def _fit_one(name: str, train: int):
    fit, _, other = _default_samples(train, 0)
    det = METHODS.create(name)  # DEFAULT arguments: no smoke, no overrides
    det.fit(other if getattr(det, "learning", "") == "zero_shot" else fit)
    return det


@pytest.mark.parametrize("name", WEIGHT_FREE)
def test_weight_free_presets_run_with_default_arguments(name):
    fit, test, _ = _default_samples(train=2, test=1)
    det = METHODS.create(name)
    det.fit(fit)
    [pred] = list(det.predict_many(test))
    assert np.isfinite(pred.score)
    dense = pred.point_scores if pred.point_scores is not None else pred.pixel_scores
    assert dense is not None and np.isfinite(dense).all()


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(METHODS.names()))
def test_every_preset_runs_or_refuses_for_weights_through_the_runner(name, tmp_path):
    from benchmark.run.runner import run
    from benchmark.run.spec import spec_from_dict

    ds = DATASETS.create("synthetic")
    zero_shot = METHODS.get(name).learning == "zero_shot"  # fit on the first, test the others
    spec = spec_from_dict({"methods": [name],
                           "categories": "all" if zero_shot else [ds.categories[0]]})
    summary = run(spec, out=tmp_path / "run", show_progress=False)
    for result in summary.executed:
        assert result["status"] == "ok" or result["error"].startswith("WeightsError"), result


# --- offline refusals --------------------------------------------------------------------------
def test_offline_refusal_makes_no_network_attempt(monkeypatch):
    """With no offline variable set, one reachability probe (mocked: unreachable) decides for the
    whole process; every weight-needing backbone then refuses without touching the network."""
    for var in W.OFFLINE_VARIABLES:
        monkeypatch.delenv(var, raising=False)
    probes = []
    monkeypatch.setattr(W, "_probe", lambda *a, **k: probes.append(1) or False)
    monkeypatch.setattr(W, "_probe_result", None)

    def no_network(*args, **kwargs):
        raise AssertionError(f"network attempt: {args}")

    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(socket.socket, "connect", no_network)
    from benchmark.components.backbones.pointmae import PointMAEEncoder
    from benchmark.components.backbones.wide_resnet import WideResNet50Features
    from methods.pointad.clip_dpam import load_clip

    for make in (lambda: PointMAEEncoder(32, 16), lambda: WideResNet50Features(),
                 lambda: WideResNet50Features(tag="tv_in1k"), lambda: load_clip("ViT-L-14-336")):
        with pytest.raises(WeightsError, match="not found and offline") as err:
            make()
        assert "\n" not in str(err.value)  # one line per job
    assert probes == [1]
    assert os.environ.get("HF_HUB_OFFLINE") == "1"  # set for libraries loaded afterwards


def test_offline_variables_skip_the_probe(monkeypatch):
    monkeypatch.setattr(W, "_probe", lambda *a, **k: pytest.fail("probed"))
    monkeypatch.setattr(W, "_probe_result", None)
    for var in W.OFFLINE_VARIABLES:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    assert W.offline()
    monkeypatch.delenv("TRANSFORMERS_OFFLINE")
    monkeypatch.setenv("BENCHMARK_OFFLINE", "0")
    assert not W.offline()


def test_weights_live_under_the_cache_root(monkeypatch, tmp_path):
    monkeypatch.delenv("BENCHMARK_WEIGHTS", raising=False)
    monkeypatch.setenv("BENCHMARK_CACHE", str(tmp_path / "c"))
    assert W.weights_dir() == tmp_path / "c" / "weights"
    monkeypatch.setenv("BENCHMARK_WEIGHTS", str(tmp_path / "w"))
    assert W.weights_dir() == tmp_path / "w"


# --- describe, plugins -------------------------------------------------------------------------
def test_describe_a_preset(capsys):
    assert main(["describe", "patchcore_fpfh"]) == 0
    out = capsys.readouterr().out
    assert "provenance: ported from M-3LAB/Real3D-AD" in out
    lines = {ln.split("=")[0].strip(): ln for ln in out.splitlines() if " = " in ln}
    assert "'fpfh'" in lines["features"] and lines["features"].rstrip().endswith("[str]")
    assert "preset" in lines["features"]
    assert "'0.5mm'" in lines["voxel_size"] and "default" in lines["voxel_size"]
    assert "converted to the unit the data declares" in out


def test_describe_datasets(capsys):
    assert main(["describe", "synthetic", "--dataset-option", "format=real3d",
                 "categories=2"]) == 0
    out = capsys.readouterr().out
    assert "unit: mm (millimetres)" in out and "splits: train, test" in out
    assert "categories (2)" in out and "anomalous" in out
    assert main(["describe", "real3d"]) == 0
    assert "pass --root" in capsys.readouterr().out
    assert main(["list", "datasets", "-v", "--json"]) == 0
    assert '"unit": "mm (millimetres)"' in capsys.readouterr().out


def test_plugin_from_a_file_path(tmp_path, capsys):
    from benchmark.run.spec import import_plugins, spec_from_dict

    plugin = tmp_path / "my_plugin.py"
    plugin.write_text(
        "from methods.patchcore import Real3DPatchCore\n"
        "from benchmark.registry import METHODS\n"
        "METHODS.register('file_plugin_pc', Real3DPatchCore, kwargs={'features': 'raw'},\n"
        "                 summary='from a file')\n"
    )
    try:
        import_plugins([str(plugin)])
        import_plugins([str(plugin)])  # once per process: no double registration
        assert METHODS.get("file_plugin_pc").summary == "from a file"
        assert main(["describe", "file_plugin_pc", "--plugin", str(plugin)]) == 0
        assert "from a file" in capsys.readouterr().out
        cwd = os.getcwd()
        os.chdir(tmp_path)
        try:
            spec = spec_from_dict({"methods": ["btf_raw"], "plugins": ["my_plugin.py"]})
        finally:
            os.chdir(cwd)
        assert spec.plugins == [str(plugin.resolve())]
    finally:
        METHODS.unregister("file_plugin_pc")
    with pytest.raises(ConfigError, match="does not exist"):
        import_plugins([str(tmp_path / "missing.py")])


# --- the pre-run check -------------------------------------------------------------------------
def test_run_refuses_impossible_combinations_before_any_job(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["run", "--method", "btf_fpfh", "patchcore_rgb", "--dataset-option",
                 "format=real3d", "categories=1", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and "no job started" in err
    assert "btf_fpfh cannot run on synthetic: it needs an organized xyz grid" in err
    assert "patchcore_rgb cannot run on synthetic: it needs an RGB image" in err
    assert not out.exists()


# --- progress lines and Ctrl-C ------------------------------------------------------------------
def test_log_mode_prints_a_line_per_job_and_a_heartbeat(monkeypatch, capsys):
    import time

    from benchmark import progress

    monkeypatch.setenv("BENCHMARK_PROGRESS", "log")
    monkeypatch.setenv("BENCHMARK_PROGRESS_INTERVAL", "0.2")
    with progress.Bar(2, "jobs", unit="job") as bar:
        time.sleep(1.5)
        bar.update()
        bar.log("ok     first job")
    err = capsys.readouterr().err
    assert "jobs: 0/2 jobs done, still running" in err
    assert "[1/2] ok     first job" in err
    monkeypatch.setenv("BENCHMARK_PROGRESS", "0")
    with progress.Bar(1, "jobs") as bar:
        bar.update()
        bar.log("quiet")
    assert capsys.readouterr().err == ""


def test_ctrl_c_gives_one_line_and_status_130(monkeypatch, capsys):
    import benchmark.commands.run_cmd as run_cmd

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(run_cmd, "run_and_report", interrupted)
    assert main(["run", "--method", "btf_raw"]) == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("interrupted (Ctrl-C)")


def test_process_workers_ignore_sigint_and_are_stopped(tmp_path):
    """The pool's workers leave Ctrl-C to the parent; an interrupted map terminates them."""
    from benchmark.run.executors import ProcessExecutor

    ex = ProcessExecutor(workers=1)
    gen = ex.map(_sigint_state_then_sleep, [(0.0,), (30.0,)])
    _, first = next(gen)
    assert first == "ignored"
    with pytest.raises(KeyboardInterrupt):
        gen.throw(KeyboardInterrupt)


def _sigint_state_then_sleep(seconds: float) -> str:
    import signal
    import time

    time.sleep(seconds)
    return "ignored" if signal.getsignal(signal.SIGINT) == signal.SIG_IGN else "default"
