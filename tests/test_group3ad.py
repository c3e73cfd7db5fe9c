"""Group3AD: fake anomalies, elbow K, IUN/IAN losses, AGCS, fine-tuning, presets (tiny configs,
random-weight Point-MAE). The end-to-end runs through the runner are in test_group3ad_runner.py."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from benchmark.components.backbones.pointmae import PointMAEEncoder
from benchmark.components.geometry.descriptors import fpfh
from benchmark.components.geometry.pointops import farthest_point_sample
from benchmark.errors import ConfigError, ContractError, NotFittedError, WeightsError
from benchmark.registry import METHODS
from benchmark.sample import Sample
from methods.group3ad import Group3AD
from methods.group3ad.agcs import agcs_centres, fpfh_local_variation, high_variation_points
from methods.group3ad.clustering import (
    alignment_loss,
    cluster_features,
    elbow,
    uniformity_loss,
    wcss_curve,
)
from methods.group3ad.fake import fake_anomaly, fpfh_response

PRESETS = ("group3ad", "group3ad_no_iun_ian", "group3ad_no_agcs", "patchcore_pointmae_iun_ian",
           "patchcore_pointmae_agcs")  # fmt: skip
TINY = dict(num_group=32, group_size=16, memory_size=300, pretrained=False, register=False,
            epochs=2, train_group_batch=32, k_range=(2, 4), agcs_neighbors=8)  # fmt: skip


def _sphere(n: int, seed: int = 0, radius: float = 10.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    d = rng.normal(size=(n, 3))
    return (radius * d / np.linalg.norm(d, axis=1, keepdims=True)).astype(np.float32)


def _ridge_plane(n_side: int = 60) -> tuple[np.ndarray, np.ndarray]:
    """A flat 30 x 30 mm sheet (0.5 mm spacing) with one sharp ridge along x = 0 (a V-shaped
    crease 1 mm wide); returns the points and the mask of the crease region."""
    u = (np.arange(n_side) - n_side / 2 + 0.5) * 0.5
    x, y = np.meshgrid(u, u, indexing="ij")
    z = np.clip(1.0 - np.abs(x), 0, None) * 2.0
    pts = np.stack([x.ravel(), y.ravel(), z.ravel()], 1).astype(np.float32)
    return pts, np.abs(pts[:, 0]) <= 1.5


# --- fake anomalies ------------------------------------------------------------------------
def test_fpfh_response_rules() -> None:
    h = np.array([[1.0, 1.0, 1.0, 1.0], [4.0, 0.0, 0.0, 0.0], [2.0, 2.0, 0.0, 0.0]])
    assert np.allclose(fpfh_response(h, "l2"), [2.0, 4.0, np.sqrt(8.0)])
    assert np.allclose(fpfh_response(h, "max_bin"), [1.0, 4.0, 2.0])
    assert np.argmax(fpfh_response(h, "distinct")) == 1
    with pytest.raises(ConfigError, match="unknown FPFH response"):
        fpfh_response(h, "sum")


def test_fake_anomaly_moves_only_the_chosen_fraction_and_is_seeded() -> None:
    pts = _sphere(5000)
    centre = int(np.argmax(fpfh_response(fpfh(pts, 2.0, 30, 5.0, 100))))
    out = fake_anomaly(pts, centre, np.random.default_rng(3), noise_unit=1.0)
    assert 0.01 <= out.ratio <= 0.10 and 0.01 <= out.variance <= 0.05
    m = round(out.ratio * len(pts))
    assert len(out.moved) == m and out.points.shape == pts.shape
    changed = np.flatnonzero(np.any(out.points != pts, axis=1))
    assert np.array_equal(changed, out.moved)  # every chosen point moves, no other point does
    # the region is the m points nearest to the centre
    dist = np.linalg.norm(pts - pts[centre], axis=1)
    assert dist[out.moved].max() <= np.sort(dist)[m - 1] + 1e-6
    # noise std = sqrt(variance) * unit, per coordinate
    noise = (out.points - pts)[out.moved]
    assert abs(noise.std() / np.sqrt(out.variance) - 1) < 0.2
    again = fake_anomaly(pts, centre, np.random.default_rng(3), noise_unit=1.0)
    assert np.array_equal(again.points, out.points)
    other = fake_anomaly(pts, centre, np.random.default_rng(4), noise_unit=1.0)
    assert not np.array_equal(other.points, out.points)
    scaled = fake_anomaly(pts, centre, np.random.default_rng(3), noise_unit=10.0)
    assert np.allclose(scaled.points - pts, 10 * (out.points - pts), atol=1e-4)
    union = fake_anomaly(pts, centre, np.random.default_rng(3), mode="union")
    assert np.array_equal(union.points[: len(pts)], pts) and len(union.points) == len(pts) + m
    with pytest.raises(ConfigError):
        fake_anomaly(pts, centre, np.random.default_rng(0), ratio_range=(0.0, 0.1))


# --- clustering and losses -----------------------------------------------------------------
def test_elbow_finds_the_number_of_well_separated_blobs() -> None:
    rng = np.random.default_rng(0)
    for n_blobs in (3, 5):
        centres = rng.normal(size=(n_blobs, 16)) * 20
        truth = np.repeat(np.arange(n_blobs), 40)
        x = centres[truth] + rng.normal(size=(len(truth), 16))
        k, labels = cluster_features(x, (2, 9), seed=0)
        assert k == n_blobs
        # the K-means partition is the blob partition (up to label names)
        pairs = set(zip(truth.tolist(), labels.tolist()))
        assert len(pairs) == n_blobs
    assert elbow([2, 3, 4, 5], np.array([4.0, 3.0, 2.0, 1.0])) == 2  # a line has no knee
    ks = [2, 3, 4]
    wcss, _ = wcss_curve(x, ks, seed=0)
    assert np.all(np.diff(wcss) < 0)


def test_losses_equal_the_direct_formulas() -> None:
    f = torch.tensor([[0.0, 0.0], [1.0, 0.0], [5.0, 0.0], [5.0, 2.0], [0.0, 9.0]])
    labels = np.array([7, 7, 3, 3, 9])  # any label values
    # centres (0.5, 0), (5, 1), (0, 9): closest pair (0.5, 0)-(5, 1)
    assert float(uniformity_loss(f, labels)) == pytest.approx(1 / np.sqrt(4.5**2 + 1))
    # max squared intra-cluster distances 1, 4, 0 over K = 3 clusters, T = 0.5
    assert float(alignment_loss(f, labels, temperature=0.5)) == pytest.approx(0.5 / 3 * 5)
    with pytest.raises(ConfigError):
        uniformity_loss(f, np.zeros(5, int))


@pytest.mark.parametrize("which", ["iun", "ian"])
def test_each_loss_decreases_when_optimising_the_encoder(which: str) -> None:
    torch.manual_seed(0)
    enc = PointMAEEncoder(num_group=48, group_size=16, pretrained=False)
    cloud = torch.from_numpy(_sphere(1500))[None]
    idx = farthest_point_sample(cloud, 48)
    with torch.no_grad():
        f0 = enc(cloud, idx)[0][0]
    _, labels = cluster_features(f0.numpy(), (3, 3), seed=0)
    enc.requires_grad_(True)
    opt = torch.optim.Adam(enc.parameters(), lr=1e-3)
    losses = []
    for _ in range(4):
        feats = enc.forward_features(cloud, idx)[0][0]
        loss = uniformity_loss(feats, labels) if which == "iun" else alignment_loss(feats, labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < losses[0], losses


# --- Point-MAE additions -------------------------------------------------------------------
def test_pointmae_explicit_centres_and_gradients() -> None:
    enc = PointMAEEncoder(num_group=32, group_size=16, pretrained=False)
    cloud = torch.from_numpy(_sphere(800))[None]
    idx = farthest_point_sample(cloud, 32)
    with torch.no_grad():
        a = enc(cloud)
        b = enc(cloud, idx)
    assert torch.equal(a[1], b[1]) and torch.allclose(a[0], b[0])
    assert not a[0].requires_grad
    enc.requires_grad_(True)
    enc.train()
    feats = enc.forward_features(cloud, idx[:, :10])[0]
    assert feats.shape == (1, 10, enc.feature_dim)
    feats.sum().backward()
    assert enc.encoder.first_conv[0].weight.grad is not None
    assert enc.pos_embed[0].weight.grad is not None
    with pytest.raises(ContractError, match="center_idx"):
        enc(cloud, torch.tensor([[0, 800]]))


# --- AGCS ----------------------------------------------------------------------------------
def test_agcs_puts_alpha_n_centres_among_the_high_variation_points() -> None:
    pts, crease = _ridge_plane()
    args = (1.0, 30, 2.5, 100)
    hist = fpfh(pts, *args)
    variation = fpfh_local_variation(pts, hist, 16)
    high = high_variation_points(variation, 0.1)
    assert len(high) == int(np.ceil(0.1 * len(pts)))
    assert crease[high].mean() > 0.6  # the sharp feature is where FPFH varies
    n, alpha = 40, 0.5
    idx = agcs_centres(pts, n, alpha, 16, 0.1, args, seed=0)
    assert len(idx) <= n and len(np.unique(idx)) == len(idx)
    assert np.isin(idx, high).sum() >= alpha * n
    fps_only = agcs_centres(pts, n, 0.0, 16, 0.1, args, seed=0)
    assert crease[idx].sum() > crease[fps_only].sum()
    # a subset above max_points: centres are still points of the cloud, seeded
    sub = agcs_centres(pts, n, alpha, 16, 0.1, args, max_points=1000, seed=1)
    assert np.array_equal(sub, agcs_centres(pts, n, alpha, 16, 0.1, args, max_points=1000, seed=1))
    assert sub.max() < len(pts)
    with pytest.raises(ConfigError):
        agcs_centres(pts, n, 1.5, 16, 0.1, args)


# --- the detector --------------------------------------------------------------------------
def _sample(i: int, split: str, anomalous: bool = False) -> Sample:
    rng = np.random.default_rng(100 + i)
    pts = _sphere(1000, seed=i)
    mask = np.zeros(len(pts), np.uint8)
    if anomalous:
        c = pts[rng.integers(len(pts))]
        near = np.linalg.norm(pts - c, axis=1) < 3.0
        pts[near] *= 1.15
        mask[near] = 1
    return Sample(id=f"{split}{i}", dataset="toy", category="ball", split=split,
                  defect="bulge" if anomalous else "good", points=pts, label=int(anomalous),
                  point_mask=mask)  # fmt: skip


@pytest.fixture(scope="module")
def fitted() -> Group3AD:
    det = Group3AD(**TINY, normalize="train", seed=1)
    det.fit(iter([_sample(i, "train") for i in range(2)]))  # a one-shot iterator
    return det


def test_fine_tuning_runs_both_phases_and_trains_only_the_encoder(fitted) -> None:
    phases = [h["phase"] for h in fitted.history]
    assert phases == ["iun", "iun", "ian", "ian"]  # E/2 epochs each, one step per cloud
    assert all(2 <= h["k"] <= 4 and np.isfinite(h["loss"]) for h in fitted.history)
    start = fitted._initial_state
    changed = [k for k, v in fitted.encoder.state_dict().items() if not torch.equal(v, start[k])]
    assert changed and all(not p.requires_grad for p in fitted.encoder.parameters())
    assert fitted.encoder.training is False


def test_predictions_deterministic_order_free_and_refit_restarts(fitted) -> None:
    test = [_sample(10 + i, "test", anomalous=i % 2 == 1) for i in range(4)]
    before = [t.points.copy() for t in test]
    preds = list(fitted.predict_many(test))
    assert all(np.array_equal(b, t.points) for b, t in zip(before, test))
    single = fitted.predict(test[1])
    assert single.score == pytest.approx(preds[1].score)
    assert np.allclose(single.point_scores, preds[1].point_scores)
    reversed_preds = list(fitted.predict_many(test[::-1]))[::-1]
    assert [p.score for p in reversed_preds] == pytest.approx([p.score for p in preds])
    for p, s in zip(preds, test):
        p.check_against(s)
    twin = Group3AD(**TINY, normalize="train", seed=1)  # random init from the seed
    init = fitted._initial_state
    assert all(torch.equal(v, init[k]) for k, v in twin.encoder.state_dict().items())
    fitted.fit([_sample(i, "train") for i in range(2)])  # a refit starts from the initial weights
    again = fitted.predict(test[1])
    assert again.score == pytest.approx(single.score)
    assert np.allclose(again.point_scores, single.point_scores)


def test_presets_switch_the_modules() -> None:
    for name in PRESETS:
        entry = METHODS.get(name)
        assert entry.learning == "one_class" and "point_scores" in entry.outputs
        assert "no official code" in entry.provenance
    make = lambda name: METHODS.create(name, **METHODS.get(name).smoke)  # noqa: E731
    full, no_train = make("group3ad"), make("group3ad_no_iun_ian")
    no_agcs = make("group3ad_no_agcs")
    assert full.iun_ian and full.agcs and full.xyz_bank and full.uses_test_statistics
    assert not no_train.iun_ian and no_train.agcs and not no_agcs.agcs and no_agcs.iun_ian
    pc_train, pc_agcs = make("patchcore_pointmae_iun_ian"), make("patchcore_pointmae_agcs")
    for det in (pc_train, pc_agcs):
        assert not det.xyz_bank and det.normalize == "none" and not det.uses_test_statistics
    assert pc_train.iun_ian and not pc_train.agcs and pc_agcs.agcs and not pc_agcs.iun_ian
    with pytest.raises(NotFittedError, match="before fit"):
        list(full.predict_many([_sample(0, "test")]))
    with pytest.raises(NotFittedError, match="before fit"):
        full.predict(_sample(0, "test"))
    with pytest.raises(ConfigError):
        Group3AD(pretrained=False, optimizer="rmsprop")
    with pytest.raises(ConfigError):
        Group3AD(pretrained=False, k_range=(1, 5))
    with pytest.raises(ContractError, match="no training samples"):
        Group3AD(**TINY).fit([])


def test_single_bank_without_normalisation_scores_raw_distances() -> None:
    det = Group3AD(**{**TINY, "epochs": 0}, xyz_bank=False, normalize="none", agcs=False)
    det.fit([_sample(i, "train") for i in range(2)])
    assert det.bank_b is None
    test = [_sample(10, "test"), _sample(11, "test", anomalous=True)]
    preds = list(det.predict_many(test))
    assert preds[1].score > preds[0].score  # the bulge is farther from the bank
    assert preds[0].score == pytest.approx(float(preds[0].point_scores.max()))


def test_pretrained_offline_names_the_weights_file(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("BENCHMARK_WEIGHTS", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(WeightsError, match="pointmae_pretrain.pth"):
        Group3AD()
    with pytest.raises(WeightsError, match="missing.pth"):
        Group3AD(weights=tmp_path / "missing.pth")
