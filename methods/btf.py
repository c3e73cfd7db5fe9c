"""BTF, "Back to the Feature" (Horwitz & Hoshen): PatchCore on handcrafted 3D / RGB patches of
organized scans.

Provenance: ported from eliahuhorwitz/3D-ADS (commit 612eb7b3ef87; ``data/mvtec3d.py``,
``feature_extractors/{features,fpfh_features,raw_features,RGB_inet_features,rgb_fpfh_features}.py``,
``utils/utils.py``), re-written from our description in specs/methods.md §2:
- input: the organized xyz grid resized to 224x224 with torch nearest interpolation; depth = z;
  RGB resized to 224x224 (PIL bicubic) and ImageNet-normalised.
- features per 28x28 patch grid (784 patches):
  raw: the 224x224 depth reshaped in memory order to 28x28x64 (not spatial 8x8 blocks);
  fpfh: Open3D FPFH of the non-zero points (every coordinate != 0) of the 224 grid, normals
  radius 0.1 / 30, FPFH radius 0.25 / 100 (voxel 0.05 x2 / x5; metres), zeros elsewhere, then
  AvgPool2d(3, stride 1, no padding) and AdaptiveAvgPool2d(28);
  rgb: WRN-50 layers 2 and 3 (timm ``wide_resnet50_2`` default ImageNet weights, ``racm_in1k``),
  each AvgPool 3x3 s1 + AdaptiveAvgPool 28, concatenated (1536-d);
  rgb_fpfh: concat RGB (1536) + FPFH (33), no per-modality scaling.
- bank: every patch of every train sample; exact greedy coreset of 10 % from row 0 after sklearn
  SparseRandomProjection(eps=0.9) (skipped, as the official code silently does, when the JL
  dimension exceeds the feature width: raw and fpfh run unprojected).
- scoring: Euclidean distance to the nearest bank row; image score re-weighted (PatchCore eq. 7
  as 3D-ADS implements it, 3 neighbours); map bilinear 28->224 then the 8-bit PIL blur radius 4.
  Output: ``pixel_scores`` on the 224x224 grid (the evaluator resamples it).

Deviations: the official code computes the coreset in float16 on every device; here float32 by
default (5x faster on CPU; only near ties can differ), ``float16=True`` restores it. Seeds fix the
sparse projection (``random_state=seed``) instead of numpy's global state.
BTF's plane-removal preprocessing is a dataset option (mvtec3d ``preprocess="btf"``), not part of
the detector.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

import numpy as np
import torch
import torch.nn.functional as F

from benchmark.components.blur import btf_blur
from benchmark.components.geometry.descriptors import fpfh
from benchmark.components.geometry.organized import resize_grid, resize_maps, valid_cells
from benchmark.components.memory_bank import (
    FeatureBank,
    btf_reweighted_score,
    coreset_size,
    greedy_coreset_btf,
)
from benchmark.detector import Detector
from benchmark.errors import ConfigError, ContractError
from benchmark.registry import METHODS
from benchmark.sample import Prediction, Sample
from benchmark.timing import StageTimer

PROVENANCE = (
    "ported from eliahuhorwitz/3D-ADS@612eb7b3ef87 (features.py, *_features.py, "
    "data/mvtec3d.py); float32 coreset by default (official: float16)"
)
FEATURES = {
    "raw": frozenset({"xyz_grid"}),
    "fpfh": frozenset({"xyz_grid"}),
    "rgb": frozenset({"rgb"}),
    "rgb_fpfh": frozenset({"xyz_grid", "rgb"}),
}


class BTF(Detector):
    """BTF on organized samples; features "raw" | "fpfh" | "rgb" | "rgb_fpfh"."""

    learning = "one_class"
    modalities = frozenset({"xyz_grid"})

    def __init__(
        self,
        features: str = "fpfh",
        image_size: int = 224,
        patch_grid: int = 28,
        coreset_fraction: float = 0.1,
        coreset_eps: float = 0.9,
        n_reweight: int = 3,
        blur_radius: int = 4,
        voxel_size: float = 0.05,
        pretrained: bool = True,
        weights: str | os.PathLike | None = None,
        backbone_tag: str = "racm_in1k",
        float16: bool = False,
        nn_backend: str = "auto",
        seed: int = 0,
    ) -> None:
        if features not in FEATURES:
            raise ConfigError(f"BTF: unknown features {features!r}; known: {sorted(FEATURES)}")
        if isinstance(voxel_size, (str, bool)) or not float(voxel_size) > 0:
            raise ConfigError(f"BTF: voxel_size must be a positive number, got {voxel_size!r}")
        if features == "raw" and (image_size * image_size) % (patch_grid * patch_grid):
            raise ConfigError("BTF raw: image_size^2 must be a multiple of patch_grid^2")
        self.features = features
        self.modalities = FEATURES[features]
        self.image_size = int(image_size)
        self.patch_grid = int(patch_grid)
        self.coreset_fraction = coreset_fraction
        self.coreset_eps = coreset_eps
        self.n_reweight = n_reweight
        self.blur_radius = blur_radius
        self.voxel_size = float(voxel_size)
        self.float16 = float16
        self.nn_backend = nn_backend
        self.seed = int(seed)
        self.backbone = None
        if "rgb" in features:
            from benchmark.components.backbones.wide_resnet import WideResNet50Features

            self.backbone = WideResNet50Features(
                pretrained=pretrained, weights=weights, tag=backbone_tag
            )
        self.bank: FeatureBank | None = None
        self.timer = StageTimer()

    # --- features --------------------------------------------------------------------------
    def _pool(self, maps: torch.Tensor) -> torch.Tensor:
        """(1,C,H,W) -> AvgPool2d(3, s1, no padding) -> AdaptiveAvgPool2d(grid)."""
        return F.adaptive_avg_pool2d(F.avg_pool2d(maps, 3, stride=1), self.patch_grid)

    def _fpfh_patches(self, grid224: np.ndarray) -> np.ndarray:
        s = self.image_size
        flat = grid224.reshape(-1, 3)
        keep = np.flatnonzero(valid_cells(grid224, all_nonzero=True).reshape(-1))
        full = np.zeros((s * s, 33), np.float32)
        if len(keep) >= 3:
            v = self.voxel_size
            full[keep] = fpfh(flat[keep], 2 * v, 30, 5 * v, 100)
        maps = torch.from_numpy(full.reshape(s, s, 33)).permute(2, 0, 1)[None]
        return self._pool(maps)[0].reshape(33, -1).T.numpy()

    def _rgb_patches(self, rgb: np.ndarray) -> np.ndarray:
        from benchmark.components.backbones.wide_resnet import btf_pool, imagenet_normalize

        img = imagenet_normalize(rgb, size=self.image_size)[None]
        maps = self.backbone(img)
        pooled = btf_pool(maps, self.patch_grid)
        return pooled[0].reshape(pooled.shape[1], -1).T.numpy()

    def patches(self, sample: Sample) -> np.ndarray:
        """(patch_grid^2, D) float32 patch features of one organized sample, row-major."""
        need_xyz = self.features != "rgb"
        if need_xyz and sample.xyz_grid is None:
            raise ContractError(
                f"btf_{self.features}: sample {sample.id!r} is not organized (no xyz_grid); "
                "BTF needs MVTec 3D-AD / Eyecandies style scans"
            )
        if "rgb" in self.features and sample.rgb is None:
            raise ContractError(f"btf_{self.features}: sample {sample.id!r} has no RGB image")
        parts = []
        if "rgb" in self.features:
            with self.timer("features_rgb"):
                parts.append(self._rgb_patches(sample.rgb))
        if need_xyz:
            grid = resize_grid(sample.xyz_grid, self.image_size, mode="nearest")
            with self.timer(f"features_{self.features.removeprefix('rgb_')}"):
                if self.features == "raw":
                    depth = np.ascontiguousarray(grid[:, :, 2])
                    parts.append(depth.reshape(self.patch_grid**2, -1))
                else:
                    parts.append(self._fpfh_patches(grid))
        return np.concatenate(parts, axis=1).astype(np.float32, copy=False)

    # --- fit / predict -----------------------------------------------------------------------
    def fit(self, train: Iterable[Sample]) -> None:
        lib = [self.patches(s) for s in train]
        if not lib:
            raise ContractError("BTF.fit: no training samples")
        feats = np.concatenate(lib)
        n = coreset_size(len(feats), fraction=self.coreset_fraction)
        with self.timer("coreset"):
            idx = greedy_coreset_btf(
                feats, n, eps=self.coreset_eps, seed=self.seed, float16=self.float16
            )
        self.bank = FeatureBank(feats[idx], backend=self.nn_backend)

    def predict(self, sample: Sample) -> Prediction:
        self.check_fitted(self.bank is not None)
        p = self.patches(sample)
        with self.timer("scoring"):
            d, i = self.bank.search(p, 1)
            score = btf_reweighted_score(
                p, d[:, 0], i[:, 0], self.bank.features, n_reweight=self.n_reweight
            )
        g = self.patch_grid
        amap = resize_maps(d[:, 0].reshape(g, g), self.image_size, mode="bilinear")
        amap = btf_blur(amap, radius=self.blur_radius)
        return Prediction(score=score, pixel_scores=amap)

    def to(self, device: str) -> BTF:
        self.device = device
        if self.backbone is not None:
            self.backbone.to(device)
        return self


_COMMON = dict(
    factory=BTF,
    learning="one_class",
    outputs=("score", "pixel_scores"),
    provenance=PROVENANCE,
    datasets=("mvtec3d", "eyecandies"),
)
_SMOKE = {"image_size": 56, "patch_grid": 7}
METHODS.register(
    "btf_raw",
    kwargs={"features": "raw"},
    summary="BTF: PatchCore on raw depth patches (28x28x64 memory reshape)",
    modalities=("xyz_grid",),
    smoke=_SMOKE,
    **_COMMON,
)
METHODS.register(
    "btf_fpfh",
    kwargs={"features": "fpfh"},
    summary="BTF: PatchCore on pooled FPFH of the 224x224 organized cloud",
    modalities=("xyz_grid",),
    smoke=_SMOKE,
    **_COMMON,
)
METHODS.register(
    "btf_rgb",
    kwargs={"features": "rgb"},
    summary="BTF: PatchCore on pooled WRN-50 layer 2+3 RGB features (BTF's RGB iNet baseline)",
    modalities=("rgb",),
    smoke={**_SMOKE, "pretrained": False},
    **_COMMON,
)
METHODS.register(
    "btf_rgb_fpfh",
    kwargs={"features": "rgb_fpfh"},
    summary="BTF (RGB + FPFH): concatenated WRN-50 and FPFH patch features",
    modalities=("xyz_grid", "rgb"),
    smoke={**_SMOKE, "pretrained": False},
    **_COMMON,
)
