"""The 3DzAL detector (see the package docstring for provenance and every guessed value)."""

from __future__ import annotations

import math
import os
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.spatial import cKDTree
from torch import nn

from benchmark.components.backbones.pointnet2 import PointNet2SSG
from benchmark.components.blur import btf_blur
from benchmark.components.geometry.organized import resize_grid, resize_maps, valid_cells
from benchmark.components.memory_bank import (
    FeatureBank,
    btf_reweighted_score,
    coreset_size,
    greedy_coreset_btf,
)
from benchmark.detector import Detector
from benchmark.errors import ConfigError, ContractError
from benchmark.progress import Bar
from benchmark.sample import Prediction, Sample
from benchmark.timing import StageTimer
from methods.btf import BTF
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

IRRELEVANT_MODES = ("strict", "all_but_train")


@dataclass
class _Prepared:
    """One organized sample at the method's resolution."""

    category: str
    points: np.ndarray  # (M,3) valid points of the resized grid, row-major order
    tree: cKDTree
    point_cell: np.ndarray  # (M,) patch-grid cell of each point
    cell_anchor: np.ndarray  # (G*G,) index into points, -1 for empty cells
    base: np.ndarray  # (G*G, 1536+33) BTF RGB + FPFH patch features


@dataclass
class _Model:
    encoder: nn.Module
    projector: nn.Module
    rd_head: nn.Module
    classifier: nn.Module | None
    bank: FeatureBank
    distance_scale: float
    e_scale: float
    history: list[dict[str, float]]
    excluded: frozenset[str]
    sources: int


def _check_choice(name: str, value: Any, allowed: Sequence[Any]) -> None:
    if value not in allowed:
        raise ConfigError(f"3dzal: {name} must be one of {list(allowed)}, got {value!r}")


class ZAL3D(Detector):
    """3DzAL on organized RGB + xyz samples (MVTec 3D-AD style); see the package docstring."""

    learning = "one_class"
    modalities = frozenset({"xyz_grid", "rgb"})

    def __init__(
        self,
        # BTF-inherited branches, bank and map
        image_size: int = 224,
        patch_grid: int = 28,
        coreset_fraction: float = 0.1,
        coreset_eps: float = 0.9,
        blur_radius: int = 4,
        voxel_size: float = 0.05,
        pretrained: bool = True,
        weights: str | os.PathLike | None = None,
        backbone_tag: str = "racm_in1k",
        float16: bool = False,
        nn_backend: str = "auto",
        rgb_branch: bool = True,
        # learned 3D patch branch E_theta and normalcy classifier C_w
        patch_points: int = 64,
        feature_dim: int = 128,
        projection_dim: int = 128,
        encoder_centers: Sequence[int] = (32, 8),
        encoder_radii: Sequence[float] = (0.2, 0.4),
        encoder_neighbors: Sequence[int] = (16, 16),
        encoder_mlps: Sequence[Sequence[int]] = ((64, 64, 128), (128, 128, 256), (256, 512, 1024)),
        encoder_fc: int = 256,
        feature_scaling: str = "raw",
        # pseudo anomalies
        irrelevant: str = "strict",
        irrelevant_root: str | os.PathLike | None = None,
        irrelevant_format: str = "mvtec3d",
        irrelevant_categories: Sequence[str] | None = None,
        irrelevant_per_class: int | None = None,
        tau: float = 0.001,
        top_fraction: float = 0.01,
        attention_arch: str = "resnet50",
        attention_nets: int = 1,
        adding: bool = True,
        removing: bool = True,
        adding_ratio: float = 0.5,
        hole_fraction: Sequence[float] = (0.2, 0.5),
        hole_centre_radius: float = 0.5,
        # training
        epochs: int = 100,
        clouds_per_step: int = 16,
        anchors_per_cloud: int = 32,
        lr: float = 1e-3,
        lr_min: float = 1e-5,
        weight_decay: float = 1e-4,
        temperature: float = 0.07,
        w_rd: float = 1.0,
        w_bce: float = 1.0,
        classifier: bool = True,
        # inference
        perturbation: bool = True,
        epsilon: float = 0.01,
        perturbation_mode: str = "raw",
        w_d: float = 1.0,
        w_c: float = 1.0,
        distance_norm: str = "bank_nn",
        image_score: str = "max",
        n_reweight: int = 3,
        batch_patches: int = 1024,
        max_cached_models: int = 1,
        seed: int = 0,
    ) -> None:
        _check_choice("irrelevant", irrelevant, IRRELEVANT_MODES)
        _check_choice("feature_scaling", feature_scaling, ("raw", "fpfh_median"))
        _check_choice("perturbation_mode", perturbation_mode, ("raw", "sign"))
        _check_choice("distance_norm", distance_norm, ("bank_nn", "none"))
        _check_choice("image_score", image_score, ("max", "btf_reweighted"))
        if not (adding or removing):
            raise ConfigError("3dzal: at least one of adding / removing pseudo anomalies is needed")
        if not 0 <= adding_ratio <= 1:
            raise ConfigError(f"3dzal: adding_ratio must lie in [0, 1], got {adding_ratio}")
        if not 0 < tau <= 1:
            raise ConfigError(f"3dzal: tau must lie in (0, 1], got {tau}")
        for name, v in (("epochs", epochs), ("clouds_per_step", clouds_per_step),
                        ("anchors_per_cloud", anchors_per_cloud), ("patch_points", patch_points),
                        ("attention_nets", attention_nets), ("max_cached_models",
                                                             max_cached_models)):
            if int(v) < 1:
                raise ConfigError(f"3dzal: {name} must be >= 1, got {v}")
        with torch.random.fork_rng(devices=[]):  # a random-init RGB backbone follows `seed`
            torch.manual_seed(int(seed))
            self.btf = self._make_btf(image_size, patch_grid, coreset_fraction, coreset_eps,
                                      n_reweight, blur_radius, voxel_size, pretrained, weights,
                                      backbone_tag, float16, nn_backend, seed, rgb_branch)
        self.rgb_branch = bool(rgb_branch)
        self.modalities = frozenset({"xyz_grid", "rgb"} if rgb_branch else {"xyz_grid"})
        self.timer = StageTimer()
        self.btf.timer = self.timer
        self.image_size, self.patch_grid = int(image_size), int(patch_grid)
        self.coreset_fraction, self.coreset_eps = coreset_fraction, coreset_eps
        self.blur_radius, self.float16, self.nn_backend = blur_radius, float16, nn_backend
        self.patch_points, self.feature_dim, self.projection_dim = (
            int(patch_points), int(feature_dim), int(projection_dim))
        self.encoder_args = dict(centers=tuple(encoder_centers), radii=tuple(encoder_radii),
                                 neighbors=tuple(encoder_neighbors),
                                 mlps=tuple(tuple(m) for m in encoder_mlps), fc_hidden=encoder_fc)
        self.feature_scaling = feature_scaling
        self.irrelevant, self.irrelevant_root = irrelevant, irrelevant_root
        self.irrelevant_format = irrelevant_format
        self.irrelevant_categories = (None if irrelevant_categories is None
                                      else list(irrelevant_categories))
        self.irrelevant_per_class = irrelevant_per_class
        self.tau, self.top_fraction = float(tau), float(top_fraction)
        self.attention_arch, self.attention_nets = attention_arch, int(attention_nets)
        self.adding, self.removing, self.adding_ratio = adding, removing, float(adding_ratio)
        self.hole_fraction = (float(hole_fraction[0]), float(hole_fraction[1]))
        self.hole_centre_radius = float(hole_centre_radius)
        self.epochs, self.clouds_per_step = int(epochs), int(clouds_per_step)
        self.anchors_per_cloud = int(anchors_per_cloud)
        self.lr, self.lr_min, self.weight_decay = lr, lr_min, weight_decay
        self.temperature, self.w_rd, self.w_bce = temperature, float(w_rd), float(w_bce)
        self.use_classifier = bool(classifier)
        self.perturbation = bool(perturbation) and self.use_classifier
        self.epsilon, self.perturbation_mode = float(epsilon), perturbation_mode
        self.w_d, self.w_c = float(w_d), float(w_c)
        self.distance_norm, self.image_score = distance_norm, image_score
        self.n_reweight, self.batch_patches = n_reweight, int(batch_patches)
        self.max_cached_models = int(max_cached_models)
        self.seed = int(seed)
        self.device = "cpu"
        self._train: list[_Prepared] | None = None
        self._train_category: str | None = None
        self._root_hint: Path | None = None
        self.patch_scale: float = 1.0
        self._models: OrderedDict[frozenset[str], _Model] = OrderedDict()
        self._sources: dict[tuple[str, int, int], AddSource] = {}
        self._irrelevant_ds = None
        self._nets: dict[int, nn.Module] = {}

    @staticmethod
    def _make_btf(image_size, patch_grid, coreset_fraction, coreset_eps, n_reweight, blur_radius,
                  voxel_size, pretrained, weights, backbone_tag, float16, nn_backend,
                  seed, rgb_branch) -> BTF:
        return BTF(features="rgb_fpfh" if rgb_branch else "fpfh", image_size=image_size,
                   patch_grid=patch_grid,
                   coreset_fraction=coreset_fraction, coreset_eps=coreset_eps,
                   n_reweight=n_reweight, blur_radius=blur_radius, voxel_size=voxel_size,
                   pretrained=pretrained, weights=weights, backbone_tag=backbone_tag,
                   float16=float16, nn_backend=nn_backend, seed=seed)

    # --- per-sample preparation -------------------------------------------------------------
    def prepare(self, sample: Sample) -> _Prepared:
        """BTF's RGB + FPFH patch features plus the resized cloud and the cell anchors."""
        base = self.btf.patches(sample)  # also checks that the sample is organized (and RGB)
        grid = resize_grid(sample.xyz_grid, self.image_size, mode="nearest")
        valid = valid_cells(grid, all_nonzero=True)
        flat = np.flatnonzero(valid.reshape(-1))
        points = grid.reshape(-1, 3)[flat].astype(np.float32)
        s, g = self.image_size, self.patch_grid
        rows, cols = np.divmod(flat, s)
        cell = (rows * g // s) * g + (cols * g // s)
        centre_r = ((rows * g // s) + 0.5) * s / g - 0.5
        centre_c = ((cols * g // s) + 0.5) * s / g - 0.5
        dist = (rows - centre_r) ** 2 + (cols - centre_c) ** 2
        order = np.lexsort((dist, cell))
        cells, first = np.unique(cell[order], return_index=True)
        anchor = np.full(g * g, -1, dtype=np.int64)
        anchor[cells] = order[first]
        tree = cKDTree(points) if len(points) else None
        return _Prepared(sample.category, points, tree, cell, anchor, base)

    def _patches(self, prep: _Prepared, anchors: np.ndarray) -> np.ndarray:
        """(A,k,3) float32: the k nearest points of each anchor, centred on it, / patch scale."""
        k = self.patch_points
        _, idx = prep.tree.query(prep.points[anchors], k=min(k, len(prep.points)))
        idx = np.asarray(idx).reshape(len(anchors), -1)
        if idx.shape[1] < k:  # fewer points than k: repeat the nearest
            idx = np.concatenate([idx, np.repeat(idx[:, :1], k - idx.shape[1], 1)], 1)
        pts = prep.points[idx] - prep.points[anchors][:, None]
        return (pts / self.patch_scale).astype(np.float32)

    def _normalise(self, patch: np.ndarray, anchor_point: np.ndarray) -> np.ndarray:
        return ((patch - anchor_point) / self.patch_scale).astype(np.float32)

    # --- task-irrelevant data ---------------------------------------------------------------
    def _dataset_root(self) -> Path:
        if self.irrelevant_root is not None:
            return Path(self.irrelevant_root)
        if self._root_hint is None:
            raise ConfigError(
                "3dzal: cannot locate the task-irrelevant data: the training samples carry no "
                "file paths; pass irrelevant_root (a dataset root) explicitly")
        return self._root_hint

    def _irrelevant_dataset(self):
        if self._irrelevant_ds is None:
            from benchmark.registry import DATASETS

            self._irrelevant_ds = DATASETS.create(self.irrelevant_format,
                                                  root=self._dataset_root())
        return self._irrelevant_ds

    def _excluded(self, test_category: str | None) -> frozenset[str]:
        out = {self._train_category}
        if self.irrelevant == "strict" and test_category is not None:
            out.add(test_category)
        return frozenset(out)

    def irrelevant_plan(self, excluded: frozenset[str]) -> list[tuple[str, int]]:
        """(category, train index) of every task-irrelevant cloud a model excluding `excluded`
        may draw "adding" material from."""
        ds = self._irrelevant_dataset()
        cats = self.irrelevant_categories or list(ds.categories)
        allowed = [c for c in cats if c not in excluded]
        if not allowed:
            raise ConfigError(
                f"3dzal: no task-irrelevant category left after excluding {sorted(excluded)} "
                f"from {cats} of {self._dataset_root()} (irrelevant={self.irrelevant!r}); pass "
                "irrelevant_root=<dataset root> when the training files come from a per-class "
                "cache (e.g. mvtec3d preprocess=btf)")
        plan = []
        for c in allowed:
            n = len(ds.train(c))
            if self.irrelevant_per_class is not None:
                n = min(n, int(self.irrelevant_per_class))
            plan += [(c, i) for i in range(n)]
        if not plan:
            raise ConfigError(f"3dzal: the task-irrelevant categories {allowed} have no samples")
        return plan

    def _net(self, j: int) -> nn.Module:
        if j not in self._nets:
            self._nets[j] = random_resnet50(j, self.attention_arch).to(self.device)
        return self._nets[j]

    def _source(self, category: str, index: int, net: int, excluded: frozenset[str]) -> AddSource:
        key = (category, index, net)
        if key not in self._sources:
            sample = self._irrelevant_dataset().train(category)[index]
            # the guard of this side channel: normal train data of an allowed class only
            if (sample.category != category or category in excluded or sample.split != "train"
                    or sample.label != 0 or sample.xyz_grid is None):
                raise ContractError(
                    f"3dzal: task-irrelevant sample {sample.id!r} ({sample.category}/"
                    f"{sample.split}, label {sample.label}) is not normal train data of an "
                    f"allowed class (excluded: {sorted(excluded)})")
            grid = resize_grid(sample.xyz_grid, self.image_size, mode="nearest")
            att = inductive_bias_map(self._net(net), grid)
            valid = valid_cells(grid, all_nonzero=True)
            self._sources[key] = AddSource(grid[valid], att[valid], self.tau, self.top_fraction)
        return self._sources[key]

    # --- networks ---------------------------------------------------------------------------
    def _build(self) -> tuple[nn.Module, nn.Module, nn.Module, nn.Module | None]:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            enc = PointNet2SSG(self.feature_dim, **self.encoder_args)
            proj = nn.Sequential(nn.Linear(self.feature_dim, self.feature_dim), nn.ReLU(),
                                 nn.Linear(self.feature_dim, self.projection_dim))
            rd = nn.Linear(self.feature_dim, 33)
            clf = PointNet2SSG(1, **self.encoder_args) if self.use_classifier else None
        mods = [m.to(self.device) for m in (enc, proj, rd)]
        return mods[0], mods[1], mods[2], (clf.to(self.device) if clf is not None else None)

    def _batch(self, step: int, clouds: list[_Prepared], excluded: frozenset[str],
               plan: list[tuple[str, int]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Normal patches, pseudo-anomaly patches and the FPFH cell features of the normal ones
        for one training step; every random draw comes from a generator seeded by the loop index
        (supplement D), combined with `seed`."""
        rng = np.random.default_rng((self.seed, step))
        k = self.patch_points
        normals, pseudos, fpfh = [], [], []
        for prep in clouds:
            if len(prep.points) < 4:
                continue
            anchors = rng.choice(len(prep.points), self.anchors_per_cloud,
                                 replace=len(prep.points) < self.anchors_per_cloud)
            normals.append(self._patches(prep, anchors))
            fpfh.append(prep.base[prep.point_cell[anchors], -33:])
            for a in anchors:
                use_add = self.adding and (not self.removing or rng.random() < self.adding_ratio)
                if use_add:
                    c, i = plan[int(rng.integers(len(plan)))]
                    foreign = self._source(c, i, int(rng.integers(self.attention_nets)),
                                           excluded).draw(rng)
                    patch, _ = add_points(prep.points, prep.tree, int(a), foreign, k, rng)
                else:
                    patch, _ = remove_points(prep.points, prep.tree, int(a), k, rng,
                                             self.hole_fraction, self.hole_centre_radius)
                if len(patch) < k:
                    patch = np.concatenate([patch, np.repeat(patch[:1], k - len(patch), 0)])
                pseudos.append(self._normalise(patch, prep.points[a]))
        if not normals:
            raise ContractError("3dzal: the training clouds hold too few valid points")
        return np.concatenate(normals), np.stack(pseudos), np.concatenate(fpfh)

    def _train_model(self, excluded: frozenset[str]) -> _Model:
        assert self._train is not None
        plan = self.irrelevant_plan(excluded)
        enc, proj, rd, clf = self._build()
        params = [p for m in (enc, proj, rd, clf) if m is not None for p in m.parameters()]
        opt = torch.optim.Adam(params, lr=self.lr, weight_decay=self.weight_decay)
        n = len(self._train)
        steps_per_epoch = math.ceil(n / self.clouds_per_step)
        total = self.epochs * steps_per_epoch
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total, eta_min=self.lr_min)
        order_rng = np.random.default_rng(self.seed)
        history: list[dict[str, float]] = []
        step = 0
        dev = self.device
        desc = f"3dzal train {self._train_category} (irrelevant: {len(plan)} clouds)"
        with Bar(total=total, desc=desc, unit="step") as bar:
            for epoch in range(self.epochs):
                sums = {"l_con": 0.0, "l_rd": 0.0, "l_bce": 0.0, "loss": 0.0}
                for m in (enc, proj, rd, clf):
                    if m is not None:
                        m.train()
                perm = order_rng.permutation(n)
                for b in range(steps_per_epoch):
                    clouds = [self._train[i] for i in
                              perm[b * self.clouds_per_step:(b + 1) * self.clouds_per_step]]
                    with self.timer("pseudo_anomalies"):
                        pn, pp, fp = self._batch(step, clouds, excluded, plan)
                    with self.timer("train_step"):
                        xn = torch.from_numpy(pn).to(dev)
                        xp = torch.from_numpy(pp).to(dev)
                        feats = enc(torch.cat([xn, xp]))
                        en, ep = feats[: len(xn)], feats[len(xn):]
                        l_con = contrastive_loss(proj(en), proj(ep), self.temperature)
                        l_rd = disentangle_loss(rd(en), torch.from_numpy(fp).to(dev))
                        loss = l_con + self.w_rd * l_rd
                        l_bce = torch.zeros((), device=dev)
                        if clf is not None:
                            logits = clf(torch.cat([xn, xp])).reshape(-1)
                            l_bce = classifier_loss(logits[: len(xn)], logits[len(xn):])
                            loss = loss + self.w_bce * l_bce
                        opt.zero_grad(set_to_none=True)
                        loss.backward()
                        opt.step()
                        sched.step()
                    for key, v in (("l_con", l_con), ("l_rd", l_rd), ("l_bce", l_bce),
                                   ("loss", loss)):
                        sums[key] += float(v.detach()) / steps_per_epoch
                    step += 1
                    bar.update()
                    bar.set_postfix(f"ep {epoch + 1} loss {float(loss.detach()):.4f}")
                history.append({"epoch": epoch, **sums})
        for m in (enc, proj, rd, clf):
            if m is not None:
                m.eval()
        with self.timer("memory_bank"):
            e_scale = 1.0
            train_e = [self._embed(enc, p) for p in self._train]
            if self.feature_scaling == "fpfh_median":
                fp = np.concatenate([p.base[:, -33:] for p in self._train])
                e_scale = float(np.median(np.linalg.norm(fp, axis=1)))
                train_e = [self._rescale(e, e_scale) for e in train_e]
            feats = np.concatenate([np.concatenate([p.base, e], 1)
                                    for p, e in zip(self._train, train_e)])
            size = coreset_size(len(feats), fraction=self.coreset_fraction)
            idx = greedy_coreset_btf(feats, size, eps=self.coreset_eps, seed=self.seed,
                                     float16=self.float16)
            bank = FeatureBank(feats[idx], backend=self.nn_backend)
            scale = 1.0
            if self.distance_norm == "bank_nn" and len(bank) >= 2:
                d, _ = bank.search(bank.features, 2)
                scale = float(d[:, 1].mean()) or 1.0
        return _Model(enc, proj, rd, clf, bank, scale, e_scale, history, excluded, len(plan))

    @staticmethod
    def _rescale(e: np.ndarray, scale: float) -> np.ndarray:
        norm = np.linalg.norm(e, axis=1, keepdims=True)
        return np.where(norm > 0, e / np.maximum(norm, 1e-12) * scale, 0.0).astype(np.float32)

    @torch.no_grad()
    def _embed(self, enc: nn.Module, prep: _Prepared) -> np.ndarray:
        """(G*G, d) E_theta features of the cell patches; zeros for empty cells."""
        out = np.zeros((len(prep.cell_anchor), self.feature_dim), np.float32)
        cells = np.flatnonzero(prep.cell_anchor >= 0)
        for s in range(0, len(cells), self.batch_patches):
            c = cells[s:s + self.batch_patches]
            x = torch.from_numpy(self._patches(prep, prep.cell_anchor[c])).to(self.device)
            out[c] = enc(x).cpu().numpy()
        return out

    def _classifier_scores(self, clf: nn.Module, prep: _Prepared) -> np.ndarray:
        """(G*G,) s_c = 1 - sigma(C_w(P~)), P~ the one-step perturbed patch; 0 on empty cells."""
        out = np.zeros(len(prep.cell_anchor), np.float32)
        cells = np.flatnonzero(prep.cell_anchor >= 0)
        for s in range(0, len(cells), self.batch_patches):
            c = cells[s:s + self.batch_patches]
            x = torch.from_numpy(self._patches(prep, prep.cell_anchor[c])).to(self.device)
            if self.perturbation:
                x = perturb_patches(clf, x, self.epsilon, self.perturbation_mode)
            with torch.no_grad():
                out[c] = (1.0 - torch.sigmoid(clf(x).reshape(-1))).cpu().numpy()
        return out

    # --- Detector interface -----------------------------------------------------------------
    def fit(self, train: Iterable[Sample]) -> None:
        prepared: list[_Prepared] = []
        category = None
        for sample in train:
            if category is None:
                category = sample.category
                self._root_hint = _root_from_source(sample)
            elif sample.category != category:
                raise ContractError(
                    f"3dzal.fit: one training class expected, got {category!r} and "
                    f"{sample.category!r}")
            prepared.append(self.prepare(sample))
        if not prepared:
            raise ContractError("3dzal.fit: no training samples")
        self._train, self._train_category = prepared, category
        self._models.clear()
        # fixed patch scale from the training class: mean distance to the k-th neighbour
        rng = np.random.default_rng(self.seed)
        radii = []
        for prep in prepared:
            if len(prep.points) == 0:
                continue
            a = rng.choice(len(prep.points), min(64, len(prep.points)), replace=False)
            d, _ = prep.tree.query(prep.points[a], k=min(self.patch_points, len(prep.points)))
            radii.append(np.asarray(d).reshape(len(a), -1)[:, -1])
        scale = float(np.mean(np.concatenate(radii))) if radii else 0.0
        self.patch_scale = scale if scale > 0 else 1.0
        if self.irrelevant == "all_but_train":
            self._model(None)

    def _model(self, test_category: str | None) -> _Model:
        key = self._excluded(test_category)
        if key in self._models:
            self._models.move_to_end(key)
            return self._models[key]
        with self.timer("training"):
            model = self._train_model(key)
        self._models[key] = model
        while len(self._models) > self.max_cached_models:
            self._models.popitem(last=False)
        return model

    def model_for(self, sample: Sample) -> _Model:
        """The trained E_theta / C_w / bank used for `sample` (trains it on first use)."""
        self.check_fitted(self._train is not None)
        return self._model(sample.category)

    def predict(self, sample: Sample) -> Prediction:
        model = self.model_for(sample)
        prep = self.prepare(sample)
        with self.timer("features_learned"):
            e = self._embed(model.encoder, prep)
            if self.feature_scaling == "fpfh_median":
                e = self._rescale(e, model.e_scale)
        phi = np.concatenate([prep.base, e], 1)
        with self.timer("scoring"):
            d, i = model.bank.search(phi, 1)
            s_d = d[:, 0] / model.distance_scale
        s_c = np.zeros_like(s_d)
        if model.classifier is not None:
            with self.timer("classifier"):
                s_c = self._classifier_scores(model.classifier, prep)
        s = self.w_d * s_d + (self.w_c * s_c if model.classifier is not None else 0.0)
        if self.image_score == "max":
            score = float(s.max())
        else:
            score = self.w_d * btf_reweighted_score(
                phi, d[:, 0], i[:, 0], model.bank.features, n_reweight=self.n_reweight
            ) / model.distance_scale + self.w_c * float(s_c.max())
        g = self.patch_grid
        amap = resize_maps(s.reshape(g, g).astype(np.float32), self.image_size, mode="bilinear")
        amap = btf_blur(np.maximum(amap, 0.0), radius=self.blur_radius)
        return Prediction(score=score, pixel_scores=amap)

    def to(self, device: str) -> ZAL3D:
        self.device = device
        self.btf.to(device)
        for key, net in self._nets.items():
            self._nets[key] = net.to(device)
        for m in self._models.values():
            for mod in (m.encoder, m.projector, m.rd_head, m.classifier):
                if mod is not None:
                    mod.to(device)
        return self


def _root_from_source(sample: Sample) -> Path | None:
    """The dataset root above a sample's files (``<root>/<category>/...``), or None."""
    for key in ("xyz", "rgb"):
        path = sample.source.get(key) if sample.source else None
        if not path:
            continue
        for parent in Path(path).parents:
            if parent.name == sample.category:
                return parent.parent
    return None
