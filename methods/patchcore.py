"""PatchCore presets: the Real3D-AD point-cloud baselines and the official 2D PatchCore on RGB.

Provenance
- ``patchcore_fpfh``, ``patchcore_raw``, ``patchcore_fpfh_raw``, ``patchcore_pointmae``: ported
  from M-3LAB/Real3D-AD (commit 9a9cd04d39e3; ``main_patchcore_{fpfh,fpfh_raw,pointmae}.py``,
  ``patchcore/{patchcore,sampler,common}.py``, ``feature_extractors/ransac_position.py``,
  ``start.sh``), re-written from our description in specs/methods.md §3.2 / §4.1. Each cloud is
  mean-centred, its axes permuted (x<-z, y<-x, z<-y) and RANSAC+FPFH-registered to the first
  training cloud (voxel 0.5); features on the registered full-resolution cloud: FPFH (normals
  radius 1.0 / 30, FPFH radius 2.5 / 100), raw registered xyz, or Point-MAE group features
  (16384 groups of 128, 1152-d). Bank: approximate greedy coreset (Linear->128, 10 starts) of
  fixed size 10000 over all train rows; score = squared L2 (FAISS) to the nearest bank row
  (k=1); object score = max; Point-MAE group scores copied to every point from the nearest group
  centre. FPFH+Raw: two banks, each min-max normalised over the test set of the class (object
  scores over samples, point scores over all pooled points), then averaged.
- ``patchcore_rgb``: ported from amazon-science/patchcore-inspection (commit fcaa92f124fb,
  ``src/patchcore/{patchcore,common,sampler}.py``, ``sample_training.sh``; specs/methods.md §3.1):
  ImageNet WideResNet-50-2 (torchvision weights, ``tv_in1k``, as the official code loads them
  through torchvision) layers 2 and 3, 3x3 neighbourhood aggregation (unfold, padding 1),
  layer 3 bilinearly resized to layer 2's patch grid, per-layer adaptive average pooling of the
  flattened C*3*3 vector to 1024 and of the stacked layers to 1024; approximate greedy coreset
  10 %; squared L2 (FAISS), k=1; image score = max; map = bilinear up-sampling + Gaussian sigma 4.

Deviations and guesses (all documented)
- Open3D's RNG is seeded from `seed` (the official code never seeds it, its poses vary per run).
- The template is the first training sample in the dataset's order (our loaders sort listings;
  the official code takes the first file of an unsorted glob).
- ``max_bank_candidates`` (8,000,000 rows, guessed; every Real3D-AD class stays below it) bounds
  memory before the coreset: beyond it each train sample contributes an equal seeded random share.
- ``pointmae_train_mode=True`` reproduces the official extractor, which is never put in eval
  mode (BatchNorm on the cloud's own statistics, DropPath active); its randomness is seeded from
  `seed` and the sample id. ``False`` gives the deterministic eval-mode features.
- ``voxel_size="auto"`` (2.5x the median point spacing) is our addition for data in other
  units or densities (the official 0.5 assumes Real3D-AD's millimetre scans).
- ``normalize="train"`` (min/max of train-sample scores) and ``"none"`` are leak-free
  alternatives to the official test-set normalisation of ``patchcore_fpfh_raw``.
- 2D: the map of the centre crop is edge-padded back to the resized (uncropped) frame so that it
  covers the whole organized grid (the official code evaluates on the crop only);
  ``crop=None, resize=224`` gives the plain 224x224 resize that BTF/M3DM use.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from benchmark.components.blur import gaussian_blur
from benchmark.components.geometry.descriptors import fpfh
from benchmark.components.geometry.organized import resize_maps
from benchmark.components.geometry.pointops import centre, propagate_nearest
from benchmark.components.memory_bank import FeatureBank, approximate_greedy_coreset, coreset_size
from benchmark.detector import Detector
from benchmark.errors import ConfigError, ContractError
from benchmark.registry import METHODS
from benchmark.sample import Prediction, Sample
from benchmark.timing import StageTimer
from methods._memorybank_common import (
    auto_voxel,
    centre_and_register,
    minmax,
)

REAL3D_FEATURES = {"fpfh": ("fpfh",), "raw": ("raw",), "fpfh_raw": ("fpfh", "raw"),
                   "pointmae": ("pointmae",)}  # fmt: skip
REAL3D_PROVENANCE = (
    "ported from M-3LAB/Real3D-AD@9a9cd04d39e3 (main_patchcore_*.py, patchcore/, "
    "feature_extractors/ransac_position.py); Open3D RNG seeded (deviation)"
)
PATCHCORE2D_PROVENANCE = (
    "ported from amazon-science/patchcore-inspection@fcaa92f124fb (src/patchcore/); "
    "crop map edge-padded to the full frame (deviation)"
)


def _as_list(samples: Iterable[Sample]) -> Sequence[Sample]:
    return samples if isinstance(samples, Sequence) else list(samples)


class Real3DPatchCore(Detector):
    """PatchCore on point clouds as the Real3D-AD baselines (see module docstring).

    features: "fpfh" | "raw" | "fpfh_raw" | "pointmae". Works on any Sample (uses
    ``sample.points``; organized samples give point scores for their valid points).
    """

    modalities = frozenset({"points"})
    learning = "one_class"

    def __init__(
        self,
        features: str = "fpfh",
        memory_size: int = 10000,
        voxel_size: float | str = 0.5,
        register: bool = True,
        ransac_iterations: int = 100000,
        normalize: str = "test",
        num_group: int = 16384,
        group_size: int = 128,
        pretrained: bool = True,
        weights: str | os.PathLike | None = None,
        pointmae_train_mode: bool = True,
        proj_dim: int = 128,
        n_starts: int = 10,
        max_bank_candidates: int = 8_000_000,
        nn_backend: str = "auto",
        cache: bool = True,
        seed: int = 42,
    ) -> None:
        if features not in REAL3D_FEATURES:
            raise ConfigError(
                f"Real3DPatchCore: unknown features {features!r}; known: {sorted(REAL3D_FEATURES)}"
            )
        if normalize not in ("test", "train", "none"):
            raise ConfigError(f"normalize must be 'test', 'train' or 'none', got {normalize!r}")
        self.features = features
        self.kinds = REAL3D_FEATURES[features]
        self.memory_size = int(memory_size)
        self.voxel_size = voxel_size
        if voxel_size != "auto":
            auto_voxel(np.zeros((2, 3)), voxel_size)  # validates
        self.register_clouds = bool(register)
        self.ransac_iterations = int(ransac_iterations)
        self.normalize = normalize
        self.pointmae_train_mode = bool(pointmae_train_mode)
        self.proj_dim = proj_dim
        self.n_starts = n_starts
        self.max_bank_candidates = int(max_bank_candidates)
        self.nn_backend = nn_backend
        self.cache = cache
        self.seed = int(seed)
        self.uses_test_statistics = len(self.kinds) > 1 and normalize == "test"
        self.encoder = None
        if "pointmae" in self.kinds:
            from benchmark.components.backbones.pointmae import PointMAEEncoder

            self.encoder = PointMAEEncoder(
                num_group=num_group, group_size=group_size, pretrained=pretrained, weights=weights
            )
        self.banks: dict[str, FeatureBank] = {}
        self.template: np.ndarray | None = None
        self.template_id: str | None = None
        self._voxel: float | None = None
        self.train_stats: dict[str, tuple[float, float, float, float]] = {}
        self.timer = StageTimer()

    # --- embedding -------------------------------------------------------------------------
    def _registered(self, sample: Sample) -> np.ndarray:
        return centre_and_register(
            sample.points, self.template, enabled=self.register_clouds, seed=self.seed,
            voxel=self._voxel, iterations=self.ransac_iterations, cache=self.cache,
            timer=self.timer,
        )

    def _embed(self, sample: Sample) -> tuple[np.ndarray, dict[str, tuple[np.ndarray, ...]]]:
        """(registered points, {kind: (features (M,D), anchor points (M,3) or None)})."""
        pts = self._registered(sample)
        out: dict[str, tuple[np.ndarray, np.ndarray | None]] = {}
        v = self._voxel
        for kind in self.kinds:
            with self.timer(f"features_{kind}"):
                if kind == "fpfh":
                    out[kind] = (fpfh(pts, 2 * v, 30, 5 * v, 100), None)
                elif kind == "raw":
                    out[kind] = (pts, None)
                else:
                    out[kind] = self.encoder.cloud_features(
                        pts, official_train_mode=self.pointmae_train_mode, seed=self.seed,
                        key=sample.id,
                    )
        return pts, out

    # --- fit ---------------------------------------------------------------------------------
    def fit(self, train: Iterable[Sample]) -> None:
        train = _as_list(train)
        if len(train) == 0:
            raise ContractError("Real3DPatchCore.fit: no training samples")
        first = train[0]
        self.template = centre(first.points)
        self.template_id = first.id
        self._voxel = auto_voxel(self.template, self.voxel_size)
        diag = float(np.linalg.norm(self.template.max(0) - self.template.min(0)))
        uses_voxel = self.register_clouds or "fpfh" in self.kinds
        if uses_voxel and diag < 20 * self._voxel:
            raise ConfigError(
                f"{type(self).__name__}: voxel_size={self._voxel:g} is too coarse for clouds of "
                f"diagonal {diag:.4g} (template {first.id!r}); the default 0.5 is Real3D-AD's "
                "millimetre setting: pass voxel_size='auto' or a value in the data's units"
            )
        rng = np.random.default_rng(self.seed)
        per_sample_cap = max(1, self.max_bank_candidates // len(train))
        rows: dict[str, list[np.ndarray]] = {k: [] for k in self.kinds}
        full: dict[str, list[np.ndarray]] = {k: [] for k in self.kinds}
        for sample in train:
            _, emb = self._embed(sample)
            for kind, (feats, _) in emb.items():
                if self.normalize == "train" and len(self.kinds) > 1:
                    full[kind].append(feats)
                if len(feats) > per_sample_cap:
                    feats = feats[np.sort(rng.choice(len(feats), per_sample_cap, replace=False))]
                rows[kind].append(feats)
        for kind in self.kinds:
            feats = np.concatenate(rows[kind]).astype(np.float32, copy=False)
            n = coreset_size(len(feats), size=self.memory_size)
            with self.timer(f"coreset_{kind}"):
                idx = approximate_greedy_coreset(
                    feats, n, proj_dim=self.proj_dim, n_starts=self.n_starts, seed=self.seed
                )
            self.banks[kind] = FeatureBank(feats[idx], backend=self.nn_backend)
        if self.normalize == "train" and len(self.kinds) > 1:
            for kind in self.kinds:
                obj, pts = [], []
                for feats in full[kind]:
                    d, _ = self.banks[kind].search(feats, 1, squared=True)
                    obj.append(float(d.max()))
                    pts.append((float(d.min()), float(d.max())))
                lo = min(p[0] for p in pts)
                hi = max(p[1] for p in pts)
                self.train_stats[kind] = (min(obj), max(obj), lo, hi)

    # --- predict -------------------------------------------------------------------------------
    def _raw_scores(self, sample: Sample) -> dict[str, tuple[float, np.ndarray]]:
        self.check_fitted(bool(self.banks))
        pts, emb = self._embed(sample)
        out = {}
        for kind, (feats, anchors) in emb.items():
            with self.timer(f"scoring_{kind}"):
                d, _ = self.banks[kind].search(feats, 1, squared=True)
                s = d[:, 0]
                if anchors is not None:  # group scores -> every point from its nearest centre
                    s = propagate_nearest(anchors, s, pts)
                out[kind] = (float(s.max()), s.astype(np.float32))
        return out

    def predict(self, sample: Sample) -> Prediction:
        raw = self._raw_scores(sample)
        if len(self.kinds) == 1:
            score, pts = raw[self.kinds[0]]
            return Prediction(score=score, point_scores=pts)
        if self.normalize == "test":
            raise ConfigError(
                "patchcore_fpfh_raw with normalize='test' min-max normalises over the whole test "
                "set (official behaviour): use predict_many, or normalize='train'/'none'"
            )
        return self._combine([raw])[0]

    def _combine(self, raws: list[dict[str, tuple[float, np.ndarray]]]) -> list[Prediction]:
        obj = np.zeros(len(raws))
        pts = [np.zeros(len(r[self.kinds[0]][1]), np.float32) for r in raws]
        for kind in self.kinds:
            scores = np.array([r[kind][0] for r in raws])
            if self.normalize == "test":
                o_lo, o_hi = float(scores.min()), float(scores.max())
                p_lo = min(float(r[kind][1].min()) for r in raws)
                p_hi = max(float(r[kind][1].max()) for r in raws)
            elif self.normalize == "train":
                o_lo, o_hi, p_lo, p_hi = self.train_stats[kind]
            else:
                o_lo, o_hi, p_lo, p_hi = 0.0, 1.0, 0.0, 1.0
            obj += minmax(scores, o_lo, o_hi) / len(self.kinds)
            for i, r in enumerate(raws):
                pts[i] += minmax(r[kind][1], p_lo, p_hi) / len(self.kinds)
        return [Prediction(score=float(o), point_scores=p) for o, p in zip(obj, pts)]

    def predict_many(self, samples: Iterable[Sample]) -> Iterator[Prediction]:
        if len(self.kinds) == 1 or self.normalize != "test":
            for s in samples:
                yield self.predict(s)
            return
        raws = [self._raw_scores(s) for s in samples]
        if raws:
            yield from self._combine(raws)

    def to(self, device: str) -> Real3DPatchCore:
        self.device = device
        if self.encoder is not None:
            self.encoder.to(device)
        return self


# --------------------------------------------------------------------------------------------
# official 2D PatchCore on the RGB image
# --------------------------------------------------------------------------------------------
def _resize_crop_geometry(h: int, w: int, resize: int, crop: int | None):
    """torchvision Resize(int) (shorter side -> resize, aspect kept) and CenterCrop(crop)."""
    if h <= w:
        new_h, new_w = resize, int(resize * w / h)
    else:
        new_h, new_w = int(resize * h / w), resize
    if crop is None:
        return (new_h, new_w), None
    if crop > min(new_h, new_w):
        raise ConfigError(f"crop {crop} larger than the resized image {(new_h, new_w)}")
    top = int(round((new_h - crop) / 2.0))
    left = int(round((new_w - crop) / 2.0))
    return (new_h, new_w), (top, left)


class PatchCore2D(Detector):
    """Official PatchCore (WRN-50 layers 2+3) on ``sample.rgb`` of organized datasets."""

    modalities = frozenset({"rgb"})
    learning = "one_class"

    def __init__(
        self,
        resize: int = 256,
        crop: int | None = 224,
        coreset_fraction: float = 0.1,
        proj_dim: int = 128,
        n_starts: int = 10,
        num_nn: int = 1,
        pretrain_embed_dim: int = 1024,
        target_embed_dim: int = 1024,
        patch_size: int = 3,
        sigma: float = 4.0,
        pretrained: bool = True,
        weights: str | os.PathLike | None = None,
        backbone_tag: str = "tv_in1k",
        batch_size: int = 8,
        nn_backend: str = "auto",
        seed: int = 0,
    ) -> None:
        from benchmark.components.backbones.wide_resnet import WideResNet50Features

        self.resize, self.crop = int(resize), (None if crop is None else int(crop))
        self.coreset_fraction = coreset_fraction
        self.proj_dim, self.n_starts, self.num_nn = proj_dim, n_starts, int(num_nn)
        self.pretrain_embed_dim, self.target_embed_dim = pretrain_embed_dim, target_embed_dim
        self.patch_size = patch_size
        self.sigma = sigma
        self.batch_size = batch_size
        self.nn_backend = nn_backend
        self.seed = int(seed)
        self.backbone = WideResNet50Features(
            pretrained=pretrained, weights=weights, tag=backbone_tag
        )
        self.bank: FeatureBank | None = None
        self.timer = StageTimer()

    def _image(self, sample: Sample) -> tuple[torch.Tensor, tuple[int, int], tuple | None]:
        from PIL import Image

        from benchmark.components.backbones.wide_resnet import imagenet_normalize

        if sample.rgb is None:
            raise ContractError(f"patchcore_rgb: sample {sample.id!r} has no RGB image")
        h, w = sample.rgb.shape[:2]
        (nh, nw), offset = _resize_crop_geometry(h, w, self.resize, self.crop)
        img = np.asarray(Image.fromarray(sample.rgb).resize((nw, nh), Image.BILINEAR))
        if offset is not None:
            top, left = offset
            img = img[top : top + self.crop, left : left + self.crop]
        return imagenet_normalize(np.ascontiguousarray(img)), (nh, nw), offset

    def _patchify(self, fmap: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        """(B,C,H,W) -> (B, H*W, C, p, p) neighbourhoods (unfold, padding (p-1)/2, stride 1)."""
        p = self.patch_size
        b, c, h, w = fmap.shape
        unf = F.unfold(fmap, kernel_size=p, padding=(p - 1) // 2, stride=1)
        return unf.reshape(b, c, p, p, -1).permute(0, 4, 1, 2, 3), (h, w)

    @torch.no_grad()
    def embed(self, images: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        """(B,3,H,W) -> patch features (B*h*w, target_embed_dim) and the patch grid (h, w)."""
        maps = self.backbone(images)
        feats = [self._patchify(m) for m in maps]
        (h, w) = feats[0][1]
        out = []
        for i, (f, (fh, fw)) in enumerate(feats):
            if i > 0 and (fh, fw) != (h, w):
                b, _, c, p, _ = f.shape
                x = f.reshape(b, fh, fw, c, p, p).permute(0, 3, 4, 5, 1, 2).reshape(-1, 1, fh, fw)
                x = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False)
                f = x.reshape(b, c, p, p, h, w).permute(0, 4, 5, 1, 2, 3).reshape(b, h * w, c, p, p)
            flat = f.reshape(-1, 1, f.shape[2] * f.shape[3] * f.shape[4])
            out.append(F.adaptive_avg_pool1d(flat, self.pretrain_embed_dim)[:, 0])
        stacked = torch.stack(out, dim=1).reshape(len(out[0]), 1, -1)
        return F.adaptive_avg_pool1d(stacked, self.target_embed_dim)[:, 0], (h, w)

    def fit(self, train: Iterable[Sample]) -> None:
        chunks, batch = [], []

        def flush() -> None:
            if batch:
                with self.timer("features"):
                    chunks.append(self.embed(torch.stack(batch))[0].numpy())
                batch.clear()

        for sample in train:
            batch.append(self._image(sample)[0])
            if len(batch) >= self.batch_size:
                flush()
        flush()
        if not chunks:
            raise ContractError("PatchCore2D.fit: no training samples")
        feats = np.concatenate(chunks)
        n = coreset_size(len(feats), fraction=self.coreset_fraction)
        with self.timer("coreset"):
            idx = approximate_greedy_coreset(feats, n, self.proj_dim, self.n_starts, self.seed)
        self.bank = FeatureBank(feats[idx], backend=self.nn_backend)

    def predict(self, sample: Sample) -> Prediction:
        self.check_fitted(self.bank is not None)
        img, (nh, nw), offset = self._image(sample)
        with self.timer("features"):
            feats, (h, w) = self.embed(img[None])
        with self.timer("scoring"):
            d, _ = self.bank.search(feats, self.num_nn, squared=True)
            patch = d.mean(1).reshape(h, w)
        side = img.shape[-2:]
        amap = gaussian_blur(resize_maps(patch, tuple(side), mode="bilinear"), sigma=self.sigma)
        if offset is not None:
            top, left = offset
            pads = ((top, nh - top - side[0]), (left, nw - left - side[1]))
            amap = np.pad(amap, pads, mode="edge")
        return Prediction(score=float(patch.max()), pixel_scores=amap.astype(np.float32))

    def to(self, device: str) -> PatchCore2D:
        self.device = device
        self.backbone.to(device)
        return self


# --------------------------------------------------------------------------------------------
# registration
# --------------------------------------------------------------------------------------------
_REAL3D_SMOKE = {"memory_size": 64, "ransac_iterations": 2000, "voxel_size": "auto"}
_REAL3D_COMMON = dict(
    factory=Real3DPatchCore,
    modalities=("points",),
    learning="one_class",
    outputs=("score", "point_scores"),
    provenance=REAL3D_PROVENANCE,
    datasets=("real3d", "anomaly_shapenet", "mvtec3d", "eyecandies"),
)
METHODS.register(
    "patchcore_fpfh",
    kwargs={"features": "fpfh"},
    summary="PatchCore on per-point FPFH of the registered cloud (Real3D-AD baseline)",
    smoke=_REAL3D_SMOKE,
    **_REAL3D_COMMON,
)
METHODS.register(
    "patchcore_raw",
    kwargs={"features": "raw"},
    summary="PatchCore on raw registered xyz (Reg3D-AD's global bank alone)",
    smoke=_REAL3D_SMOKE,
    **_REAL3D_COMMON,
)
METHODS.register(
    "patchcore_fpfh_raw",
    kwargs={"features": "fpfh_raw"},
    summary="PatchCore FPFH + raw xyz banks, test-set min-max normalised and averaged "
    "(Real3D-AD baseline; flagged: uses test statistics)",
    smoke=_REAL3D_SMOKE,
    **_REAL3D_COMMON,
)
METHODS.register(
    "patchcore_pointmae",
    kwargs={"features": "pointmae"},
    summary="PatchCore on Point-MAE group features, 1-NN propagated to all points "
    "(Real3D-AD baseline)",
    smoke={**_REAL3D_SMOKE, "pretrained": False, "num_group": 32, "group_size": 16},
    **_REAL3D_COMMON,
)
METHODS.register(
    "patchcore_rgb",
    factory=PatchCore2D,
    summary="Official 2D PatchCore (WRN-50 layers 2+3, 10% approximate coreset) on the RGB image",
    modalities=("rgb",),
    learning="one_class",
    outputs=("score", "pixel_scores"),
    provenance=PATCHCORE2D_PROVENANCE,
    datasets=("mvtec3d", "eyecandies"),
    smoke={"pretrained": False, "resize": 64, "crop": 56, "batch_size": 2},
)

