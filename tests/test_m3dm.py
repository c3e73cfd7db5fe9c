"""M3DM: Point-BERT and DINO checkpoint layouts, UFF pieces, point-only and full presets."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from benchmark.components.backbones.pointbert import POINTBERT_WEIGHTS, PointBERTEncoder
from benchmark.components.backbones.pointmae import PointMAEEncoder
from benchmark.components.backbones.vit import DINO_VITB8_WEIGHTS, DinoViTFeatures
from benchmark.components.geometry.pointops import interpolate_inverse_distance
from benchmark.errors import ContractError, WeightsError
from benchmark.registry import DATASETS, METHODS
from methods.m3dm import (
    M3DM_UFF_WEIGHTS,
    FeatureFusionBlock,
    official_uff_rgb_pairing,
    train_uff,
)

TINY_VIT = {"img_size": 32, "embed_dim": 16, "depth": 2, "num_heads": 2}


@pytest.fixture(scope="module")
def bert() -> PointBERTEncoder:
    torch.manual_seed(0)
    return PointBERTEncoder(num_group=16, group_size=8, pretrained=False)


def _pointbert_file(enc: PointBERTEncoder) -> dict:
    """A checkpoint in the official Point-BERT.pth layout around `enc`'s weights."""
    base = {f"module.transformer_q.{k}": v.clone() for k, v in enc.state_dict().items()}
    base["module.transformer_q.mask_token"] = torch.zeros(1, 1, 384)
    base["module.transformer_q.lm_head.weight"] = torch.zeros(8192, 384)
    base["module.transformer_q.cls_head.0.weight"] = torch.zeros(256, 768)
    base["module.transformer_k.norm.weight"] = torch.ones(384)  # momentum encoder: ignored
    base["module.dvae.codebook"] = torch.zeros(8192, 256)
    return {"base_model": base, "epoch": 300}


def test_pointbert_key_layout_and_loading(tmp_path, bert) -> None:
    keys = set(bert.state_dict())
    # Point-BERT = Point-MAE's encoder with 256-d tokens, reduce_dim and a CLS token/position
    assert {"cls_token", "cls_pos", "reduce_dim.weight", "encoder.second_conv.3.weight"} <= keys
    assert bert.state_dict()["encoder.second_conv.3.weight"].shape[0] == 256
    mae_keys = set(PointMAEEncoder(16, 8, pretrained=False).state_dict())
    assert keys - mae_keys == {"cls_token", "cls_pos", "reduce_dim.weight", "reduce_dim.bias"}
    path = tmp_path / "Point-BERT.pth"
    torch.save(_pointbert_file(bert), path)
    loaded = PointBERTEncoder(num_group=16, group_size=8, weights=path)
    for k, v in bert.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v), k
    cloud = torch.randn(1, 200, 3)
    f1, c1, _ = bert(cloud)
    f2, c2, _ = loaded(cloud)
    assert f1.shape == (1, 16, 1152)  # the CLS token is dropped from the features
    assert torch.equal(f1, f2) and torch.equal(c1, c2)


def test_pointbert_wrong_file_names_the_keys(tmp_path, bert) -> None:
    ckpt = _pointbert_file(bert)
    del ckpt["base_model"]["module.transformer_q.reduce_dim.weight"]
    torch.save(ckpt, tmp_path / "bad.pth")
    with pytest.raises(WeightsError, match="missing: reduce_dim.weight"):
        PointBERTEncoder(num_group=16, group_size=8, weights=tmp_path / "bad.pth")
    torch.save({"base_model": {"module.MAE_encoder.norm.weight": torch.ones(384)}},
               tmp_path / "mae.pth")
    with pytest.raises(WeightsError, match="transformer_q"):
        PointBERTEncoder(num_group=16, group_size=8, weights=tmp_path / "mae.pth")


def test_dino_checkpoint_layouts(tmp_path) -> None:
    torch.manual_seed(0)
    ref = DinoViTFeatures(pretrained=False, arch=TINY_VIT)
    state = ref.model.state_dict()
    assert {"cls_token", "pos_embed", "patch_embed.proj.weight", "norm.weight"} <= set(state)
    # the official release: a plain state dict in timm's layout
    torch.save({k: v.clone() for k, v in state.items()}, tmp_path / "plain.pth")
    # a DINO training checkpoint: teacher backbone + projection head
    train_ckpt = {"teacher": {f"module.backbone.{k}": v.clone() for k, v in state.items()}}
    train_ckpt["teacher"]["module.head.mlp.0.weight"] = torch.zeros(8, 16)
    torch.save(train_ckpt, tmp_path / "teacher.pth")
    img = torch.randn(1, 3, 32, 32)
    for name in ("plain.pth", "teacher.pth"):
        vit = DinoViTFeatures(weights=tmp_path / name, arch=TINY_VIT)
        out = vit(img)
        assert out.shape == (1, 16, 4, 4)
        assert torch.equal(out, ref(img))
    del state["norm.weight"]
    torch.save(state, tmp_path / "broken.pth")
    with pytest.raises(WeightsError, match="missing: norm.weight"):
        DinoViTFeatures(weights=tmp_path / "broken.pth", arch=TINY_VIT)


def test_offline_refusals_name_each_file(monkeypatch, tmp_path) -> None:
    for var in ("HOME", "HF_HOME", "TORCH_HOME"):
        monkeypatch.setenv(var, str(tmp_path / var))
    with pytest.raises(WeightsError, match=POINTBERT_WEIGHTS.filename):
        PointBERTEncoder()
    with pytest.raises(WeightsError, match=DINO_VITB8_WEIGHTS.filename):
        DinoViTFeatures(arch=TINY_VIT)
    with pytest.raises(WeightsError, match="pointmae_pretrain.pth"):
        METHODS.create("m3dm_pointmae")
    with pytest.raises(WeightsError, match="Point-BERT.pth"):
        METHODS.create("m3dm_pointbert")
    smoke = {k: v for k, v in METHODS.get("m3dm").smoke.items() if k != "pretrained"}
    with pytest.raises(WeightsError, match="pointmae_pretrain.pth"):
        METHODS.create("m3dm", **smoke)
    # the UFF checkpoint is needed even when the backbones are given explicitly
    from benchmark.weights import resolve_weights

    with pytest.raises(WeightsError, match=M3DM_UFF_WEIGHTS.filename):
        resolve_weights(M3DM_UFF_WEIGHTS)


def test_inverse_distance_interpolation_matches_brute_force() -> None:
    rng = np.random.default_rng(0)
    src = rng.normal(size=(20, 3)).astype(np.float32)
    vals = rng.normal(size=(20, 5)).astype(np.float32)
    dst = rng.normal(size=(50, 3)).astype(np.float32)
    out = interpolate_inverse_distance(src, vals, dst, k=3)
    d2 = ((dst[:, None] - src[None]) ** 2).sum(-1)
    idx = np.argsort(d2, axis=1)[:, :3]
    w = 1.0 / (np.take_along_axis(d2, idx, 1) + 1e-8)
    ref = (vals[idx] * (w / w.sum(1, keepdims=True))[..., None]).sum(1)
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(interpolate_inverse_distance(src, vals, src[:4]), vals[:4],
                               rtol=1e-4, atol=1e-5)  # a point on a centre takes its value


def test_official_uff_pairing_formula() -> None:
    tokens = torch.arange(784 * 2, dtype=torch.float32).reshape(784, 2)
    official = tokens.repeat(4, 1).reshape(784, 4, -1).permute(1, 0, 2).reshape(784 * 4, -1)
    assert torch.equal(official_uff_rgb_pairing(tokens), official)


def test_uff_loss_is_chunk_independent_and_training_lowers_it() -> None:
    torch.manual_seed(0)
    block = FeatureFusionBlock(xyz_dim=12, rgb_dim=8, mlp_ratio=2.0, head_dim=6)
    xyz = torch.randn(40, 12)
    xyz[:5] = 0  # background patches are left out of the loss
    rgb = torch.randn(40, 8)
    with torch.no_grad():
        full = block.contrastive_loss(xyz, rgb, chunk=1000)
        chunked = block.contrastive_loss(xyz, rgb, chunk=7)
    torch.testing.assert_close(full, chunked)
    # paired modalities that share structure: the contrastive loss must go down
    base = torch.randn(8, 40, 4)
    xs = [torch.cat([b, b ** 2, torch.sin(b)], 1) for b in base]
    rs = [torch.cat([b.flip(1), b.abs()], 1) for b in base]
    losses = train_uff(block, xs, rs, epochs=12, warmup_epochs=1, batch_size=4, lr=1e-2)
    assert np.mean(losses[-4:]) < 0.9 * np.mean(losses[:4]), (losses[:4], losses[-4:])


@pytest.mark.parametrize("preset", [
    pytest.param("m3dm_pointmae", marks=pytest.mark.slow), "m3dm_pointbert"])
def test_point_presets_end_to_end_on_synthetic_real3d(preset: str) -> None:
    ds = DATASETS.create("synthetic", format="real3d", size="small", seed=0)
    cat = ds.categories[0]
    entry = METHODS.get(preset)
    det = entry.create(**entry.smoke)
    with pytest.raises(ContractError, match="before fit"):
        det.predict(ds.test(cat)[0])
    det.fit(iter(ds.train(cat)))
    test = ds.test(cat)[:3]
    preds = list(det.predict_many(test))
    for p, s in zip(preds, test):
        p.check_against(s)
        # scores are copied from the group centres: at most num_group distinct values
        assert len(np.unique(p.point_scores)) <= entry.smoke["num_group"]
    # same seed, same result (random initialisation included)
    again = entry.create(**entry.smoke)
    again.fit(ds.train(cat))
    np.testing.assert_array_equal(again.predict(test[0]).point_scores, preds[0].point_scores)
    assert det.bank is not None and len(det.bank) == max(1, int(0.1 * len(ds.train(cat)) * 32))


def test_full_m3dm_end_to_end_on_synthetic_mvtec3d() -> None:
    ds = DATASETS.create("synthetic", format="mvtec3d", size="small", seed=0)
    cat = ds.categories[0]
    entry = METHODS.get("m3dm")
    det = entry.create(**{**entry.smoke, "max_train_samples": 3})
    det.fit(iter(ds.train(cat)))
    assert len(det.uff_losses) >= 1 and np.isfinite(det.uff_losses).all()
    assert set(det.banks) == {"xyz", "rgb", "fusion"}
    assert np.all(det.banks["xyz"].features[-1] == 0)  # the official appended zero row
    test = ds.test(cat)
    sample = test[0]
    before = sample.xyz_grid.copy()
    p = det.predict(sample)
    np.testing.assert_array_equal(sample.xyz_grid, before)
    assert p.pixel_scores.shape == (32, 32) and np.isfinite(p.score)
    with pytest.raises(ContractError, match="organized xyz grid and an RGB image"):
        real3d = DATASETS.create("synthetic", format="real3d", size="small", seed=0)
        det.predict(real3d.test(real3d.categories[0])[0])


def test_official_uff_checkpoint_layout_loads(tmp_path) -> None:
    import argparse

    from methods.m3dm import _load_uff

    torch.manual_seed(1)
    src = FeatureFusionBlock(xyz_dim=12, rgb_dim=8)
    # misc.save_model of the official fusion_pretrain.py: model, optimizer, epoch, scaler, args
    torch.save({"model": src.state_dict(), "optimizer": {}, "epoch": 2,
                "args": argparse.Namespace(lr=0.003)}, tmp_path / "checkpoint-0.pth")
    dst = FeatureFusionBlock(xyz_dim=12, rgb_dim=8)
    _load_uff(tmp_path / "checkpoint-0.pth", dst)
    for k, v in src.state_dict().items():
        assert torch.equal(dst.state_dict()[k], v), k
    torch.save({"model": {"xyz_norm.weight": torch.ones(12)}}, tmp_path / "bad.pth")
    with pytest.raises(WeightsError, match="missing: rgb_head.bias"):
        _load_uff(tmp_path / "bad.pth", dst)
