"""Full Point-MAE masked autoencoder: official key layout, strict loading, masking, training,
resumable pre-training and the `pretrain` command (tiny shapes, random initialisation)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from benchmark.cli import main
from benchmark.components.backbones.pointmae import PointMAEEncoder
from benchmark.components.backbones.pointmae_mae import (
    PointMAE,
    PretrainConfig,
    build_pointmae,
    group_fps_knn,
    load_pointmae_mae_checkpoint,
    pretrain_pointmae,
    random_mask,
)
from benchmark.errors import WeightsError

TINY = {"trans_dim": 48, "depth": 2, "decoder_depth": 3, "num_heads": 4,
        "encoder_widths": (16, 32, 32)}  # fmt: skip


def _clouds(n: int = 6, points: int = 600) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    out = []
    for _ in range(n):
        d = rng.normal(size=(points, 3))
        out.append((d / np.linalg.norm(d, axis=1, keepdims=True) * [3, 2, 1]).astype(np.float32))
    return out


def test_official_key_layout() -> None:
    state = PointMAE(group_size=32).state_dict()
    keys = set(state)
    for name in ("mask_token", "MAE_encoder.encoder.first_conv.0.weight",
                 "MAE_encoder.encoder.second_conv.1.running_var", "MAE_encoder.pos_embed.2.bias",
                 "MAE_encoder.blocks.blocks.11.mlp.fc2.weight", "MAE_encoder.norm.weight",
                 "decoder_pos_embed.0.weight", "MAE_decoder.blocks.3.attn.qkv.weight",
                 "MAE_decoder.norm.bias", "increase_dim.0.weight", "increase_dim.0.bias"):
        assert name in keys, name  # fmt: skip
    assert not any(k.startswith("MAE_decoder.blocks.4.") for k in keys)  # decoder depth 4
    assert state["increase_dim.0.weight"].shape == (96, 384, 1)


def test_masking_is_seeded_and_covers_the_ratio() -> None:
    a = random_mask(3, 50, 0.4, np.random.default_rng(1))
    b = random_mask(3, 50, 0.4, np.random.default_rng(1))
    assert torch.equal(a, b)
    assert a.sum(1).tolist() == [20, 20, 20]
    assert not torch.equal(a[0], a[1])
    assert not torch.equal(a, random_mask(3, 50, 0.4, np.random.default_rng(2)))


def test_chamfer_loss_decreases_on_a_fixed_batch() -> None:
    torch.manual_seed(0)
    model = PointMAE(group_size=16, **TINY).train()
    xyz = torch.from_numpy(np.stack(_clouds(2, 400)) / 3.0)
    nb, ctr = group_fps_knn(xyz, 16, 16)
    mask = random_mask(2, 16, 0.4, np.random.default_rng(0))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(12):
        loss = model.loss(nb, ctr, mask)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.5 * losses[0]


def test_checkpoint_round_trip_official_layout(tmp_path) -> None:
    """Encoder + decoder + head survive a save/load in the official {'base_model': ...} layout,
    with a DataParallel 'module.' prefix; the encoder-only PointMAEEncoder reads the same file."""
    torch.manual_seed(1)
    model = PointMAE(group_size=32)
    for name, buf in model.named_buffers():
        if "running" in name:
            buf.uniform_(0.5, 1.5)
    state = {f"module.{k}": v for k, v in model.state_dict().items()}
    path = tmp_path / "pretrain.pth"
    torch.save({"base_model": state, "epoch": 300, "metrics": {"acc": np.float64(0.0)}}, path)
    loaded, _, notes = build_pointmae(pretrained=path, group_size=32)
    assert notes == []
    for k, v in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v), k
    enc = PointMAEEncoder(num_group=8, group_size=8, pretrained=path)
    assert torch.equal(enc.state_dict()["blocks.blocks.3.attn.qkv.weight"],
                       model.state_dict()["MAE_encoder.blocks.blocks.3.attn.qkv.weight"])
    # a model with 64-point patches gets the 32-point head tiled (same predicted point set)
    big, _, notes = build_pointmae(pretrained=path, group_size=64)
    assert any("increase_dim.0.weight" in n for n in notes)
    nb, ctr = group_fps_knn(torch.from_numpy(_clouds(1, 500)[0])[None], 8, 32)
    mask = random_mask(1, 8, 0.5, np.random.default_rng(0))
    with torch.no_grad():
        small_pred = model.eval().reconstruct(nb, ctr, mask)
        big_pred = big.eval().reconstruct(nb, ctr, mask)
    torch.testing.assert_close(big_pred[:, :, :32], small_pred)
    torch.testing.assert_close(big_pred[:, :, 32:], small_pred)


def test_strict_key_check_lists_problems(tmp_path) -> None:
    model = PointMAE(group_size=16, **TINY)
    state = model.state_dict()
    state.pop("mask_token")
    state["MAE_decoder.extra.weight"] = torch.zeros(2)
    state["decoder_pos_embed.0.weight"] = torch.zeros(5, 3)
    path = tmp_path / "bad.pth"
    torch.save({"base_model": state}, path)
    with pytest.raises(WeightsError) as err:
        load_pointmae_mae_checkpoint(path, model.state_dict())
    text = str(err.value)
    assert "missing: mask_token" in text and "unexpected: MAE_decoder.extra.weight" in text
    assert "decoder_pos_embed.0.weight (5, 3) != (128, 3)" in text and str(path) in text
    head = dict(model.state_dict())
    head["increase_dim.0.weight"] = torch.zeros(24, 48, 1)
    head["increase_dim.0.bias"] = torch.zeros(24)
    torch.save(head, path)
    with pytest.raises(WeightsError, match="increase_dim.0.weight"):
        load_pointmae_mae_checkpoint(path, model.state_dict(), adapt_head=False)


def test_offline_without_weights_names_the_file(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("BENCHMARK_WEIGHTS", str(tmp_path / "w"))
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(WeightsError, match="pointmae_pretrain.pth"):
        build_pointmae(pretrained=True, group_size=16, **TINY)


def test_pretraining_resumes_to_the_same_weights(tmp_path) -> None:
    clouds = _clouds()
    cfg = PretrainConfig(epochs=2, batch_size=3, npoints=256, num_group=16, group_size=16,
                         warmup_epochs=0, **TINY)  # fmt: skip
    full = pretrain_pointmae(clouds, tmp_path / "full.pth", cfg, show_progress=False)
    assert len(full["losses"]) == 2

    def stop_after_first(message: str) -> None:
        if message.startswith("epoch 1/"):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        pretrain_pointmae(clouds, tmp_path / "cut.pth", cfg, log=stop_after_first,
                          show_progress=False)  # fmt: skip
    assert torch.load(tmp_path / "cut.pth", weights_only=True)["epoch"] == 1
    resumed = pretrain_pointmae(clouds, tmp_path / "cut.pth", cfg, show_progress=False)
    assert resumed["start_epoch"] == 1
    a = torch.load(tmp_path / "full.pth", weights_only=True)["base_model"]
    b = torch.load(tmp_path / "cut.pth", weights_only=True)["base_model"]
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6)


def test_pretrain_command_on_a_folder(tmp_path, capsys) -> None:
    from benchmark.components.pointcloud_io import write_pcd

    folder = tmp_path / "clouds"
    (folder / "sub").mkdir(parents=True)
    clouds = _clouds(3)
    np.save(folder / "a.npy", clouds[0])
    np.savetxt(folder / "sub" / "b.txt", clouds[1], delimiter=",")
    write_pcd(folder / "c.pcd", clouds[2])
    out = tmp_path / "ckpt.pth"
    argv = ["pretrain", "--data", str(folder), "--out", str(out), "--epochs", "1",
            "--batch-size", "3", "--npoints", "128", "--num-group", "8", "--group-size", "8",
            "--model", '{"trans_dim": 48, "depth": 2, "decoder_depth": 3, "num_heads": 4, '
            '"encoder_widths": [16, 32, 32]}']  # fmt: skip
    assert main(argv) == 0
    assert "3 clouds" in capsys.readouterr().err
    ckpt = torch.load(out, weights_only=True)
    assert ckpt["epoch"] == 1 and ckpt["config"]["num_group"] == 8
    assert "increase_dim.0.weight" in ckpt["base_model"]
