"""M3DM, "Multimodal Industrial Anomaly Detection via Hybrid Fusion" (Wang et al., CVPR 2023).

Two settings, both from official code:

``m3dm_pointmae`` / ``m3dm_pointbert`` (class `M3DMPoint`): the point-only M3DM baselines exactly
as M-3LAB/Real3D-AD runs them (commit 9a9cd04d39e3; ``main_m3dm.py``, ``M3DM/m3dm_runner.py``,
``M3DM/features.py`` ``Features1``, ``M3DM/multiple_features.py`` ``PointFeatures``,
``M3DM/models.py``, ``M3DM/cpu_knn.py``, ``dataset_m3dm.py``; specs/methods.md §8.2):
- each cloud mean-centred; points with a zero coordinate dropped (the loader's "non-zero" test);
- Point-MAE / Point-BERT (toolkit `backbones.pointmae` / `backbones.pointbert`) with 16384
  groups of 128 -> one 1152-d feature per group centre; the extractor is never switched to eval
  mode in the official code (BatchNorm on the cloud's own statistics, DropPath active):
  ``train_mode=True`` reproduces that, seeded;
- bank = every group feature of every train cloud (at most 401 clouds, the runner's
  ``max_sample`` 400 quirk), BTF's greedy coreset of 10 % (sparse random projection eps 0.9,
  from row 0);
- scoring: Euclidean distance of each group to its nearest bank row; object score = BTF's
  re-weighted max with M3DM's +1e-5 in the denominator; every point takes the score of its
  nearest group centre (1-NN).

``m3dm`` (class `M3DM`): the full RGB + point method on organized scans (MVTec 3D-AD,
Eyecandies), ported from nomewang/M3DM (commit 62b7f468aa00; ``main.py`` defaults,
``m3dm_runner.py``, ``feature_extractors/{features,multiple_features}.py`` ``TripleFeatures``,
``models/{models,feature_fusion,pointnet2_utils}.py``, ``fusion_pretrain.py``,
``engine_fusion_pretrain.py``, ``utils/lr_sched.py``; specs/methods.md §8):
- point features (point feature alignment): xyz grid nearest-resized to 224, non-zero points ->
  Point-MAE (1024 groups of 128) -> 1152-d centre features interpolated to every point (3 nearest
  centres, weights 1/(squared distance + 1e-8)) -> scattered into the 224x224 grid (zeros
  elsewhere) -> AvgPool 3x3 s1 -> AdaptiveAvgPool 56x56 -> 3136 patches;
- RGB features: DINO ViT-B/8 (toolkit `backbones.vit`) tokens of the 224x224 image (PIL bicubic,
  ImageNet normalisation), 28x28x768; for fusion also adaptively pooled to 56x56;
- unsupervised feature fusion (UFF): LayerNorm + MLP (ratio 4, GELU) per modality, concatenated
  (1152 + 768 = 1920-d fusion patches); trained with a patch-wise contrastive loss between
  ``rgb_head(rgb part)`` and ``xyz_head(xyz part)`` (Linear -> 256, InfoNCE over all non-zero
  patches of a batch, T = 1, loss x 2T); official training: AdamW lr 0.003 betas (0.9, 0.95),
  weight decay 0.01 (PyTorch default: the script's --weight_decay is never passed), batch 16,
  accumulation 16, 3 epochs with 1 warm-up epoch and half-cycle cosine, per iteration;
- decision-layer fusion: three banks (xyz, rgb, fusion), scalar mean/std normalisation, BTF
  greedy coresets; per bank the BTF score (re-weighted max) and map (bilinear to 224, 8-bit PIL
  blur radius 4); a second pass over the train samples collects [1.0 s_xyz, 0.1 s_rgb,
  1.0 s_fusion] and the per-pixel map triples, on which two sklearn SGDOneClassSVM (nu 0.5,
  max_iter 1000, random_state 42) are fit; test scores = their ``score_samples``.

Official quirks reproduced by default (each behind a flag):
- ``official_normalisation``: all three means come from the xyz bank and all three standard
  deviations from the rgb bank (``run_coreset``);
- ``official_coreset_sizes``: the rgb and fusion coresets keep 10 % of the already reduced xyz
  bank's size (n computed after the xyz coreset), not 10 % of their own;
- after the coresets, xyz bank rows with a zero entry are dropped and one all-zero row appended;
- ``uff_pairing="official"``: the UFF training data pairs xyz patch ``b*784 + a`` with rgb token
  ``(4a + b) mod 784`` (the feature-saving code repeats the 28x28 tokens instead of pooling them);
  "aligned" pairs each 56x56 xyz patch with its pooled rgb patch, as inference does.

Deviations and guesses (ours):
- the official UFF was trained once on the saved train features of all classes together and is
  loaded from ``checkpoint-0.pth``; ``fusion="checkpoint"`` (default) loads that file
  (`M3DM_UFF_WEIGHTS`), ``fusion="train"`` trains it on the fit data of the one class (the
  one-class protocol sees only it), with ``uff_accum_iter=1`` (guess: 16 leaves no optimiser step
  on one class's ~250 samples) and no mixed precision; ``fusion="concat"`` = no UFF
  (concatenation, the official ``FUSION_BLOCK=False`` branch);
- seeds fix the sparse random projections (official: ``random_state=None``) and the UFF data order;
  the coreset runs in float32 (official float16; ``float16=True`` restores it);
- the InfoNCE logits are computed in row chunks with checkpointing (same loss, bounded memory).
"""

from __future__ import annotations

import argparse
import math
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from benchmark.components.backbones.pointmae import Mlp, check_state_keys, read_torch_checkpoint
from benchmark.components.blur import btf_blur
from benchmark.components.geometry.organized import resize_grid, resize_maps, valid_cells
from benchmark.components.geometry.pointops import (
    centre,
    interpolate_inverse_distance,
    propagate_nearest,
)
from benchmark.components.memory_bank import (
    FeatureBank,
    btf_reweighted_score,
    coreset_size,
    greedy_coreset_btf,
)
from benchmark.detector import Detector
from benchmark.errors import ConfigError, ContractError, WeightsError
from benchmark.registry import METHODS
from benchmark.sample import Prediction, Sample
from benchmark.timing import StageTimer
from benchmark.weights import WeightSpec, resolve_weights

POINT_PROVENANCE = (
    "M3DM (nomewang/M3DM@62b7f468aa00) point-only as run by M-3LAB/Real3D-AD@9a9cd04d39e3 "
    "(main_m3dm.py, M3DM/multiple_features.py PointFeatures): 16384 groups, 10% BTF coreset, "
    "1-NN copy from group centres"
)
FULL_PROVENANCE = (
    "ported from nomewang/M3DM@62b7f468aa00 (TripleFeatures, feature_fusion.py, "
    "fusion_pretrain.py): DINO ViT-B/8 + Point-MAE, UFF, decision-layer OCSVM fusion"
)
M3DM_UFF_WEIGHTS = WeightSpec(
    name="m3dm_uff",
    filename="m3dm_uff.pth",
    description="M3DM unsupervised feature fusion block (official 'UFF Module' checkpoint-0.pth "
    "from the nomewang/M3DM README, Google Drive; rename it m3dm_uff.pth)",
    url=None,
    cache_globs=("M3DM/checkpoint-0.pth", "checkpoints/m3dm_uff.pth"),
)
BACKBONES = ("pointmae", "pointbert")


def _point_encoder(backbone: str, num_group: int, group_size: int, pretrained: bool,
                   weights: str | os.PathLike | None):  # fmt: skip
    if backbone == "pointmae":
        from benchmark.components.backbones.pointmae import PointMAEEncoder as cls
    elif backbone == "pointbert":
        from benchmark.components.backbones.pointbert import PointBERTEncoder as cls
    else:
        raise ConfigError(f"M3DM: unknown point backbone {backbone!r}; known: {list(BACKBONES)}")
    return cls(num_group=num_group, group_size=group_size, pretrained=pretrained, weights=weights)


def _nonzero_rows(points: np.ndarray) -> np.ndarray:
    """Indices of the points with every coordinate != 0 (the M3DM loaders' validity test)."""
    return np.flatnonzero(np.all(points != 0, axis=1))


def _coreset(feats: np.ndarray, n: int, eps: float, seed: int, float16: bool) -> np.ndarray:
    return feats[greedy_coreset_btf(feats, n, eps=eps, seed=seed, float16=float16)]


# ----------------------------------------------------------------------------------------------
# point-only M3DM (Real3D-AD)
# ----------------------------------------------------------------------------------------------
class M3DMPoint(Detector):
    """Point-only M3DM as Real3D-AD runs it; backbone "pointmae" | "pointbert"."""

    learning = "one_class"
    modalities = frozenset({"points"})

    def __init__(
        self,
        backbone: str = "pointmae",
        num_group: int = 16384,
        group_size: int = 128,
        coreset_fraction: float = 0.1,
        coreset_eps: float = 0.9,
        n_reweight: int = 3,
        denominator_eps: float = 1e-5,
        max_train_samples: int = 401,
        train_mode: bool = True,
        float16: bool = False,
        pretrained: bool = True,
        weights: str | os.PathLike | None = None,
        nn_backend: str = "auto",
        seed: int = 0,
    ) -> None:
        if not 0 < coreset_fraction <= 1:
            raise ConfigError(f"M3DMPoint: coreset_fraction must lie in (0, 1], got "
                              f"{coreset_fraction!r}")
        if max_train_samples < 1:
            raise ConfigError(f"M3DMPoint: max_train_samples must be >= 1, got {max_train_samples}")
        self.backbone = backbone
        with torch.random.fork_rng(devices=[]):  # random init (pretrained=False) from `seed`
            torch.manual_seed(seed)
            self.encoder = _point_encoder(backbone, num_group, group_size, pretrained, weights)
        self.coreset_fraction = coreset_fraction
        self.coreset_eps = coreset_eps
        self.n_reweight = int(n_reweight)
        self.denominator_eps = float(denominator_eps)
        self.max_train_samples = int(max_train_samples)
        self.train_mode = bool(train_mode)
        self.float16 = float16
        self.nn_backend = nn_backend
        self.seed = int(seed)
        self.bank: FeatureBank | None = None
        self.timer = StageTimer()

    @property
    def _label(self) -> str:
        return getattr(self, "name", None) or f"m3dm_{self.backbone}"

    def _features(self, sample: Sample) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(centred points, group features (G,1152), group centres (G,3))."""
        pts = centre(np.asarray(sample.points))
        keep = _nonzero_rows(pts)
        if len(keep) == 0:
            raise ContractError(f"{self._label}: sample {sample.id!r} has no non-zero point")
        with self.timer(f"features_{self.backbone}"):
            feats, centres = self.encoder.cloud_features(
                pts[keep], official_train_mode=self.train_mode, seed=self.seed, key=sample.id
            )
        return pts, feats, centres

    def fit(self, train: Iterable[Sample]) -> None:
        rows = []
        for i, sample in enumerate(train):
            if i >= self.max_train_samples:
                break
            rows.append(self._features(sample)[1])
        if not rows:
            raise ContractError(f"{self._label}.fit: no training samples")
        feats = np.concatenate(rows)
        n = coreset_size(len(feats), fraction=self.coreset_fraction)
        with self.timer("coreset"):
            bank = _coreset(feats, n, self.coreset_eps, self.seed, self.float16)
        if len(bank) < self.n_reweight:
            raise ContractError(f"{self._label}.fit: bank of {len(bank)} rows < n_reweight")
        self.bank = FeatureBank(bank, backend=self.nn_backend)

    def predict(self, sample: Sample) -> Prediction:
        self.check_fitted(self.bank is not None)
        pts, feats, centres = self._features(sample)
        with self.timer("scoring"):
            d, i = self.bank.search(feats, 1)
            score = btf_reweighted_score(feats, d[:, 0], i[:, 0], self.bank.features,
                                         self.n_reweight, self.denominator_eps)
            point_scores = propagate_nearest(centres, d[:, 0], pts)
        return Prediction(score=score, point_scores=point_scores.astype(np.float32))

    def to(self, device: str) -> M3DMPoint:
        self.device = device
        self.encoder.to(device)
        return self


# ----------------------------------------------------------------------------------------------
# unsupervised feature fusion (UFF)
# ----------------------------------------------------------------------------------------------
class FeatureFusionBlock(nn.Module):
    """M3DM's UFF block (official module and key names: xyz_norm, xyz_mlp, rgb_norm, rgb_mlp,
    rgb_head, xyz_head)."""

    def __init__(self, xyz_dim: int = 1152, rgb_dim: int = 768, mlp_ratio: float = 4.0,
                 head_dim: int = 256, temperature: float = 1.0) -> None:  # fmt: skip
        super().__init__()
        self.xyz_dim, self.rgb_dim = xyz_dim, rgb_dim
        self.xyz_norm = nn.LayerNorm(xyz_dim)
        self.xyz_mlp = Mlp(xyz_dim, int(xyz_dim * mlp_ratio))
        self.rgb_norm = nn.LayerNorm(rgb_dim)
        self.rgb_mlp = Mlp(rgb_dim, int(rgb_dim * mlp_ratio))
        self.rgb_head = nn.Linear(rgb_dim, head_dim)
        self.xyz_head = nn.Linear(xyz_dim, head_dim)
        self.temperature = temperature

    def feature_fusion(self, xyz: torch.Tensor, rgb: torch.Tensor) -> torch.Tensor:
        """(..., xyz_dim), (..., rgb_dim) -> (..., xyz_dim + rgb_dim)."""
        return torch.cat([self.xyz_mlp(self.xyz_norm(xyz)), self.rgb_mlp(self.rgb_norm(rgb))], -1)

    def contrastive_loss(self, xyz: torch.Tensor, rgb: torch.Tensor, chunk: int = 4096
                         ) -> torch.Tensor:  # fmt: skip
        """InfoNCE between the rgb-head and xyz-head projections of the fused patches whose xyz
        input is non-zero in every channel; (M, xyz_dim), (M, rgb_dim) -> scalar."""
        fused = self.feature_fusion(xyz, rgb)
        keep = torch.all(xyz != 0, dim=1)
        q = F.normalize(self.rgb_head(fused[keep, self.xyz_dim :]), dim=1)
        k = F.normalize(self.xyz_head(fused[keep, : self.xyz_dim]), dim=1)
        n = len(q)
        if n == 0:
            return fused.sum() * 0.0
        t = self.temperature

        def rows(qc: torch.Tensor, kk: torch.Tensor, start: torch.Tensor) -> torch.Tensor:
            logits = qc @ kk.T / t
            target = torch.arange(len(qc), device=qc.device) + start.to(qc.device)
            return F.cross_entropy(logits, target, reduction="sum")

        total = q.new_zeros(())
        for s in range(0, n, chunk):
            start = torch.tensor(s)
            if torch.is_grad_enabled():
                total = total + checkpoint(rows, q[s : s + chunk], k, start, use_reentrant=False)
            else:
                total = total + rows(q[s : s + chunk], k, start)
        return total / n * (2 * t)


def _load_uff(path: Path, block: FeatureFusionBlock) -> None:
    """Loads the official UFF checkpoint ({'model': state_dict, 'optimizer', 'args', ...})."""
    obj = read_torch_checkpoint(path, "M3DM UFF checkpoint", allow=(argparse.Namespace,))
    state = obj.get("model", obj) if isinstance(obj, Mapping) else None
    if not isinstance(state, Mapping):
        raise WeightsError(f"{path}: not an M3DM UFF checkpoint (expected a 'model' state dict)")
    state = {k.removeprefix("module."): v for k, v in state.items()}
    check_state_keys(state, block.state_dict(), path, "an M3DM UFF (FeatureFusionBlock) checkpoint")
    block.load_state_dict(state)


def official_uff_rgb_pairing(rgb_tokens: torch.Tensor, factor: int = 4) -> torch.Tensor:
    """The rgb rows the official UFF training pairs with the 56x56 xyz patches: the 28x28 tokens
    (T,C) repeated `factor` times in the order of ``repeat(4,1).reshape(T,4,C).permute(1,0,2)``,
    i.e. row b*T + a holds token (factor*a + b) mod T."""
    t = len(rgb_tokens)
    a = torch.arange(t)[None, :]
    b = torch.arange(factor)[:, None]
    return rgb_tokens[((factor * a + b) % t).reshape(-1)]


def train_uff(
    block: FeatureFusionBlock,
    xyz: list[torch.Tensor],
    rgb: list[torch.Tensor],
    epochs: int = 3,
    warmup_epochs: int = 1,
    batch_size: int = 16,
    accum_iter: int = 1,
    lr: float = 0.003,
    weight_decay: float = 0.01,
    betas: tuple[float, float] = (0.9, 0.95),
    seed: int = 0,
) -> list[float]:
    """Trains `block` on per-sample patch pairs (xyz[i] (P,1152), rgb[i] (P,C)) as
    ``fusion_pretrain.py`` does (shuffled batches of samples, drop_last, per-iteration warm-up +
    half-cycle cosine, gradient accumulation); returns the loss of every iteration."""
    n = len(xyz)
    if n < batch_size:
        batch_size = n  # drop_last would leave nothing to train on
    steps_per_epoch = n // batch_size
    opt = torch.optim.AdamW(block.parameters(), lr=lr, betas=betas, weight_decay=weight_decay)
    gen = torch.Generator().manual_seed(seed)
    losses = []
    block.train()
    opt.zero_grad()
    for epoch in range(epochs):
        order = torch.randperm(n, generator=gen).tolist()
        for it in range(steps_per_epoch):
            if it % accum_iter == 0:
                e = it / steps_per_epoch + epoch
                if e < warmup_epochs:
                    cur = lr * e / warmup_epochs
                else:
                    span = max(epochs - warmup_epochs, 1e-12)
                    cur = 0.5 * lr * (1.0 + math.cos(math.pi * (e - warmup_epochs) / span))
                for g in opt.param_groups:
                    g["lr"] = cur
            idx = order[it * batch_size : (it + 1) * batch_size]
            loss = block.contrastive_loss(torch.cat([xyz[i] for i in idx]),
                                          torch.cat([rgb[i] for i in idx]))
            if not torch.isfinite(loss.detach()):
                raise ContractError(f"UFF training: non-finite loss {loss.item()}")
            losses.append(loss.item())
            (loss / accum_iter).backward()
            if (it + 1) % accum_iter == 0:
                opt.step()
                opt.zero_grad()
    block.eval()
    return losses


# ----------------------------------------------------------------------------------------------
# full RGB + point M3DM
# ----------------------------------------------------------------------------------------------
BANKS = ("xyz", "rgb", "fusion")


class M3DM(Detector):
    """Full M3DM (DINO + Point-MAE + UFF, decision-layer fusion) on organized RGB + xyz scans."""

    learning = "one_class"
    modalities = frozenset({"xyz_grid", "rgb"})

    def __init__(
        self,
        image_size: int = 224,
        patch_grid: int = 56,
        num_group: int = 1024,
        group_size: int = 128,
        coreset_fraction: float = 0.1,
        coreset_eps: float = 0.9,
        n_reweight: int = 3,
        blur_radius: int = 4,
        s_lambdas: tuple[float, float, float] = (1.0, 0.1, 1.0),
        smap_lambdas: tuple[float, float, float] = (1.0, 0.1, 1.0),
        ocsvm_nu: float = 0.5,
        ocsvm_max_iter: int = 1000,
        ocsvm_seed: int = 42,
        max_train_samples: int = 401,
        fusion: str = "checkpoint",
        fusion_weights: str | os.PathLike | None = None,
        uff_pairing: str = "official",
        uff_epochs: int = 3,
        uff_warmup_epochs: int = 1,
        uff_batch_size: int = 16,
        uff_accum_iter: int = 1,
        uff_lr: float = 0.003,
        official_normalisation: bool = True,
        official_coreset_sizes: bool = True,
        pointmae_train_mode: bool = True,
        float16: bool = False,
        pretrained: bool = True,
        weights: str | os.PathLike | None = None,
        rgb_weights: str | os.PathLike | None = None,
        rgb_arch: Mapping[str, Any] | None = None,
        nn_backend: str = "auto",
        seed: int = 0,
    ) -> None:
        from benchmark.components.backbones.pointmae import FEATURE_DIM, PointMAEEncoder
        from benchmark.components.backbones.vit import DinoViTFeatures

        if fusion not in ("checkpoint", "train", "concat"):
            raise ConfigError(f"M3DM: fusion must be 'checkpoint', 'train' or 'concat', got "
                              f"{fusion!r}")
        if uff_pairing not in ("official", "aligned"):
            raise ConfigError(f"M3DM: uff_pairing must be 'official' or 'aligned', got "
                              f"{uff_pairing!r}")
        if image_size % 8 or patch_grid < 1:
            raise ConfigError(f"M3DM: image_size ({image_size}) must be a multiple of 8")
        self.image_size, self.patch_grid = int(image_size), int(patch_grid)
        self.coreset_fraction, self.coreset_eps = coreset_fraction, coreset_eps
        self.n_reweight, self.blur_radius = int(n_reweight), blur_radius
        self.s_lambdas, self.smap_lambdas = tuple(s_lambdas), tuple(smap_lambdas)
        self.ocsvm_nu, self.ocsvm_max_iter, self.ocsvm_seed = ocsvm_nu, ocsvm_max_iter, ocsvm_seed
        self.max_train_samples = int(max_train_samples)
        self.fusion = fusion
        self.uff_pairing = uff_pairing
        self.uff_args = dict(epochs=uff_epochs, warmup_epochs=uff_warmup_epochs,
                             batch_size=uff_batch_size, accum_iter=uff_accum_iter, lr=uff_lr)
        self.official_normalisation = official_normalisation
        self.official_coreset_sizes = official_coreset_sizes
        self.pointmae_train_mode = pointmae_train_mode
        self.float16 = float16
        self.nn_backend = nn_backend
        self.seed = int(seed)
        with torch.random.fork_rng(devices=[]):  # random init (pretrained=False) from `seed`
            torch.manual_seed(seed)
            self.encoder = PointMAEEncoder(num_group, group_size, pretrained=pretrained,
                                           weights=weights)
            self.rgb_backbone = DinoViTFeatures(pretrained=pretrained, weights=rgb_weights,
                                                arch=rgb_arch)
            self.block = FeatureFusionBlock(FEATURE_DIM, self.rgb_backbone.channels)
        self.uff_weights_path: Path | None = None
        if fusion == "checkpoint":
            if pretrained:
                self.uff_weights_path = resolve_weights(M3DM_UFF_WEIGHTS, fusion_weights)
                _load_uff(self.uff_weights_path, self.block)
            elif fusion_weights is not None:
                raise ContractError("M3DM: fusion_weights given but pretrained=False")
        self.block.eval()
        self.banks: dict[str, FeatureBank] = {}
        self.stats: dict[str, tuple[float, float]] = {}
        self.uff_losses: list[float] = []
        self.detect_fuser = self.seg_fuser = None
        self.timer = StageTimer()

    # --- features -----------------------------------------------------------------------------
    def _check(self, sample: Sample) -> None:
        if sample.xyz_grid is None or sample.rgb is None:
            raise ContractError(
                f"{getattr(self, 'name', '') or 'm3dm'}: sample {sample.id!r} needs an organized "
                "xyz grid and an RGB image (MVTec 3D-AD / Eyecandies); m3dm_pointmae / "
                "m3dm_pointbert run on point clouds alone"
            )

    @torch.no_grad()
    def raw_features(self, sample: Sample) -> dict[str, torch.Tensor]:
        """{"xyz": (g*g,1152) aligned point patches, "rgb": (t*t,C) tokens, "rgb2": (g*g,C)
        tokens pooled to the point grid}."""
        from benchmark.components.backbones.wide_resnet import imagenet_normalize

        self._check(sample)
        s, g = self.image_size, self.patch_grid
        grid = resize_grid(sample.xyz_grid, s, mode="nearest")
        flat = grid.reshape(-1, 3)
        keep = np.flatnonzero(valid_cells(grid, all_nonzero=True).reshape(-1))
        full = torch.zeros(flat.shape[0], 1152)
        if len(keep):
            with self.timer("features_pointmae"):
                feats, centres = self.encoder.cloud_features(
                    flat[keep], official_train_mode=self.pointmae_train_mode, seed=self.seed,
                    key=sample.id,
                )
                full[torch.from_numpy(keep)] = torch.from_numpy(
                    interpolate_inverse_distance(centres, feats, flat[keep], k=3))
        maps = full.T.reshape(1, -1, s, s)
        xyz = F.adaptive_avg_pool2d(F.avg_pool2d(maps, 3, stride=1), g)[0]
        with self.timer("features_rgb"):
            img = imagenet_normalize(sample.rgb, size=s)[None]
            tokens = self.rgb_backbone(img).cpu()[0]  # (C, s/8, s/8)
        rgb2 = F.adaptive_avg_pool2d(tokens, g)
        return {"xyz": xyz.reshape(xyz.shape[0], -1).T.contiguous(),
                "rgb": tokens.reshape(tokens.shape[0], -1).T.contiguous(),
                "rgb2": rgb2.reshape(rgb2.shape[0], -1).T.contiguous()}

    @torch.no_grad()
    def _fused(self, raw: Mapping[str, torch.Tensor]) -> torch.Tensor:
        if self.fusion == "concat":
            return torch.cat([raw["xyz"], raw["rgb2"]], dim=1)
        return self.block.feature_fusion(raw["xyz"], raw["rgb2"])

    # --- scoring -------------------------------------------------------------------------------
    def _bank_score(self, kind: str, patches: np.ndarray) -> tuple[float, np.ndarray]:
        """BTF score and blurred 224 map of one bank."""
        mean, std = self.stats[kind]
        p = ((patches - mean) / std).astype(np.float32)
        bank = self.banks[kind]
        d, i = bank.search(p, 1)
        s = btf_reweighted_score(p, d[:, 0], i[:, 0], bank.features, self.n_reweight)
        side = int(round(math.sqrt(len(p))))
        amap = resize_maps(d[:, 0].reshape(side, side), self.image_size, mode="bilinear")
        return s, btf_blur(amap, radius=self.blur_radius)

    def _triples(self, sample: Sample) -> tuple[np.ndarray, np.ndarray]:
        raw = self.raw_features(sample)
        parts = {"xyz": raw["xyz"].numpy(), "rgb": raw["rgb"].numpy(),
                 "fusion": self._fused(raw).numpy()}
        with self.timer("scoring"):
            out = {k: self._bank_score(k, parts[k]) for k in BANKS}
        s = np.array([lam * out[k][0] for lam, k in zip(self.s_lambdas, BANKS)])
        smap = np.stack([lam * out[k][1].reshape(-1) for lam, k in zip(self.smap_lambdas, BANKS)],
                        axis=1)
        return s[None].astype(np.float64), smap.astype(np.float64)

    # --- fit -----------------------------------------------------------------------------------
    def fit(self, train: Iterable[Sample]) -> None:
        from sklearn.linear_model import SGDOneClassSVM

        kept: list[Sample] = []
        raws: list[dict[str, torch.Tensor]] = []
        for i, sample in enumerate(train):
            if i >= self.max_train_samples:
                break
            raws.append(self.raw_features(sample))
            kept.append(sample)
        if not raws:
            raise ContractError("M3DM.fit: no training samples")
        if self.fusion == "train":
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(self.seed)
                self.block = FeatureFusionBlock(self.block.xyz_dim, self.block.rgb_dim)
            rgb_side = [official_uff_rgb_pairing(r["rgb"], r["xyz"].shape[0] // r["rgb"].shape[0])
                        if self.uff_pairing == "official" else r["rgb2"] for r in raws]
            with self.timer("uff_training"):
                self.uff_losses = train_uff(self.block, [r["xyz"] for r in raws], rgb_side,
                                            seed=self.seed, **self.uff_args)
        libs = {"xyz": np.concatenate([r["xyz"].numpy() for r in raws]),
                "rgb": np.concatenate([r["rgb"].numpy() for r in raws]),
                "fusion": np.concatenate([self._fused(r).numpy() for r in raws])}
        del raws
        if self.official_normalisation:  # all means from the xyz bank, all stds from the rgb one
            mean, std = float(libs["xyz"].mean()), float(libs["rgb"].std(ddof=1))
            self.stats = {k: (mean, std) for k in BANKS}
        else:
            self.stats = {k: (float(v.mean()), float(v.std(ddof=1))) for k, v in libs.items()}
        n_xyz = None
        with self.timer("coreset"):
            for k in BANKS:
                mean, std = self.stats[k]
                lib = ((libs[k] - mean) / std).astype(np.float32)
                if self.coreset_fraction < 1:
                    base = n_xyz if (self.official_coreset_sizes and k != "xyz") else len(lib)
                    n = coreset_size(base, fraction=self.coreset_fraction)
                    n = min(max(n, self.n_reweight), len(lib))  # re-weighting needs 3 rows
                    lib = _coreset(lib, n, self.coreset_eps, self.seed, self.float16)
                if k == "xyz":
                    n_xyz = len(lib)
                    lib = np.concatenate([lib[np.all(lib != 0, axis=1)],
                                          np.zeros((1, lib.shape[1]), np.float32)])
                self.banks[k] = FeatureBank(lib, backend=self.nn_backend)
                libs[k] = None
        s_rows, map_rows = [], []
        with self.timer("late_fusion"):
            for sample in kept:
                s, smap = self._triples(sample)
                s_rows.append(s)
                map_rows.append(smap)
            kw = dict(nu=self.ocsvm_nu, max_iter=self.ocsvm_max_iter,
                      random_state=self.ocsvm_seed)
            self.detect_fuser = SGDOneClassSVM(**kw).fit(np.concatenate(s_rows))
            self.seg_fuser = SGDOneClassSVM(**kw).fit(np.concatenate(map_rows))

    def predict(self, sample: Sample) -> Prediction:
        self.check_fitted(self.detect_fuser is not None)
        s, smap = self._triples(sample)
        score = float(self.detect_fuser.score_samples(s)[0])
        pix = self.seg_fuser.score_samples(smap).reshape(self.image_size, self.image_size)
        return Prediction(score=score, pixel_scores=pix.astype(np.float32))

    def to(self, device: str) -> M3DM:
        self.device = device
        self.encoder.to(device)
        self.rgb_backbone.to(device)
        return self


# ----------------------------------------------------------------------------------------------
# registration
# ----------------------------------------------------------------------------------------------
_POINT_SMOKE = {"pretrained": False, "num_group": 32, "group_size": 16}
_POINT_COMMON = dict(
    factory=M3DMPoint,
    learning="one_class",
    modalities=("points",),
    outputs=("score", "point_scores"),
    provenance=POINT_PROVENANCE,
    datasets=("real3d", "anomaly_shapenet", "mvtec3d", "eyecandies"),
    smoke=_POINT_SMOKE,
)
METHODS.register(
    "m3dm_pointmae",
    kwargs={"backbone": "pointmae"},
    summary="M3DM(PointMAE) point-only as Real3D-AD runs it (16384 Point-MAE groups, 10% coreset, "
    "1-NN copy to every point)",
    **_POINT_COMMON,
)
METHODS.register(
    "m3dm_pointbert",
    kwargs={"backbone": "pointbert"},
    summary="M3DM(PointBERT) point-only as Real3D-AD runs it (16384 Point-BERT groups, 10% "
    "coreset, 1-NN copy to every point)",
    **_POINT_COMMON,
)
METHODS.register(
    "m3dm",
    factory=M3DM,
    summary="M3DM (DINO ViT-B/8 + Point-MAE, unsupervised feature fusion, decision-layer OCSVM "
    "fusion of three memory banks) on organized RGB + xyz scans",
    learning="one_class",
    modalities=("xyz_grid", "rgb"),
    outputs=("score", "pixel_scores"),
    provenance=FULL_PROVENANCE,
    datasets=("mvtec3d", "eyecandies"),
    smoke={"pretrained": False, "fusion": "train", "num_group": 16, "group_size": 8,
           "image_size": 32, "patch_grid": 8, "uff_epochs": 1, "uff_batch_size": 2,
           "ocsvm_max_iter": 50, "max_train_samples": 2,
           "rgb_arch": {"img_size": 32, "embed_dim": 16, "depth": 2, "num_heads": 2}},
)
