"""3DzAL (methods/zal3d): pseudo anomalies, losses, perturbation, data guards, end to end."""

from __future__ import annotations

import csv
import inspect

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.spatial import cKDTree

from benchmark.errors import ConfigError, ContractError, WeightsError
from benchmark.registry import DATASETS, METHODS
from methods.zal3d import SMOKE, ZAL3D
from methods.zal3d.losses import (
    classifier_loss,
    contrastive_loss,
    disentangle_loss,
    perturb_patches,
)
from methods.zal3d.pseudo import (
    AddSource,
    add_points,
    inductive_bias_map,
    random_resnet50,
    remove_points,
)


def bump_grid(cy: int, cx: int, size: int = 224) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    z = 0.3 + 0.01 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * 8**2))
    return np.stack([(xx / size - 0.5) * 0.1, (yy / size - 0.5) * 0.1, z], -1).astype(np.float32)


def test_inductive_bias_map_is_seeded_and_finds_a_bump() -> None:
    net = random_resnet50(0)
    same, other = random_resnet50(0).state_dict(), random_resnet50(1).state_dict()
    assert all(torch.equal(v, same[k]) for k, v in net.state_dict().items())
    assert not all(torch.equal(v, other[k]) for k, v in net.state_dict().items())
    grid = bump_grid(60, 150)
    grid[:20] = 0  # missing rows
    a0 = inductive_bias_map(net, grid)
    assert a0.shape == (224, 224) and a0.min() == 0.0 and a0.max() == 1.0
    assert (a0[:20] == 0).all()  # missing cells carry no attention
    near = a0[40:81, 130:171].mean()
    assert near > 2 * a0[20:].mean()
    r, c = np.unravel_index(a0.argmax(), a0.shape)
    assert np.hypot(r - 60, c - 150) < 48  # within ~1.5 cells of the 7x7 layer4 grid


def plane(n: int = 30) -> np.ndarray:
    """A jittered planar grid (no distance ties)."""
    yy, xx = np.mgrid[0:n, 0:n].astype(np.float32)
    jitter = np.random.default_rng(7).uniform(-0.1, 0.1, size=(2, n * n)).astype(np.float32)
    return np.stack([xx.ravel() + jitter[0], yy.ravel() + jitter[1],
                     np.zeros(n * n, np.float32)], 1)


def test_adding_attaches_exactly_the_foreign_points() -> None:
    cloud = plane()
    tree = cKDTree(cloud)
    anchor, k = 15 * 30 + 15, 40
    foreign = np.array([[0, 0, 0], [0.5, 0, 0], [0, 0.5, 0], [0.5, 0.5, 0]], np.float32) + 100
    patch, is_foreign = add_points(cloud, tree, anchor, foreign, k, np.random.default_rng(0))
    assert patch.shape == (k, 3) and is_foreign.sum() == len(foreign)
    p = cloud[anchor]
    # the foreign points are the 2x2 square, rigidly moved: centroid on the normal line of p
    moved = patch[is_foreign]
    c = moved.mean(0)
    assert np.allclose(c[:2], p[:2], atol=1e-4) and abs(c[2]) <= 5.0
    d = np.linalg.norm(moved[:, None] - moved[None], axis=-1)
    d0 = np.linalg.norm(foreign[:, None] - foreign[None], axis=-1)
    assert np.allclose(np.sort(d.ravel()), np.sort(d0.ravel()), atol=1e-5)
    # the original points kept are exactly the nearest ones of p, all others are dropped
    kept = patch[~is_foreign]
    _, nn = tree.query(p, k=k - len(foreign))
    assert {tuple(x) for x in kept} == {tuple(x) for x in cloud[nn]}


def test_removing_cuts_exactly_the_points_nearest_to_the_hole_centre() -> None:
    cloud = plane()
    tree = cKDTree(cloud)
    anchor, k = 15 * 30 + 15, 40
    patch, removed = remove_points(cloud, tree, anchor, k, np.random.default_rng(3))
    assert patch.shape == (k, 3)
    n_rm = len(removed)
    assert round(0.2 * k) <= n_rm <= round(0.5 * k)
    _, nn = tree.query(cloud[anchor], k=k + n_rm)
    cand = {tuple(x) for x in cloud[nn]}
    assert {tuple(x) for x in patch} | {tuple(x) for x in removed} == cand
    assert not ({tuple(x) for x in patch} & {tuple(x) for x in removed})
    # a hole: every removed point is closer to the removed centroid than any kept point
    centre = removed.mean(0)
    assert np.linalg.norm(removed - centre, axis=1).max() <= (
        np.linalg.norm(patch - centre, axis=1).min() + 1.5)


def test_add_source_keeps_top_attention_neighbourhoods() -> None:
    cloud = plane(20)
    att = np.zeros(len(cloud), np.float32)
    att[10 * 20 + 10] = 1.0
    src = AddSource(cloud, att, tau=0.02, top_fraction=1 / len(cloud))
    assert src.n_add == 8
    got = src.draw(np.random.default_rng(0))
    _, nn = cKDTree(cloud).query(cloud[210], k=8)
    assert {tuple(x) for x in got} == {tuple(x) for x in cloud[nn]}


def test_contrastive_loss_matches_formula() -> None:
    torch.manual_seed(0)
    zn, zp, t = torch.randn(4, 5), torch.randn(3, 5), 0.5
    a, b = F.normalize(zn, dim=1), F.normalize(zp, dim=1)
    total = 0.0
    for i in range(4):
        pos = [j for j in range(4) if j != i]
        den = sum(torch.exp(a[i] @ a[j] / t) for j in pos) + sum(
            torch.exp(a[i] @ b[j] / t) for j in range(3))
        total += sum(-torch.log(torch.exp(a[i] @ a[j] / t) / den) for j in pos) / len(pos)
    assert torch.allclose(contrastive_loss(zn, zp, t), total / 4, atol=1e-5)


def test_disentangle_and_bce_match_formulas() -> None:
    e = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    f = torch.tensor([[0.0, 2.0], [3.0, 0.0]])
    assert torch.allclose(disentangle_loss(e, f), torch.tensor((0.0 + 0.5) / 2))
    ln, lp = torch.tensor([2.0]), torch.tensor([-1.0, 0.5])
    want = -(np.log(1 / (1 + np.exp(-2.0))) + np.log(1 - 1 / (1 + np.exp(1.0)))
             + np.log(1 - 1 / (1 + np.exp(-0.5)))) / 3
    assert abs(float(classifier_loss(ln, lp)) - want) < 1e-6


class _Lin(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.tensor([[0.5, -1.0, 2.0]]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B,N,3) -> (B,)
        return (x.mean(1) * self.w).sum(-1)


def test_perturbation_moves_along_the_loss_gradient() -> None:
    clf = _Lin()
    x = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]], [[0.0, 1.0, 0.0], [0.0, 2.0, 0.0]]])
    logits = clf(x)  # [1.25, -1.5] -> predicted labels [1, 0]
    # d BCE/d logit = sigma(l) - y; d logit / d x_n = w / N
    g = (torch.sigmoid(logits) - torch.tensor([1.0, 0.0]))[:, None, None] * clf.w / 2
    out = perturb_patches(clf, x, 0.1, "raw")
    assert torch.allclose(out - x, 0.1 * g.detach(), atol=1e-6)
    assert torch.allclose(perturb_patches(clf, x, 0.1, "sign") - x, 0.1 * g.sign().detach())
    # the step lowers the classifier's confidence in its own prediction
    after = clf(out).detach()
    assert after[0] < logits[0].detach() and after[1] > logits[1].detach()


@pytest.fixture(scope="module")
def synth():
    if "synthetic" not in DATASETS:
        pytest.skip("the synthetic dataset is not available")
    return DATASETS.create("synthetic", format="mvtec3d", size="small", seed=0)


#: SMOKE, trained a few more steps at a constant rate so the losses visibly fall
TRAINED = {**SMOKE, "epochs": 6, "anchors_per_cloud": 8, "lr": 3e-3, "lr_min": 3e-3}


@pytest.fixture(scope="module")
def fitted(synth) -> ZAL3D:
    det = ZAL3D(**TRAINED)
    with pytest.raises(ContractError, match="before fit"):
        det.predict(synth.test("cookie")[0])
    det.fit(iter(synth.train("bar")))  # a one-shot iterator
    return det


def test_losses_decrease_over_a_few_steps(synth, fitted) -> None:
    hist = fitted.model_for(synth.test("cookie")[0]).history
    assert len(hist) == TRAINED["epochs"]
    for key in ("l_con", "l_bce", "loss"):
        first = np.mean([h[key] for h in hist[:2]])
        last = np.mean([h[key] for h in hist[-2:]])
        assert last < first, (key, [h[key] for h in hist])


def test_strict_mode_reads_only_train_data_of_other_classes(synth, fitted) -> None:
    fitted.predict(synth.test("cookie")[0])
    cats = {c for c, _, _ in fitted._sources}
    assert cats and not cats & {"bar", "cookie"}
    assert fitted.model_for(synth.test("cookie")[0]).excluded == {"bar", "cookie"}
    assert {c for c, _ in fitted.irrelevant_plan(frozenset({"bar", "cookie"}))} == {"dome",
                                                                                    "ring"}
    # the cheaper variant excludes only the train class (one model per train class)
    cheap = ZAL3D(**{**SMOKE, "irrelevant": "all_but_train"})
    cheap._train_category = "bar"
    cheap._root_hint = fitted._root_hint
    assert cheap._excluded("cookie") == {"bar"}
    assert {c for c, _ in cheap.irrelevant_plan(cheap._excluded("cookie"))} == {
        "cookie", "dome", "ring"}
    # a plan that leaves nothing is refused
    cheap.irrelevant_categories = ["bar"]
    with pytest.raises(ConfigError, match="no task-irrelevant"):
        cheap.irrelevant_plan(cheap._excluded("cookie"))


def test_predict_is_deterministic_and_order_free(synth, fitted) -> None:
    tests = [synth.test("cookie")[i] for i in (0, 5)]
    a = [fitted.predict(s) for s in tests]
    b = list(fitted.predict_many(reversed(tests)))[::-1]
    for p, q in zip(a, b):
        assert p.score == q.score and np.array_equal(p.pixel_scores, q.pixel_scores)
    assert a[0].pixel_scores.shape == (56, 56) and np.isfinite(a[0].pixel_scores).all()
    assert a[0].score > 0 and a[0].score != a[1].score
    # the same seed trains the same model (features reused from the fitted detector)
    other = ZAL3D(**{**TRAINED, "epochs": 1, "rgb_branch": False})  # no backbone needed
    other._train, other._train_category = fitted._train, fitted._train_category
    other._root_hint, other.patch_scale = fitted._root_hint, fitted.patch_scale
    excluded = frozenset({"bar", "cookie"})
    m1, m2 = other._train_model(excluded), other._train_model(excluded)
    s1, s2 = m1.encoder.state_dict(), m2.encoder.state_dict()
    assert all(torch.equal(v, s2[k]) for k, v in s1.items())
    assert np.array_equal(m1.bank.features, m2.bank.features)


def test_weights_and_arguments() -> None:
    with pytest.raises(WeightsError):
        METHODS.create("3dzal")
    assert inspect.signature(ZAL3D).parameters["pretrained"].default is True
    with pytest.raises(ConfigError, match="adding"):
        ZAL3D(pretrained=False, adding=False, removing=False)
    with pytest.raises(ConfigError, match="irrelevant"):
        ZAL3D(pretrained=False, irrelevant="test_data")
    for name in ("3dzal_no_rd_cw_perturb", "3dzal_no_cw", "3dzal_no_perturb",
                 "3dzal_no_removing", "3dzal_no_adding", "3dzal_no_rd"):
        assert METHODS.get(name).provenance.startswith("re-implemented from the paper")
    det = METHODS.create("3dzal_no_rd_cw_perturb", pretrained=False)
    assert det.w_rd == 0 and not det.use_classifier and not det.perturbation


def _run_pairs(tmp_path, n_classes: int, irrelevant: str, rgb: bool) -> None:
    """Every ordered pair of synthetic classes through the runner (the fit view is the
    protocol's guarded FitData); metrics for every pair."""
    if "synthetic" not in DATASETS:
        pytest.skip("the synthetic dataset is not available")
    from benchmark.report.tables import render_run
    from benchmark.run.runner import run
    from benchmark.run.spec import spec_from_dict

    spec = spec_from_dict({
        "name": "zal_e2e",
        "methods": [{"name": "3dzal", "args": {**SMOKE, "irrelevant": irrelevant,
                                                     "rgb_branch": rgb}}],
        "dataset": "synthetic", "dataset_options": {"format": "mvtec3d", "categories": n_classes},
        "protocol": "zero_shot_pairs", "categories": "all", "seeds": [0],
        "evaluation": {"grid": "224", "aupro_mode": "mvtec3d_sampled"},
    }, source="test")
    s = run(spec, out=tmp_path / "run")
    assert not s.failures, s.report()
    assert len(s.jobs) == n_classes
    with open(tmp_path / "run" / "metrics.csv") as fh:
        rows = list(csv.DictReader(fh))
    cats = sorted({r["test_category"] for r in rows})
    assert len(cats) == n_classes
    pairs = {(r["train_category"], r["test_category"], r["metric"]) for r in rows}
    for a in cats:
        for b in cats:
            if a != b:
                for metric in ("aupro", "image_auroc", "pixel_auroc"):
                    assert (a, b, metric) in pairs, (a, b, metric)
    assert all(0.0 <= float(r["value"]) <= 1.0 for r in rows if r["metric"] == "aupro")
    assert "3dzal" in render_run(tmp_path / "run")


def test_zero_shot_pairs_end_to_end(tmp_path) -> None:
    """The fast default: 2 classes, the cheaper task-irrelevant variant, no RGB backbone (the
    RGB path runs in the tests above)."""
    _run_pairs(tmp_path, 2, "all_but_train", rgb=False)


@pytest.mark.slow
def test_zero_shot_pairs_end_to_end_strict(tmp_path) -> None:
    _run_pairs(tmp_path, 3, "strict", rgb=True)


def test_grid_specs_expand_the_supplement_grids() -> None:
    from pathlib import Path

    import yaml

    from benchmark.run.spec import spec_from_dict

    root = Path(__file__).resolve().parents[1] / "results" / "specs"
    grids = {"3dzal_tau_grid.yaml": ("tau", [0.0001, 0.001, 0.01]),
             "3dzal_w_rd_grid.yaml": ("w_rd", [0.1, 1, 10, 100, 1000, 10000])}
    for name, (key, values) in grids.items():
        spec = spec_from_dict(yaml.safe_load((root / name).read_text()), source=name)
        assert [m.name for m in spec.methods] == ["3dzal"] * len(values)
        assert [m.args[key] for m in spec.methods] == values
        assert spec.protocols == ["zero_shot_pairs"]
