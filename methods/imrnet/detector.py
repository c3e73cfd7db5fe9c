"""The IMRNet detector: fit = fine-tune Point-MAE on the normal clouds + store the feature
template; predict = GPS patches, Algorithm 1, DFC scores. See methods/imrnet/__init__.py."""

from __future__ import annotations

import os
import zlib
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch

from benchmark.components.backbones.pointmae_mae import (
    build_pointmae,
    chamfer_l2,
    train_masked_reconstruction,
)
from benchmark.components.geometry.pointops import group_knn, propagate_nearest
from benchmark.components.geometry.sampling import SAMPLERS, sample_centers
from benchmark.detector import Detector
from benchmark.errors import ConfigError, ContractError
from benchmark.sample import Prediction, Sample
from benchmark.timing import StageTimer
from methods.imrnet.scoring import (
    MASK_SCHEDULES,
    iteration_masks,
    iterative_reconstruction,
    patches_to_points,
    point_to_patch_distances,
    point_values_to_points,
    regularize,
)

OBJECT_REDUCTIONS = ("max", "mean")


@dataclass
class _Patches:
    """One cloud prepared for the network."""

    points: np.ndarray  # (n,3) model input (normalised, sub-sampled)
    sub_idx: np.ndarray | None  # indices of `points` in the full cloud (None = all points)
    centers: np.ndarray  # (G,3)
    group_idx: np.ndarray  # (G,K) into `points`
    neighborhood: torch.Tensor  # (G,K,3) relative to the centres


@dataclass
class _Scores:
    """Raw per-patch and per-point scores of one cloud."""

    patch_p: np.ndarray
    patch_f: np.ndarray
    points_p: np.ndarray  # on the model input points
    points_f: np.ndarray
    f_out_dist: np.ndarray  # distances of the reconstructed features to the template
    replaced: np.ndarray


def _seed(seed: int, key: str, salt: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), zlib.crc32(key.encode()), salt])


class IMRNet(Detector):
    """IMRNet (see the package docstring for the recipe and every guessed value)."""

    name = "imrnet"
    modalities = frozenset({"points"})
    learning = "one_class"

    def __init__(
        self,
        num_group: int = 256,
        group_size: int = 64,
        sampler: str = "gps",
        gps_tau: float = 0.3,
        gps_density_ratio: float = 2.0,
        gps_radius: float | str = "auto",
        gps_max_nn: int = 32,
        mask_ratio: float = 0.4,
        iterations: int = 3,
        mask_schedule: str = "cover",
        feature_layers: tuple[int, ...] = (1, 2, 3),
        template: str = "first",
        template_threshold: float | str = "auto",
        template_quantile: float = 0.95,
        input_points: int | None = 8192,
        finetune_epochs: int = 100,
        finetune_lr: float = 1e-4,
        finetune_batch_size: int = 4,
        finetune_weight_decay: float = 0.05,
        finetune_warmup_epochs: int = 5,
        finetune_mask_ratio: float | None = None,
        finetune_augment: bool = True,
        object_reduction: str = "max",
        point_chamfer: str = "patch",
        pretrained: bool | str | os.PathLike = True,
        weights: str | os.PathLike | None = None,
        adapt_head: bool = True,
        trans_dim: int = 384,
        depth: int = 12,
        decoder_depth: int = 4,
        num_heads: int = 6,
        encoder_widths: tuple[int, int, int] = (128, 256, 512),
        seed: int = 0,
        device: str = "cpu",
    ) -> None:
        if sampler not in SAMPLERS:
            raise ConfigError(f"imrnet: sampler {sampler!r} not in {SAMPLERS}")
        if mask_schedule not in MASK_SCHEDULES:
            raise ConfigError(f"imrnet: mask_schedule {mask_schedule!r} not in {MASK_SCHEDULES}")
        if template not in ("first", "all"):
            raise ConfigError(f"imrnet: template must be 'first' or 'all', got {template!r}")
        if object_reduction not in OBJECT_REDUCTIONS:
            raise ConfigError(f"imrnet: object_reduction {object_reduction!r} not in "
                              f"{OBJECT_REDUCTIONS}")  # fmt: skip
        if min(num_group, group_size, iterations) < 1 or finetune_epochs < 0:
            raise ConfigError("imrnet: num_group, group_size, iterations must be >= 1 and "
                              "finetune_epochs >= 0")  # fmt: skip
        if not 0.0 < mask_ratio < 1.0:
            raise ConfigError(f"imrnet: mask_ratio {mask_ratio} must lie in (0, 1)")
        if template_threshold != "auto" and not (
            isinstance(template_threshold, (int, float)) and template_threshold >= 0
        ):
            raise ConfigError(f"imrnet: template_threshold must be >= 0 or 'auto', "
                              f"got {template_threshold!r}")  # fmt: skip
        self.num_group, self.group_size = int(num_group), int(group_size)
        self.sampler = sampler
        self.gps_options = {"tau": gps_tau, "density_ratio": gps_density_ratio,
                            "radius": gps_radius, "max_nn": gps_max_nn}  # fmt: skip
        self.mask_ratio, self.iterations = mask_ratio, int(iterations)
        self.mask_schedule = mask_schedule
        self.feature_layers = tuple(int(x) for x in feature_layers)
        if max(self.feature_layers) > decoder_depth:
            raise ConfigError(f"imrnet: feature_layers {self.feature_layers} exceed the decoder "
                              f"depth {decoder_depth}")  # fmt: skip
        self.template_mode = template
        self.template_threshold = template_threshold
        self.template_quantile = float(template_quantile)
        self.input_points = None if input_points is None else int(input_points)
        self.finetune = {
            "epochs": int(finetune_epochs), "lr": float(finetune_lr),
            "batch_size": int(finetune_batch_size), "weight_decay": float(finetune_weight_decay),
            "warmup_epochs": int(finetune_warmup_epochs),
            "mask_ratio": float(mask_ratio if finetune_mask_ratio is None else finetune_mask_ratio),
            "augment": bool(finetune_augment),
        }  # fmt: skip
        self.object_reduction = object_reduction
        if point_chamfer not in ("point", "patch"):
            raise ConfigError(f"imrnet: point_chamfer must be 'point' or 'patch', "
                              f"got {point_chamfer!r}")  # fmt: skip
        self.point_chamfer = point_chamfer
        self.seed = int(seed)
        self.timer = StageTimer()
        shape = {"group_size": group_size, "trans_dim": trans_dim, "depth": depth,
                 "decoder_depth": decoder_depth, "num_heads": num_heads,
                 "encoder_widths": tuple(encoder_widths)}  # fmt: skip
        with torch.random.fork_rng():
            torch.manual_seed(self.seed)
            self.model, self.weights_path, self.weights_notes = build_pointmae(
                pretrained, weights, adapt_head=adapt_head, **shape
            )
        self.model.eval()
        # fit always starts from these weights (a second fit must not continue the first one)
        self._initial_state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        self.device = "cpu"
        self.to(device)
        self.scale: float | None = None
        self.template_features: torch.Tensor | None = None
        self.threshold: float | None = None
        self.score_scale: tuple[float, float] = (1.0, 1.0)
        self.finetune_losses: list[float] = []

    def to(self, device: str) -> IMRNet:
        self.device = device
        self.model.to(device)
        return self

    # --- preparation ---------------------------------------------------------------------------

    def _prepare(self, sample: Sample) -> _Patches:
        """Centre, scale by the training radius, sub-sample to `input_points`, centres by the
        configured sampler, the k nearest points of each centre."""
        with self.timer("sampling"):
            pts = sample.points.astype(np.float64)
            pts = ((pts - pts.mean(0)) / self.scale).astype(np.float32)
            rng = _seed(self.seed, sample.id, 1)
            sub_idx = None
            if self.input_points is not None and len(pts) > self.input_points:
                sub_idx = np.sort(rng.choice(len(pts), self.input_points, replace=False))
            elif len(pts) < self.group_size:  # too few points for one patch: repeat some
                sub_idx = np.sort(rng.choice(len(pts), self.group_size, replace=True))
            model_pts = pts if sub_idx is None else pts[sub_idx]
            g = min(self.num_group, len(model_pts))
            if self.sampler == "gps":
                c_idx = sample_centers(model_pts, g, "gps", **self.gps_options)
            else:
                c_idx = sample_centers(model_pts, g, self.sampler, seed=int(rng.integers(2**31)))
            centers = model_pts[c_idx]
            group_idx = np.asarray(group_knn(model_pts, centers, self.group_size))
            nb = torch.from_numpy(model_pts[group_idx] - centers[:, None])
        return _Patches(model_pts, sub_idx, centers, group_idx, nb)

    def _features(self, neighborhood: torch.Tensor, centers: torch.Tensor) -> torch.Tensor:
        return self.model.decoder_features(neighborhood[None], centers[None],
                                           self.feature_layers)[0]  # fmt: skip

    @torch.no_grad()
    def _reconstruct(self, sample: Sample, p: _Patches) -> tuple:
        """Algorithm 1 on one cloud, then the decoder features of input and reconstruction:
        (relative input patches, reconstructed patches, centres, F_i, F_o)."""
        dev = self.device
        nb, ctr = p.neighborhood.to(dev), torch.from_numpy(p.centers).to(dev)
        masks = iteration_masks(len(ctr), self.mask_ratio, self.iterations,
                                _seed(self.seed, sample.id, 2), self.mask_schedule)  # fmt: skip
        with self.timer("reconstruction"):
            out = iterative_reconstruction(self.model, nb, ctr, masks)
        with self.timer("features"):
            f_in = self._features(nb, ctr)
            f_out = self._features(out, ctr)
        return nb, out, ctr, f_in, f_out

    @torch.no_grad()
    def _score(self, p: _Patches, rec: tuple) -> _Scores:
        """DFC: template regularisation of F_o, A_f and A_p per patch, then per point."""
        nb, out, _, f_in, f_out = rec
        with self.timer("scoring"):
            f_reg, dist, replaced = regularize(f_out, self.template_features, self.threshold)
            a_f = (f_in - f_reg).norm(dim=1).cpu().numpy().astype(np.float64)
            a_p = chamfer_l2(nb, out).cpu().numpy().astype(np.float64)
            if self.point_chamfer == "point":
                per = point_to_patch_distances(nb, out).cpu().numpy().astype(np.float64)
                pts_p = point_values_to_points(per, p.group_idx, p.centers, p.points)
            else:
                pts_p = patches_to_points(a_p, p.group_idx, p.centers, p.points)
            pts_f = patches_to_points(a_f, p.group_idx, p.centers, p.points)
        return _Scores(a_p, a_f, pts_p, pts_f, dist.cpu().numpy(), replaced.cpu().numpy())

    def _raw(self, sample: Sample, patches: _Patches | None = None) -> _Scores:
        """Algorithm 1 + DFC on one cloud (scores before fusion)."""
        p = patches or self._prepare(sample)
        return self._score(p, self._reconstruct(sample, p))

    # --- fit -----------------------------------------------------------------------------------

    def fit(self, train: Iterable[Sample]) -> None:
        samples = list(train)
        if not samples:
            raise ContractError("imrnet.fit: no training samples")
        radii = []
        for s in samples:
            c = s.points.astype(np.float64) - s.points.mean(0, dtype=np.float64)
            radii.append(float(np.sqrt((c**2).sum(1)).max()))
        self.scale = max(float(np.mean(radii)), 1e-12)
        self.model.load_state_dict(self._initial_state)
        prepared = [self._prepare(s) for s in samples]
        ft = self.finetune
        if ft["epochs"] > 0:
            with self.timer("finetune"):
                self._finetune(prepared, ft)
        self.model.eval()
        with torch.no_grad():
            first = prepared[0]
            chosen = prepared if self.template_mode == "all" else [first]
            self.template_features = torch.cat([
                self._features(p.neighborhood.to(self.device),
                               torch.from_numpy(p.centers).to(self.device))
                for p in chosen
            ])  # fmt: skip
        # threshold and score scales from the training clouds (the template cloud excluded
        # when there are others)
        others = list(zip(samples, prepared))[1 if len(samples) > 1 else 0 :]
        recs = [(p, self._reconstruct(s, p)) for s, p in others]
        if self.template_threshold == "auto":
            with torch.no_grad():
                dists = torch.cat([
                    regularize(r[4], self.template_features, float("inf"))[1] for _, r in recs
                ]).cpu().numpy()  # fmt: skip
            self.threshold = float(np.quantile(dists, self.template_quantile))
        else:
            self.threshold = float(self.template_threshold)
        raws = [self._score(p, r) for p, r in recs]
        mean_p = float(np.mean(np.concatenate([r.points_p for r in raws])))
        mean_f = float(np.mean(np.concatenate([r.points_f for r in raws])))
        self.score_scale = (max(mean_p, 1e-12), max(mean_f, 1e-12))

    def _finetune(self, prepared: list[_Patches], ft: dict) -> None:
        bs = max(1, ft["batch_size"])

        def batches(epoch: int, rng: np.random.Generator) -> list:
            order = rng.permutation(len(prepared))
            out = []
            for s in range(0, len(order), bs):
                chunk = [prepared[i] for i in order[s : s + bs]]
                out.append((torch.stack([p.neighborhood for p in chunk]),
                            torch.stack([torch.from_numpy(p.centers) for p in chunk])))  # fmt: skip
            return out

        with torch.random.fork_rng():
            self.finetune_losses = train_masked_reconstruction(
                self.model, batches, epochs=ft["epochs"], lr=ft["lr"],
                weight_decay=ft["weight_decay"], warmup_epochs=ft["warmup_epochs"],
                mask_ratio=ft["mask_ratio"], augment=ft["augment"], seed=self.seed,
                device=self.device,
            )  # fmt: skip

    # --- predict -------------------------------------------------------------------------------

    def predict(self, sample: Sample) -> Prediction:
        if self.template_features is None or self.scale is None:
            raise ContractError(f"{self.name}: predict called before fit")
        patches = self._prepare(sample)
        raw = self._raw(sample, patches)
        fused = raw.points_p / self.score_scale[0] + raw.points_f / self.score_scale[1]
        if patches.sub_idx is not None:
            full = (sample.points.astype(np.float64) - sample.points.mean(0)) / self.scale
            fused = propagate_nearest(patches.points, fused, full.astype(np.float32))
        fused = np.asarray(fused, dtype=np.float32)
        score = float(fused.max() if self.object_reduction == "max" else fused.mean())
        return Prediction(score=score, point_scores=fused)
