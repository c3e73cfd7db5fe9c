"""Point-MAE encoder: official checkpoint layout, determinism, shapes, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from benchmark.components.backbones.pointmae import FEATURE_DIM, POINTMAE_WEIGHTS, PointMAEEncoder
from benchmark.components.geometry.pointops import farthest_point_sample, knn
from benchmark.errors import ContractError, WeightsError


def _official_checkpoint(encoder: PointMAEEncoder, with_decoder: bool = True) -> dict:
    """The layout of Point-MAE's pretrain.pth: {'base_model': full Point_MAE state dict}, the
    encoder under 'MAE_encoder.', saved from DataParallel ('module.' prefix)."""
    state = {f"module.MAE_encoder.{k}": v.clone() for k, v in encoder.state_dict().items()}
    if with_decoder:
        state["module.mask_token"] = torch.zeros(1, 1, 384)
        state["module.decoder_pos_embed.0.weight"] = torch.zeros(128, 3)
        state["module.MAE_decoder.norm.weight"] = torch.ones(384)
        state["module.increase_dim.0.weight"] = torch.zeros(3 * 32, 384, 1)
    # training bookkeeping beside the weights, numpy scalars included (read without pickled code)
    metrics = {"acc": np.float64(0.0), "step": np.int64(3)}
    return {"base_model": state, "epoch": 300, "metrics": metrics, "optimizer": {}}


@pytest.fixture(scope="module")
def random_encoder() -> PointMAEEncoder:
    torch.manual_seed(0)
    enc = PointMAEEncoder(num_group=32, group_size=16, pretrained=False)
    # non-trivial BatchNorm statistics, so that loading them is actually checked
    for name, buf in enc.named_buffers():
        if "running" in name:
            buf.uniform_(0.5, 1.5)
    return enc


@pytest.fixture(scope="module")
def cloud() -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    return torch.randn(2, 400, 3, generator=g)


def test_official_key_names(random_encoder: PointMAEEncoder) -> None:
    keys = set(random_encoder.state_dict())
    for name in (
        "encoder.first_conv.0.weight",
        "encoder.first_conv.1.running_mean",
        "encoder.second_conv.3.bias",
        "pos_embed.0.weight",
        "pos_embed.2.bias",
        "blocks.blocks.0.attn.qkv.weight",
        "blocks.blocks.11.mlp.fc2.weight",
        "blocks.blocks.5.norm1.weight",
        "norm.weight",
    ):
        assert name in keys
    assert "blocks.blocks.0.attn.qkv.bias" not in keys  # qkv_bias=False in the original
    assert len([k for k in keys if k.startswith("blocks.blocks.")]) == 12 * 11


def test_loads_official_layout_and_is_deterministic(tmp_path, random_encoder, cloud) -> None:
    path = tmp_path / "pretrain.pth"
    torch.save(_official_checkpoint(random_encoder), path)
    loaded = PointMAEEncoder(num_group=32, group_size=16, pretrained=True, weights=path)
    assert loaded.weights_path == path
    for k, v in random_encoder.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v), k
    f1, c1, i1 = loaded(cloud)
    f2, c2, i2 = loaded(cloud)
    ref, _, _ = random_encoder(cloud)
    assert f1.shape == (2, 32, FEATURE_DIM) and c1.shape == (2, 32, 3) and i1.shape == (2, 32, 16)
    assert torch.equal(f1, f2) and torch.equal(c1, c2) and torch.equal(i1, i2)
    assert torch.allclose(f1, ref, atol=1e-5)
    assert torch.isfinite(f1).all() and f1.std() > 0


def test_grouping_matches_fps_and_knn(random_encoder, cloud) -> None:
    _, centers, idx = random_encoder(cloud)
    for b in range(2):
        want_c = cloud[b][farthest_point_sample(cloud[b], 32)]
        assert torch.equal(centers[b], want_c)
        _, want_idx = knn(want_c.numpy(), cloud[b].numpy(), 16)
        assert torch.equal(idx[b], torch.from_numpy(want_idx))
        assert torch.equal(idx[b][:, 0], farthest_point_sample(cloud[b], 32))  # centre first


def test_features_are_per_cloud(random_encoder, cloud) -> None:
    batched, _, _ = random_encoder(cloud)
    single, _, _ = random_encoder(cloud[1:2])
    assert torch.allclose(batched[1:2], single, atol=1e-5)


def test_chunked_token_encoder_is_exact(random_encoder, cloud, monkeypatch) -> None:
    import benchmark.components.backbones.pointmae as pm

    full, _, _ = random_encoder(cloud)
    monkeypatch.setattr(pm, "_ENCODER_CHUNK_BYTES", 16 * 512 * 4 * 2 * 5)  # 5 groups per chunk
    chunked, _, _ = random_encoder(cloud)
    assert torch.allclose(full, chunked, atol=1e-6)


def test_small_cloud_uses_all_points(random_encoder) -> None:
    f, c, idx = random_encoder(torch.randn(1, 10, 3))
    assert f.shape == (1, 10, FEATURE_DIM) and idx.shape == (1, 10, 10)


def test_train_mode_quirk_is_seeded(tmp_path, random_encoder, cloud) -> None:
    enc = PointMAEEncoder(num_group=32, group_size=16, pretrained=False)
    enc.load_state_dict(random_encoder.state_dict())
    enc.train()
    torch.manual_seed(3)
    a, _, _ = enc(cloud)
    torch.manual_seed(3)
    b, _, _ = enc(cloud)
    assert torch.equal(a, b)
    enc.eval()
    c, _, _ = enc(cloud)
    assert not torch.allclose(a, c)  # batch statistics / drop path differ from eval mode


def test_cloud_features_official_mode_is_repeatable(random_encoder, cloud) -> None:
    xyz = cloud[0].numpy()
    a, ca = random_encoder.cloud_features(xyz, official_train_mode=True, seed=1, key="s0")
    b, _ = random_encoder.cloud_features(xyz, official_train_mode=True, seed=1, key="s0")
    assert np.array_equal(a, b) and a.shape[1] == FEATURE_DIM and ca.shape[1] == 3
    assert not random_encoder.training  # left in eval mode
    e, _ = random_encoder.cloud_features(xyz, official_train_mode=False, seed=1, key="s0")
    assert not np.allclose(a, e)


def test_wrong_keys_give_clear_error(tmp_path, random_encoder) -> None:
    ckpt = _official_checkpoint(random_encoder)
    del ckpt["base_model"]["module.MAE_encoder.norm.weight"]
    ckpt["base_model"]["module.cls_head_finetune.0.weight"] = torch.zeros(2, 2)
    path = tmp_path / "finetuned.pth"
    torch.save(ckpt, path)
    with pytest.raises(WeightsError) as err:
        PointMAEEncoder(num_group=32, group_size=16, weights=path)
    msg = str(err.value)
    assert str(path) in msg and "norm.weight" in msg and "cls_head_finetune.0.weight" in msg
    assert "missing" in msg and "unexpected" in msg


def test_wrong_shape_and_garbage_file(tmp_path, random_encoder) -> None:
    ckpt = _official_checkpoint(random_encoder)
    ckpt["base_model"]["module.MAE_encoder.pos_embed.0.weight"] = torch.zeros(64, 3)
    path = tmp_path / "bad.pth"
    torch.save(ckpt, path)
    with pytest.raises(WeightsError, match="wrong shape"):
        PointMAEEncoder(num_group=32, group_size=16, weights=path)
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match="junk.pth"):
        PointMAEEncoder(weights=junk)


def test_offline_without_weights_names_the_file(tmp_path) -> None:
    with pytest.raises(WeightsError) as err:
        PointMAEEncoder()
    assert POINTMAE_WEIGHTS.filename in str(err.value)
    with pytest.raises(WeightsError, match="does not exist"):
        PointMAEEncoder(weights=tmp_path / "missing.pth")


def test_bad_input(random_encoder) -> None:
    with pytest.raises(ContractError):
        random_encoder(torch.randn(100, 3))
    bad = torch.randn(1, 50, 3)
    bad[0, 3, 1] = float("nan")
    with pytest.raises(ContractError, match="NaN"):
        random_encoder(bad)


def test_chunked_batch_statistics_match_train_mode_forward(random_encoder, cloud) -> None:
    """Train mode (the official extractor's mode): BatchNorm over all groups, found in chunks."""
    groups, _, _ = random_encoder.group(cloud)
    flat = groups.reshape(-1, *groups.shape[2:])
    enc = random_encoder.encoder
    buffers = {k: v.clone() for k, v in enc.state_dict().items()}
    enc.train()
    try:
        with torch.no_grad():
            want = enc(flat)  # plain one-piece forward, BatchNorm in train mode
    finally:
        enc.load_state_dict(buffers)  # train-mode forward updated the running statistics
        enc.eval()
    got = enc.encode_chunked(flat, chunk=7, batch_stats=True)
    assert torch.allclose(got, want, atol=1e-4, rtol=1e-4)
    eval_chunked = enc.encode_chunked(flat, chunk=7, batch_stats=False)
    with torch.no_grad():
        assert torch.allclose(eval_chunked, enc(flat), atol=1e-5)
