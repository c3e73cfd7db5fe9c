"""PointAD / PointAD+: DPAM CLIP, prompts, losses, G-aggregation, training, inference, weights."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import benchmark  # noqa: F401  (torchvision fix before open_clip)
from benchmark.errors import ConfigError, ContractError, NotFittedError, WeightsError
from benchmark.registry import METHODS
from benchmark.sample import Sample
from methods.pointad import clip_dpam
from methods.pointad.aggregation import PointAggregator, neighbour_weights
from methods.pointad.losses import cross_hierarchy_loss, dice_loss, focal_loss

TINY = "pointad-tiny"
SMOKE = METHODS.get("pointad").smoke


@pytest.fixture(scope="module")
def tiny_clip():
    torch.manual_seed(0)
    return clip_dpam.load_clip(TINY, pretrained=False)


def organized_sample(i: int, label: int, category: str = "bagel", h: int = 24,
                     dataset: str = "mvtec3d") -> Sample:
    """A small bumpy organized surface; anomalous samples carry a raised disc."""
    yy, xx = np.meshgrid(np.linspace(-1, 1, h), np.linspace(-1, 1, h), indexing="ij")
    z = 0.3 * np.exp(-(xx**2 + yy**2) * 2) + 0.02 * np.sin(3 * xx + i)
    mask = np.zeros((h, h), np.uint8)
    if label:
        disc = (xx - 0.3) ** 2 + (yy - 0.2) ** 2 < 0.08
        z = z + 0.2 * disc
        mask[disc] = 1
    grid = np.stack([xx, yy, z + 1.0], -1).astype(np.float32)
    rgb = (np.random.default_rng(i).random((h, h, 3)) * 255).astype(np.uint8)
    return Sample(id=f"{category}_{i}", dataset=dataset, category=category, split="test",
                  defect="bump" if label else "good", points=grid.reshape(-1, 3), label=label,
                  point_mask=mask.reshape(-1), xyz_grid=grid,
                  grid_index=np.arange(h * h, dtype=np.int64), rgb=rgb, pixel_mask=mask)


def unorganized_sample(i: int, label: int, category: str = "shell", n: int = 600) -> Sample:
    rng = np.random.default_rng(i)
    pts = rng.normal(size=(n, 3)).astype(np.float32)
    pts /= np.linalg.norm(pts, axis=1, keepdims=True)
    mask = np.zeros(n, np.uint8)
    if label:
        sel = pts[:, 0] > 0.8
        pts[sel] *= 1.15
        mask[sel] = 1
    return Sample(id=f"{category}_{i}", dataset="real3d", category=category, split="test",
                  defect="bump" if label else "good", points=pts, label=label, point_mask=mask)


# ---------------------------------------------------------------------------------------------
# CLIP with DPAM


def test_dpam_original_path_reproduces_encode_image(tiny_clip):
    x = torch.randn(3, 3, 64, 64)
    glob, patches = clip_dpam.encode_image_dpam(tiny_clip, x, dpam_layers=2)
    assert torch.equal(glob, tiny_clip.encode_image(x))
    assert patches.shape == (3, 64, 64)  # 8x8 patch grid, embed dim 64


def _manual_vv(model, x, dpam_layers):
    """Direct re-derivation of the V-V path with the MHA weights, block by block."""
    vis = model.visual
    h = vis._embeds(x)
    blocks = vis.transformer.resblocks
    start = len(blocks) - dpam_layers
    vv, per_layer = None, []
    for i, blk in enumerate(blocks):
        if i >= start:
            a = blk.ln_1(h)
            width = a.shape[-1]
            heads = blk.attn.num_heads
            v = a @ blk.attn.in_proj_weight[2 * width :].T + blk.attn.in_proj_bias[2 * width :]
            v = v.view(a.shape[0], a.shape[1], heads, -1).transpose(1, 2)
            att = (v @ v.transpose(-1, -2) * v.shape[-1] ** -0.5).softmax(-1)
            out = (att @ v).transpose(1, 2).reshape(a.shape)
            res = blk.attn.out_proj(out)
            vv = h + res if vv is None else vv + res
            per_layer.append(vv.clone())
        h = blk(h)
    return [vis.ln_post(t)[:, 1:] @ vis.proj for t in per_layer]


def test_vv_path_final_layer_and_explicit_layer(tiny_clip):
    x = torch.randn(2, 3, 64, 64)
    manual = _manual_vv(tiny_clip, x, dpam_layers=2)
    _, final = clip_dpam.encode_image_dpam(tiny_clip, x, dpam_layers=2)
    torch.testing.assert_close(final, manual[-1], atol=1e-5, rtol=1e-5)
    _, layer2 = clip_dpam.encode_image_dpam(tiny_clip, x, dpam_layers=2, patch_layer=2)
    torch.testing.assert_close(layer2, manual[0], atol=1e-5, rtol=1e-5)
    assert not torch.allclose(layer2, final)
    _, vanilla = clip_dpam.encode_image_dpam(tiny_clip, x, use_dpam=False)
    assert not torch.allclose(vanilla, final)
    with pytest.raises(ConfigError):
        clip_dpam.encode_image_dpam(tiny_clip, x, dpam_layers=2, patch_layer=1)


def test_text_encoder_matches_open_clip_and_deep_prompts_act(tiny_clip):
    tok = clip_dpam.tokenizer_for(TINY)(["a photo of a damaged object.", "object."])
    emb = tiny_clip.token_embedding(tok)
    plain = clip_dpam.encode_text_embeddings(tiny_clip, emb, tok.argmax(-1))
    assert torch.equal(plain, tiny_clip.encode_text(tok))
    deep = torch.randn(2, 4, 64) * 0.5
    assert not torch.allclose(clip_dpam.encode_text_embeddings(tiny_clip, emb, tok.argmax(-1),
                                                                deep), plain)


# ---------------------------------------------------------------------------------------------
# weights


def test_offline_openai_weights_raise_weights_error(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("BENCHMARK_WEIGHTS", str(tmp_path / "w"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "th"))
    monkeypatch.setenv("HOME", str(tmp_path))
    t0 = time.perf_counter()
    with pytest.raises(WeightsError) as err:
        clip_dpam.load_clip("ViT-L-14-336", "openai")
    assert time.perf_counter() - t0 < 5
    msg = str(err.value)
    assert "ViT-L-14-336px.pt" in msg and str(tmp_path / "w") in msg
    with pytest.raises(WeightsError, match="does not exist"):
        clip_dpam.load_clip(TINY, str(tmp_path / "missing.bin"))


def test_local_weight_file_loads(tiny_clip, tmp_path):
    path = tmp_path / "tiny.bin"
    torch.save(tiny_clip.state_dict(), path)
    loaded = clip_dpam.load_clip(TINY, str(path))
    for (k, a), (_, b) in zip(tiny_clip.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), k
    assert not any(p.requires_grad for p in loaded.parameters())


# ---------------------------------------------------------------------------------------------
# losses and G-aggregation


def test_focal_and_dice_losses_match_direct_formulas():
    probs = torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
    target = torch.tensor([0, 1, 1])
    s = 1e-5
    pt = torch.tensor([0.9 * (1 - s) + 0.1 * s, 0.2 * s + 0.8 * (1 - s), 0.6 * s + 0.4 * (1 - s)])
    pt = pt + s
    want = (-(1 - pt) ** 2 * pt.log()).mean()
    torch.testing.assert_close(focal_loss(probs, target), want)
    p = torch.tensor([[0.5, 1.0, 0.0]])
    t = torch.tensor([[1.0, 1.0, 0.0]])
    torch.testing.assert_close(dice_loss(p, t), torch.tensor(1 - (2 * 1.5 + 1) / (1.5 + 2 + 1)))


def test_cross_hierarchy_loss_prefers_aligned_layers():
    r = F.normalize(torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]), dim=-1)
    aligned = cross_hierarchy_loss(r, r.clone())
    swapped = cross_hierarchy_loss(r, r.flip(0))
    assert aligned < swapped
    manual = 4 * F.cross_entropy(torch.tensor([[1.0, 0.0]]) / 0.07, torch.tensor([0]))
    torch.testing.assert_close(aligned, manual)


def _loop_g_aggregation(points, pixel_index, visible, feats, image_hw, grid_hw, k, sigma, alpha):
    n = points.shape[0]
    (hh, ww), (gh, gw) = image_hw, grid_hw
    q = np.zeros((n, feats.shape[-1]))
    for j in range(n):
        acc, cnt = 0.0, 0
        for v in range(pixel_index.shape[0]):
            if visible[v, j]:
                r, c = divmod(int(pixel_index[v, j]), ww)
                acc = acc + feats[v, (r * gh // hh) * gw + c * gw // ww]
                cnt += 1
        q[j] = acc / cnt
    out = np.zeros_like(q)
    for j in range(n):
        d = np.linalg.norm(points - points[j], axis=1)
        d[j] = np.inf
        nb = np.argsort(d, kind="stable")[:k]
        kern = np.exp(-d[nb] ** 2 / (2 * sigma**2))
        kern /= kern.sum()
        out[j] = alpha * (kern[:, None] * q[nb]).sum(0) + (1 - alpha) * q[j]
    return out


def test_g_aggregation_against_direct_loop():
    rng = np.random.default_rng(3)
    n, v, (hh, ww), (gh, gw), d = 60, 3, (16, 16), (4, 4), 8
    points = rng.random((n, 3)).astype(np.float32) * 2
    pixel_index = rng.integers(0, hh * ww, size=(v, n))
    visible = rng.random((v, n)) > 0.4
    visible[0, ~visible.any(0)] = True
    feats = rng.normal(size=(v, gh * gw, d)).astype(np.float32)
    want = _loop_g_aggregation(points, pixel_index, visible, feats, (hh, ww), (gh, gw),
                               k=10, sigma=1.0, alpha=0.5)
    agg = PointAggregator(points, pixel_index, visible, (hh, ww), (gh, gw), k=10, sigma=1.0,
                          alpha=0.5)
    got = agg.explicit_features(torch.from_numpy(feats)).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    text = F.normalize(torch.randn(2, d), dim=-1)
    cos = agg.explicit_logits(torch.from_numpy(feats), text).numpy()
    want_cos = (want / np.linalg.norm(want, axis=1, keepdims=True)) @ text.numpy().T
    np.testing.assert_allclose(cos, want_cos, rtol=1e-4, atol=1e-5)


def test_neighbour_weights_exclude_self_with_duplicates():
    pts = np.array([[0, 0, 0], [0, 0, 0], [1, 0, 0], [2, 0, 0], [3, 0, 0]], np.float32)
    idx, w = neighbour_weights(pts, k=2, sigma=1.0)
    assert (idx != np.arange(5)[:, None]).all()
    np.testing.assert_allclose(w.sum(1), 1.0, rtol=1e-6)
    assert set(idx[0]) == {1, 2}


# ---------------------------------------------------------------------------------------------
# training and inference on tiny CLIP


def _detector(name: str, **over):
    return METHODS.create(name, **{**SMOKE, **over})


def test_loss_decreases_on_fixed_batch():
    from methods.pointad.data import prepare_cloud
    from methods.pointad.trainer import batch_loss, make_aggregator

    det = _detector("pointad_plus")
    engine = det._build()
    settings = det._settings()
    clouds = [prepare_cloud(organized_sample(i, i % 2), settings, with_gt=True) for i in range(2)]
    aggs = [make_aggregator(engine, c, det.k, det.sigma, det.alpha) for c in clouds]
    opt = torch.optim.Adam(engine.prompt_parameters(), lr=1e-2, betas=(0.5, 0.999))
    losses = []
    for _ in range(6):
        total, parts = batch_loss(engine, clouds, aggs)
        assert set(parts) == {"2d_global", "3d_global", "2d_local", "3d_local", "geometry",
                              "cross"}
        opt.zero_grad()
        total.backward()
        opt.step()
        losses.append(float(total.detach()))
    assert losses[-1] < losses[0]
    assert not any(p.requires_grad for p in engine.clip.parameters())


def test_checkpoint_round_trip(tmp_path):
    det = _detector("pointad_plus", save_checkpoint=str(tmp_path / "prompts.pt"))
    det.fit([organized_sample(0, 0), organized_sample(1, 1)])
    target = organized_sample(5, 1, category="cookie")
    before = det.predict(target)
    fresh = _detector("pointad_plus")
    fresh.load(tmp_path / "prompts.pt")
    after = fresh.predict(target)
    assert after.score == pytest.approx(before.score, abs=1e-6)
    np.testing.assert_allclose(after.pixel_scores, before.pixel_scores, atol=1e-6)
    with pytest.raises(ConfigError, match="variant"):
        _detector("pointad").load(tmp_path / "prompts.pt")


def _synthetic(fmt: str):
    from benchmark.registry import DATASETS

    ds = DATASETS.create("synthetic", format=fmt, size="small", categories=2)
    a, b = ds.categories[:2]
    fit = [ds.test(a)[i] for i in range(min(3, len(ds.test(a))))]
    test = [ds.test(b)[i] for i in range(len(ds.test(b)))]
    return fit, test[:4] if len({s.label for s in test[:4]}) == 2 else test


def test_zero_shot_end_to_end_organized():
    from metrics import evaluate

    fit, test = _synthetic("mvtec3d")
    det = _detector("pointad_plus")
    det.fit(fit)
    assert len(det.history) == 1 and det.history[0]["total"] > 0
    preds = [det.predict(s).check_against(s) for s in test]
    results = evaluate(
        np.array([s.label for s in test]), np.array([p.score for p in preds]),
        point_scores=[p.point_scores for p in preds],
        point_masks=[s.point_mask for s in test],
    )
    values = {r.name: r.value for r in results}
    assert 0.0 <= values["image_auroc"] <= 1.0 and 0.0 <= values["point_auroc"] <= 1.0
    assert preds[0].pixel_scores.shape == (SMOKE["grid_size"],) * 2


def test_unorganized_and_multimodal_prediction():
    det = _detector("pointad", num_points=500)
    det.fit([unorganized_sample(0, 0), unorganized_sample(1, 1)])
    s = unorganized_sample(4, 1)
    p = det.predict(s).check_against(s)
    assert p.pixel_scores is None and p.point_scores.shape == (600,)
    assert 0.0 <= p.score <= 1.0
    m3d = _detector("clip_rendering", modality="points+rgb")
    m3d.fit([])
    o = organized_sample(3, 1)
    pm = m3d.predict(o).check_against(o)
    plain = _detector("clip_rendering")
    plain.fit([])
    plain = plain.predict(o)
    assert pm.score != plain.score and pm.pixel_scores.shape == plain.pixel_scores.shape
    official = _detector("clip_rendering", modality="points+rgb", m3d_scoring="official")
    official.fit([])
    assert official.predict(o).score != pm.score  # formulas pinned in test_scoring_formulas.py
    with pytest.raises(ContractError, match="rgb"):
        m3d.predict(s)


def test_untrained_preset_refuses_to_predict():
    with pytest.raises(NotFittedError, match="pointad_coop.*fit"):
        _detector("pointad_coop").predict(organized_sample(0, 0))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu():
    fit = [organized_sample(0, 0), organized_sample(1, 1)]
    target = organized_sample(4, 1)
    cpu = _detector("pointad_plus")
    cpu.fit(fit)
    gpu = _detector("pointad_plus", device="cuda")
    gpu.fit(fit)
    a, b = cpu.predict(target), gpu.predict(target)
    assert a.score == pytest.approx(b.score, abs=1e-3)


def test_official_checkpoint_layout_and_coop_texts(tmp_path):
    det = _detector("pointad_coop")
    engine = det._build()
    pair = engine.render_prompts
    width = pair.ctx_normal.shape[1]
    official = {
        "ctx_pos": torch.full((1, pair.n_ctx, width), 0.5),
        "ctx_neg": torch.full((1, pair.n_ctx, width), -0.5),
        **{f"compound_prompts_text.{i}": torch.full((pair.t_n_ctx, width), float(i))
           for i in range(pair.deep.shape[0])},
    }
    torch.save({"prompt_learner": official}, tmp_path / "epoch_15.pth")
    det.load(tmp_path / "epoch_15.pth")
    assert torch.all(pair.ctx_normal == 0.5) and torch.all(pair.ctx_abnormal == -0.5)
    assert torch.all(pair.deep[-1] == pair.deep.shape[0] - 1)
    normal, abnormal = pair.texts("cable_gland")
    assert normal.endswith(" cable gland.") and abnormal.endswith(" damaged cable gland.")
    assert normal.count("X") == pair.n_ctx
    with pytest.raises(ConfigError, match="geometry"):
        _detector("pointad_plus").load(tmp_path / "epoch_15.pth")


@pytest.mark.slow
def test_full_vit_l14_336_architecture_random_init():
    model = clip_dpam.load_clip("ViT-L-14-336", pretrained=False)
    assert clip_dpam.image_size_of(model) == 336 and clip_dpam.grid_size_of(model) == (24, 24)
    assert type(model.visual.transformer.resblocks[0].mlp.gelu).__name__ == "QuickGELU"
    x = torch.randn(1, 3, 336, 336)
    glob, patches = clip_dpam.encode_image_dpam(model, x)  # DPAM on blocks 6..24
    assert torch.equal(glob, model.encode_image(x))
    assert patches.shape == (1, 576, 768)


@pytest.mark.slow
def test_real_eyecandies_sample_multimodal(shared_data):
    from benchmark.registry import DATASETS

    ds = DATASETS.create("eyecandies", root=str(shared_data / "eyecandies"))
    sample = next(s for s in ds.test("CandyCane") if s.label == 1)
    det = _detector("clip_rendering", modality="points+rgb", grid_size=336, max_views=None,
                    render_window=None)
    det.fit([])
    pred = det.predict(sample).check_against(sample)
    assert pred.pixel_scores.shape == (336, 336)
    from methods.pointad.data import prepare_cloud

    cloud = prepare_cloud(sample, det._settings(), with_gt=True)
    assert cloud.render.num_views == 9  # the official Eyecandies recipe
    assert cloud.view_masks.any() and cloud.view_labels.sum() >= 1
