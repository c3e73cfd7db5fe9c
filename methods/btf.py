"""BTF, "Back to the Feature" (Horwitz & Hoshen): PatchCore on handcrafted 3D / RGB features,
on organized scans (3D-ADS, presets ``btf_*``) and on unorganized clouds (the Real3D-AD port,
presets ``btf_raw_real3d`` / ``btf_fpfh_real3d``).

Organized scans (``BTF``). Provenance: ported from eliahuhorwitz/3D-ADS (commit 612eb7b3ef87;
``data/mvtec3d.py``, ``utils/utils.py``, ``feature_extractors/{features,fpfh_features,
raw_features,RGB_inet_features,rgb_fpfh_features}.py``), re-written from our description in
specs/methods.md §2:
- input: the organized xyz grid resized to 224x224 with torch nearest interpolation; depth = z;
  RGB resized to 224x224 (PIL bicubic) and ImageNet-normalised.
- features per 28x28 patch grid (784 patches):
  raw: the 224x224 depth reshaped in memory order to 28x28x64 (not spatial 8x8 blocks);
  fpfh: Open3D FPFH of the non-zero points (every coordinate != 0) of the 224 grid, normals
  radius 0.1 / 30, FPFH radius 0.25 / 100 (voxel 0.05 x2 / x5; metres: the default "0.05m" is
  converted to each sample's declared unit, so it is 0.05 on MVTec 3D-AD and 0.005 on Eyecandies'
  decametre frame, the same physical size; the 30 / 100 neighbour caps usually bind first),
  zeros elsewhere, then
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

Unorganized clouds (``Real3DBTF``). Provenance: ported from M-3LAB/Real3D-AD (commit
9a9cd04d39e3; ``main_btf_raw.py``, ``main_btf_fpfh.py``, ``feature_extractors/pc_features.py``
``PC_Features.compute_s_s_map``, ``M3DM/cpu_knn.py`` ``fill_missing_values``, ``dataset_pc.py``),
re-written from reading them (specs/methods.md §O):
- every cloud mean-centred (no registration: the scripts have it commented out);
- per-point features on the whole cloud: raw = the centred xyz (3-d); fpfh = Open3D FPFH with
  voxel 0.5 (normals radius 1.0 / 30, FPFH radius 2.5 / 100; millimetres);
- sub-sampling by index stride: train clouds keep rows 0, 100, 200, ... (int(N/100) of them),
  test clouds rows 0, 500, 1000, ... (int(N/500));
- bank = the sampled rows of every train cloud, concatenated; the scripts never call
  ``run_coreset``, so there is no coreset (``coreset_fraction=0.1`` runs BTF's greedy coreset
  as an option);
- scoring: Euclidean distance of each sampled test row to its nearest bank row; object score =
  BTF's re-weighted max (3 neighbours, D = sqrt(feature width), no epsilon); every point of the
  cloud takes the score of its nearest sampled point (1-NN copy); metrics over all points.
On a 12,000-point cloud the official ratios score 24 points (specs §O); they were tuned for the
0.1-2.7 M-point Real3D-AD scans. ``sampling="density"`` is our density-aware option: one real
point per voxel of edge ``train_spacing`` / ``test_spacing`` times the cloud's median
nearest-neighbour spacing (guesses: 2.0 and 3.0), so the scored points cover the surface evenly
at any density. The voxel is the official 0.5 mm (``voxel_size="0.5mm"``), converted at fit time
to the samples' declared unit. Guessed / added (ours): ``sampling="density"`` and its two
factors, ``voxel_size="auto"`` (2.5x the median spacing of the first train cloud; also what
unit-less data falls back to); the Open3D FPFH is deterministic, so is the whole detector.
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
from benchmark.components.geometry.pointops import (
    centre,
    median_spacing,
    propagate_nearest,
    stride_indices,
    voxel_subsample_indices,
)
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
from benchmark.units import parse_length, to_data_units
from methods._memorybank_common import auto_voxel, check_voxel

PROVENANCE = (
    "ported from eliahuhorwitz/3D-ADS@612eb7b3ef87 (features.py, *_features.py, "
    "data/mvtec3d.py); float32 coreset by default (official: float16)"
)
REAL3D_PROVENANCE = (
    "BTF (eliahuhorwitz/3D-ADS@612eb7b3ef87) as ported to unorganized clouds by "
    "M-3LAB/Real3D-AD@9a9cd04d39e3 (main_btf_{raw,fpfh}.py, feature_extractors/pc_features.py): "
    "stride sub-sampling 100/500, no coreset, 1-NN copy of the sampled scores"
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
        voxel_size: float | str = "0.05m",
        pretrained: bool = True,
        weights: str | os.PathLike | None = None,
        backbone_tag: str = "racm_in1k",
        float16: bool = False,
        nn_backend: str = "auto",
        seed: int = 0,
    ) -> None:
        if features not in FEATURES:
            raise ConfigError(f"BTF: unknown features {features!r}; known: {sorted(FEATURES)}")
        try:
            ok = parse_length(voxel_size)[0] > 0
        except ConfigError:
            ok = False
        if not ok:
            raise ConfigError(
                f"BTF: voxel_size must be a positive number (data units) or a length such as "
                f"'0.05m', got {voxel_size!r}"
            )
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
        self.voxel_size = voxel_size
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

    def _voxel(self, unit: str | None) -> float:
        """The voxel in the sample's unit (unit-less data: the number as given)."""
        v = to_data_units(self.voxel_size, unit)
        return parse_length(self.voxel_size)[0] if v is None else v

    def _fpfh_patches(self, grid224: np.ndarray, unit: str | None = "m") -> np.ndarray:
        s = self.image_size
        flat = grid224.reshape(-1, 3)
        keep = np.flatnonzero(valid_cells(grid224, all_nonzero=True).reshape(-1))
        full = np.zeros((s * s, 33), np.float32)
        if len(keep) >= 3:
            v = self._voxel(unit)
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
                "this preset needs MVTec 3D-AD / Eyecandies style scans (btf_raw_real3d / "
                "btf_fpfh_real3d run BTF on unorganized clouds)"
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
                    parts.append(self._fpfh_patches(grid, sample.unit))
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


class Real3DBTF(Detector):
    """BTF on unorganized clouds as Real3D-AD's port (see the module docstring).

    features: "raw" | "fpfh"; sampling: "stride" (official ratios) | "density" (ours).
    Works on any Sample (``sample.points``; organized samples give scores for their valid points).
    """

    learning = "one_class"
    modalities = frozenset({"points"})

    def __init__(
        self,
        features: str = "fpfh",
        voxel_size: float | str = "0.5mm",
        sampling: str = "stride",
        train_sampling_ratio: int = 100,
        test_sampling_ratio: int = 500,
        train_spacing: float = 2.0,
        test_spacing: float = 3.0,
        coreset_fraction: float | None = None,
        coreset_eps: float = 0.9,
        n_reweight: int = 3,
        float16: bool = False,
        nn_backend: str = "auto",
        seed: int = 0,
    ) -> None:
        if features not in ("raw", "fpfh"):
            raise ConfigError(f"Real3DBTF: unknown features {features!r}; known: ['fpfh', 'raw']")
        if sampling not in ("stride", "density"):
            raise ConfigError(
                f"Real3DBTF: sampling must be 'stride' or 'density', got {sampling!r}"
            )
        check_voxel(voxel_size)
        for name, v in (("train_sampling_ratio", train_sampling_ratio),
                        ("test_sampling_ratio", test_sampling_ratio)):
            if isinstance(v, bool) or int(v) != v or v < 1:
                raise ConfigError(f"Real3DBTF: {name} must be an integer >= 1, got {v!r}")
        for name, v in (("train_spacing", train_spacing), ("test_spacing", test_spacing)):
            if not float(v) > 0:
                raise ConfigError(f"Real3DBTF: {name} must be > 0, got {v!r}")
        if coreset_fraction is not None and not 0 < coreset_fraction <= 1:
            raise ConfigError(f"Real3DBTF: coreset_fraction must lie in (0, 1] or be None, "
                              f"got {coreset_fraction!r}")
        self.features = features
        self.voxel_size = voxel_size
        self.sampling = sampling
        self.train_sampling_ratio = int(train_sampling_ratio)
        self.test_sampling_ratio = int(test_sampling_ratio)
        self.train_spacing = float(train_spacing)
        self.test_spacing = float(test_spacing)
        self.coreset_fraction = coreset_fraction
        self.coreset_eps = coreset_eps
        self.n_reweight = int(n_reweight)
        self.float16 = float16
        self.nn_backend = nn_backend
        self.seed = int(seed)
        self.bank: FeatureBank | None = None
        self._voxel: float | None = None
        self.timer = StageTimer()

    @property
    def _label(self) -> str:
        return getattr(self, "name", None) or f"btf_{self.features}_real3d"

    def sample_indices(self, points: np.ndarray, train: bool) -> np.ndarray:
        """Rows of `points` whose features enter the bank (train) or are scored (test)."""
        if self.sampling == "stride":
            ratio = self.train_sampling_ratio if train else self.test_sampling_ratio
            return stride_indices(len(points), ratio)
        factor = self.train_spacing if train else self.test_spacing
        if len(points) < 2:
            return np.zeros(len(points), dtype=np.int64)
        return voxel_subsample_indices(points, factor * median_spacing(points, seed=self.seed))

    def point_features(self, points: np.ndarray) -> np.ndarray:
        """(N,D) per-point features of a centred cloud (raw xyz or FPFH)."""
        if self.features == "raw":
            return np.asarray(points, dtype=np.float32)
        v = self._voxel
        with self.timer("features_fpfh"):
            return fpfh(points, 2 * v, 30, 5 * v, 100)

    def _embed(self, sample: Sample, train: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(centred points, sampled row indices, features of the sampled rows)."""
        pts = centre(np.asarray(sample.points))
        idx = self.sample_indices(pts, train)
        if len(idx) == 0:
            ratio = self.train_sampling_ratio if train else self.test_sampling_ratio
            raise ContractError(
                f"{self._label}: sample {sample.id!r} has {len(pts)} points, fewer than the "
                f"sampling ratio {ratio}: no point to {'store' if train else 'score'} "
                "(use sampling='density' on small clouds)"
            )
        feats = self.point_features(pts)[idx]
        return pts, idx, np.ascontiguousarray(feats, dtype=np.float32)

    def fit(self, train: Iterable[Sample]) -> None:
        rows = []
        for sample in train:
            if self._voxel is None:
                first = centre(np.asarray(sample.points))
                self._voxel = auto_voxel(first, self.voxel_size, unit=sample.unit)
                diag = float(np.linalg.norm(first.max(0) - first.min(0)))
                if self.features == "fpfh" and diag < 20 * self._voxel:
                    raise ConfigError(
                        f"{self._label}: voxel_size={self._voxel:g} is too coarse for clouds of "
                        f"diagonal {diag:.4g} (sample {sample.id!r}); the default 0.5 is "
                        "Real3D-AD's millimetre setting: pass voxel_size='auto' or a value in "
                        "the data's units"
                    )
            rows.append(self._embed(sample, train=True)[2])
        if not rows:
            raise ContractError(f"{self._label}.fit: no training samples")
        feats = np.concatenate(rows)
        if self.coreset_fraction is not None:
            n = coreset_size(len(feats), fraction=self.coreset_fraction)
            with self.timer("coreset"):
                idx = greedy_coreset_btf(
                    feats, n, eps=self.coreset_eps, seed=self.seed, float16=self.float16
                )
            feats = feats[idx]
        if len(feats) < self.n_reweight:
            raise ContractError(
                f"{self._label}.fit: the bank has {len(feats)} rows, fewer than n_reweight="
                f"{self.n_reweight}"
            )
        self.bank = FeatureBank(feats, backend=self.nn_backend)

    def predict(self, sample: Sample) -> Prediction:
        self.check_fitted(self.bank is not None)
        pts, idx, feats = self._embed(sample, train=False)
        with self.timer("scoring"):
            d, i = self.bank.search(feats, 1)
            score = btf_reweighted_score(
                feats, d[:, 0], i[:, 0], self.bank.features, n_reweight=self.n_reweight
            )
            point_scores = propagate_nearest(pts[idx], d[:, 0], pts)
        return Prediction(score=score, point_scores=point_scores.astype(np.float32))


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

_REAL3D_COMMON = dict(
    factory=Real3DBTF,
    learning="one_class",
    modalities=("points",),
    outputs=("score", "point_scores"),
    provenance=REAL3D_PROVENANCE,
    datasets=("real3d", "anomaly_shapenet", "mvtec3d", "eyecandies"),
    smoke={"voxel_size": "auto", "train_sampling_ratio": 10, "test_sampling_ratio": 20},
)
METHODS.register(
    "btf_raw_real3d",
    kwargs={"features": "raw"},
    summary="BTF(Raw) on unorganized clouds as Real3D-AD runs it (every 100th / 500th point, "
    "centred xyz, 1-NN copy of the sampled scores)",
    **_REAL3D_COMMON,
)
METHODS.register(
    "btf_fpfh_real3d",
    kwargs={"features": "fpfh"},
    summary="BTF(FPFH) on unorganized clouds as Real3D-AD runs it (per-point FPFH, every "
    "100th / 500th point, 1-NN copy of the sampled scores)",
    **_REAL3D_COMMON,
)
