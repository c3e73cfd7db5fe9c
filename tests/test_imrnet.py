"""IMRNet: Algorithm 1 loop, mask schedule, template regularisation, detector contract, and end
to end through the runner on synthetic Real3D-AD / Anomaly-ShapeNet trees after a short
`pretrain` on synthetic normals (tiny model shapes)."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch

from benchmark.cli import main
from benchmark.errors import ConfigError, ContractError, WeightsError
from benchmark.registry import DATASETS, METHODS
from methods.imrnet import IMRNet
from methods.imrnet.scoring import iteration_masks, iterative_reconstruction, regularize

SHAPE = {"trans_dim": 48, "depth": 2, "decoder_depth": 3, "num_heads": 4,
         "encoder_widths": (32, 64, 64)}  # fmt: skip
TINY = {"num_group": 32, "group_size": 16, "input_points": 1024, **SHAPE}


def test_presets_registered() -> None:
    for name, sampler in (("imrnet", "gps"), ("imrnet_rs", "random"), ("imrnet_fps", "fps"),
                          ("imrnet_voxel", "voxel")):  # fmt: skip
        entry = METHODS.get(name)
        assert entry.kwargs.get("sampler", "gps") == sampler
        assert "no official code" in entry.provenance
        assert entry.outputs == ("point_scores",)
    det = IMRNet(pretrained=False, **SHAPE)
    assert (det.num_group, det.group_size, det.mask_ratio, det.iterations) == (256, 64, 0.4, 3)
    assert det.gps_options["tau"] == 0.3 and det.gps_options["density_ratio"] == 2.0
    assert det.feature_layers == (1, 2, 3)


@pytest.mark.parametrize("schedule", ["cover", "independent"])
def test_iteration_masks(schedule: str) -> None:
    rng = lambda: np.random.default_rng(5)  # noqa: E731
    m = iteration_masks(50, 0.4, 3, rng(), schedule)
    assert m.shape == (3, 50) and m.sum(1).tolist() == [20, 20, 20]
    np.testing.assert_array_equal(m, iteration_masks(50, 0.4, 3, rng(), schedule))
    if schedule == "cover":
        assert m.any(0).all()  # 0.4 x 3 >= 1: every patch reconstructed at least once
        assert not (m[0] & m[1]).any()


def test_iterative_loop_runs_the_stated_iterations() -> None:
    det = IMRNet(pretrained=False, **TINY)
    calls = []
    original = det.model.reconstruct

    def counting(nb, ctr, mask):
        calls.append(int(mask.sum()))
        return original(nb, ctr, mask)

    det.model.reconstruct = counting
    nb = torch.randn(32, 16, 3) * 0.05
    ctr = torch.randn(32, 3)
    masks = iteration_masks(32, 0.4, 4, np.random.default_rng(0))
    out = iterative_reconstruction(det.model, nb, ctr, masks)
    assert calls == [12, 12, 12, 12]
    changed = (out != nb).flatten(1).any(1).numpy()
    np.testing.assert_array_equal(changed, masks.any(0))  # only masked patches are replaced


def test_template_regularisation_hand_case() -> None:
    template = torch.tensor([[0.0, 0.0], [10.0, 0.0]])
    feats = torch.tensor([[0.5, 0.0], [10.0, 2.0], [4.0, 0.0], [0.0, 1.5]])
    out, dist, replaced = regularize(feats, template, threshold=1.0)
    np.testing.assert_allclose(dist.numpy(), [0.5, 2.0, 4.0, 1.5], atol=1e-6)
    assert replaced.tolist() == [False, True, True, True]
    np.testing.assert_allclose(out.numpy(), [[0.5, 0.0], [10.0, 0.0], [0.0, 0.0], [0.0, 0.0]])
    out, _, replaced = regularize(feats, template, threshold=1.5)  # exactly at tau: kept
    assert replaced.tolist() == [False, True, True, False]


def test_offline_weights_error(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("BENCHMARK_WEIGHTS", str(tmp_path / "w"))
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(WeightsError, match="pointmae_pretrain.pth"):
        METHODS.create("imrnet", **SHAPE)
    with pytest.raises(ConfigError, match="sampler"):
        IMRNet(pretrained=False, sampler="poisson", **SHAPE)


@pytest.fixture(scope="module")
def synthetic_shapenet():
    ds = DATASETS.create("synthetic", format="anomaly_shapenet", size="small", seed=0)
    cat = ds.categories[0]
    return list(ds.train(cat)), list(ds.test(cat))


def test_contract_and_determinism(synthetic_shapenet) -> None:
    train, test = synthetic_shapenet
    det = IMRNet(pretrained=False, finetune_epochs=2, seed=3, **TINY)
    with pytest.raises(ContractError, match="before fit"):
        det.predict(test[0])
    det.fit(iter(train))  # a one-shot iterator
    assert len(det.finetune_losses) == 2 and np.isfinite(det.threshold)
    before = test[1].points.copy()
    a = det.predict(test[1])
    np.testing.assert_array_equal(test[1].points, before)  # the sample is not modified
    a.check_against(test[1])
    many = list(det.predict_many([test[2], test[1]]))
    np.testing.assert_array_equal(many[1].point_scores, a.point_scores)
    assert many[1].score == a.score
    again = IMRNet(pretrained=False, finetune_epochs=2, seed=3, **TINY)
    again.fit(train)
    np.testing.assert_array_equal(again.predict(test[1]).point_scores, a.point_scores)


# --- end to end through the runner ------------------------------------------------------------

#: floor on the pooled point AUROC of the tiny configuration (chance = 0.5)
POINT_AUROC_FLOOR = 0.55
#: tiny fine-tuning: one cloud per step (10 epochs x 4 clouds = 40 steps)
E2E = {**TINY, "finetune_epochs": 10, "finetune_lr": 1e-3, "finetune_warmup_epochs": 0,
       "finetune_batch_size": 1}


@pytest.fixture(scope="module")
def pretrained_tiny(tmp_path_factory) -> str:
    """A short `python -m benchmark pretrain` on the synthetic normal training clouds (16 clouds,
    12 epochs of 4 steps)."""
    out = tmp_path_factory.mktemp("pretrain") / "tiny.pth"
    argv = ["pretrain", "--data", "synthetic", "--format", "anomaly_shapenet", "--out", str(out),
            "--epochs", "12", "--batch-size", "4", "--npoints", "1024", "--num-group", "32",
            "--group-size", "16", "--lr", "2e-3", "--warmup-epochs", "1",
            "--model", '{"trans_dim": 48, "depth": 2, "decoder_depth": 3, "num_heads": 4, '
            '"encoder_widths": [32, 64, 64]}']  # fmt: skip
    assert main(argv) == 0
    return str(out)


def _run(tmp_path, fmt: str, ckpt: str) -> dict[str, float]:
    from benchmark.run.runner import run
    from benchmark.run.spec import spec_from_dict

    spec = spec_from_dict({
        "methods": [{"name": "imrnet", "args": {**E2E, "pretrained": ckpt}}],
        "dataset": "synthetic", "dataset_options": {"format": fmt, "categories": 1},
        "protocol": "one_class", "seeds": [0],
    })  # fmt: skip
    s = run(spec, out=tmp_path / "run")
    assert not s.failures, s.report()
    with open(tmp_path / "run" / "metrics.csv") as fh:
        rows = list(csv.DictReader(fh))
    return {r["metric"]: float(r["value"]) for r in rows}


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["real3d", "anomaly_shapenet"])
def test_end_to_end_through_the_runner(tmp_path, pretrained_tiny, fmt: str) -> None:
    metrics = _run(tmp_path, fmt, pretrained_tiny)
    assert {"image_auroc", "point_auroc", "point_aupr"} <= set(metrics)
    print(f"imrnet {fmt}: {metrics}")
    assert metrics["point_auroc"] > POINT_AUROC_FLOOR, metrics


def test_runs_through_the_runner_on_an_organized_format(tmp_path) -> None:
    """Default-suite variant (the floors above are slow): the smoke configuration through the
    runner on the MVTec-format synthetic tree, read through ``sample.points``."""
    from benchmark.run.runner import run
    from benchmark.run.spec import spec_from_dict

    spec = spec_from_dict({
        "methods": [{"name": "imrnet_fps", "args": dict(METHODS.get("imrnet").smoke)}],
        "dataset": "synthetic", "dataset_options": {"format": "mvtec3d", "categories": 1},
        "protocol": "one_class", "seeds": [0],
    })  # fmt: skip
    s = run(spec, out=tmp_path / "run")
    assert not s.failures, s.report()
    with open(tmp_path / "run" / "metrics.csv") as fh:
        rows = list(csv.DictReader(fh))
    metrics = {r["metric"]: float(r["value"]) for r in rows}
    assert {"image_auroc", "pixel_auroc"} <= set(metrics)
    assert all(0.0 <= v <= 1.0 for k, v in metrics.items() if "auroc" in k)
