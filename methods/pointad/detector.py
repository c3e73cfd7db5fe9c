"""PointAD / PointAD+ / CLIP + Rendering as a benchmark `Detector`.

Scoring follows the paper's formulas (PointAD+ paper §3.6.2; PointAD = "B", PointAD+ = "A"):
- view probability P(g, f^(k)) = softmax(cos(CLS, [g_n, g_a]) / 0.07)[abnormal], averaged over
  the K views; per-view maps = the same softmax per patch, bilinearly up-sampled to the render;
- implicit point map S_a = back-projection (mean over visible views) of the abnormal maps;
- PointAD+: explicit point map T_a = softmax(cos(q^, [g^g_n, g^g_a]) / 0.07)[abnormal] on the
  G-aggregated point features; point map 0.5 S_a + 0.5 T_a;
- map A^m = G_sigma(point map), score A^s = 0.5 mean-view probability + 0.5 max(A^m);
- M3D (modality "points+rgb", organized samples with RGB): the RGB image goes through the same
  model; A^m(rgb) = G_sigma(abnormal map of the RGB image), A^s(rgb) = its global probability;
  map G_sigma(0.5 A^m + 0.5 A^m(rgb)), score 0.5 (0.5 A^s(rgb) + 0.5 A^s) + 0.5 max(map).
  ``m3d_scoring="official"`` instead reproduces PointAD's ``test.py`` (colour map
  (s_ab + 1 - s_norm) / 2 blurred, map blur((A^m + colour) / 2), score max(map) + mean of the two
  global probabilities).
G_sigma (sigma 4) runs on the 336x336 organized grid for MVTec 3D-AD / Eyecandies (as official);
for unorganized clouds the official code blurs the point list reshaped to a square
(``point_blur="reshape"``, default, reproduced) - ``"none"`` skips it.
Outputs: organized samples get ``pixel_scores`` (the grid map) and ``point_scores`` (each native
point reads its grid cell); unorganized samples get ``point_scores`` (nearest rendered point when
the cloud was resampled).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from benchmark.cache import atomic_write_bytes
from benchmark.components.blur import gaussian_blur
from benchmark.components.geometry.organized import resize_maps
from benchmark.components.geometry.pointops import propagate_nearest
from benchmark.components.render import multiview as rd
from benchmark.detector import Detector
from benchmark.errors import ConfigError, ContractError
from benchmark.sample import Prediction, Sample
from benchmark.seeding import seed_everything
from methods.pointad.data import Cloud, RenderSettings, prepare_cloud
from methods.pointad.engine import PointADEngine
from methods.pointad.losses import TEMPERATURE
from methods.pointad.trainer import make_aggregator, train_prompts

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "benchmark3dad-pointad-prompts-1"


class PointADDetector(Detector):
    """Zero-shot 3D anomaly detection with CLIP on multi-view renders (PointAD / PointAD+)."""

    learning = "zero_shot"

    def __init__(
        self,
        variant: str = "pointad",
        prompt_style: str = "agnostic",
        modality: str = "points",
        clip_model: str = "ViT-L-14-336",
        pretrained: str | bool = "openai",
        image_size: int | None = None,
        n_ctx: int = 12,
        prompt_depth: int = 9,
        t_n_ctx: int = 4,
        dpam_layers: int = 19,
        patch_layer: int | None = None,
        use_dpam: bool = True,
        epochs: int = 15,
        batch_size: int = 4,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.5, 0.999),
        seed: int = 111,
        k: int = 10,
        sigma: float = 1.0,
        alpha: float = 0.5,
        blur_sigma: float = 4.0,
        point_blur: str = "reshape",
        m3d_scoring: str = "paper",
        grid_size: int | None = 336,
        num_points: int | None = 336 * 336,
        view_recipe: str = "auto",
        render_backend: str = "torch",
        max_views: int | None = None,
        render_window: int | None = None,
        gt_masks: str = "render",
        device: str = "cpu",
        precision: str = "fp32",
        checkpoint: str | None = None,
        save_checkpoint: str | None = None,
    ) -> None:
        if variant not in ("pointad", "pointad_plus"):
            raise ConfigError(f"variant must be 'pointad' or 'pointad_plus', got {variant!r}")
        if modality not in ("points", "points+rgb"):
            raise ConfigError(f"modality must be 'points' or 'points+rgb', got {modality!r}")
        if point_blur not in ("reshape", "none"):
            raise ConfigError(f"point_blur must be 'reshape' or 'none', got {point_blur!r}")
        if m3d_scoring not in ("paper", "official"):
            raise ConfigError(f"m3d_scoring must be 'paper' or 'official', got {m3d_scoring!r}")
        if gt_masks not in ("render", "points"):
            raise ConfigError(f"gt_masks must be 'render' or 'points', got {gt_masks!r}")
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise ConfigError(f"device {device!r} requested but CUDA is not available")
        self.variant, self.prompt_style, self.modality = variant, prompt_style, modality
        self.modalities = frozenset({"points", "rgb"} if modality == "points+rgb" else {"points"})
        self.clip_model, self.pretrained, self.image_size = clip_model, pretrained, image_size
        self.n_ctx, self.prompt_depth, self.t_n_ctx = n_ctx, prompt_depth, t_n_ctx
        self.dpam_layers, self.patch_layer, self.use_dpam = dpam_layers, patch_layer, use_dpam
        self.epochs, self.batch_size, self.lr, self.betas = epochs, batch_size, lr, tuple(betas)
        self.seed, self.k, self.sigma, self.alpha = seed, k, sigma, alpha
        self.blur_sigma, self.point_blur, self.m3d_scoring = blur_sigma, point_blur, m3d_scoring
        self.grid_size, self.num_points = grid_size, num_points
        self.view_recipe, self.render_backend = view_recipe, render_backend
        self.max_views = max_views
        self.gt_masks, self.render_window = gt_masks, render_window
        self.device, self.precision = device, precision
        self.checkpoint, self.save_checkpoint = checkpoint, save_checkpoint
        self.engine: PointADEngine | None = None
        self.trained = False
        self.history: list[dict] = []
        self._texts: dict[str, tuple[torch.Tensor, torch.Tensor | None]] = {}

    # ------------------------------------------------------------------------------------------
    # setup

    @property
    def plus(self) -> bool:
        return self.variant == "pointad_plus"

    def _build(self) -> PointADEngine:
        if self.engine is None:
            seed_everything(self.seed)  # fixes a random CLIP initialisation (pretrained=False)
            self.engine = PointADEngine(
                self.clip_model, self.pretrained, self.prompt_style, geometry=self.plus,
                n_ctx=self.n_ctx, prompt_depth=self.prompt_depth, t_n_ctx=self.t_n_ctx,
                dpam_layers=self.dpam_layers, patch_layer=self.patch_layer,
                use_dpam=self.use_dpam, image_size=self.image_size, device=self.device,
                precision=self.precision, seed=self.seed,
            )
        return self.engine

    def _settings(self) -> RenderSettings:
        return RenderSettings(
            image_size=self._build().image_size, grid_size=self.grid_size,
            num_points=self.num_points, recipe=self.view_recipe, backend=self.render_backend,
            max_views=self.max_views, window=self.render_window, gt_masks=self.gt_masks,
            seed=self.seed,
        )

    def to(self, device: str) -> PointADDetector:
        self.device = device
        if self.engine is not None:
            self.engine.to(device)
            self.engine.device = torch.device(device)
        self._texts.clear()
        return self

    # ------------------------------------------------------------------------------------------
    # training and checkpoints

    def fit(self, train: Iterable[Sample]) -> None:
        seed_everything(self.seed)
        engine = self._build()
        self._texts.clear()
        if not engine.learnable:  # CLIP + Rendering: nothing to learn
            self.trained = True
            return
        if self.checkpoint:
            self.load(self.checkpoint)
            return
        settings = self._settings()
        clouds = [_slim(prepare_cloud(s, settings, with_gt=True)) for s in train]
        if not clouds:
            raise ConfigError("PointAD fit() got no training samples")
        self.history = train_prompts(
            engine, clouds, epochs=self.epochs, batch_size=self.batch_size, lr=self.lr,
            betas=self.betas, seed=self.seed, k=self.k, sigma=self.sigma, alpha=self.alpha,
        )
        self.trained = True
        self._texts.clear()
        if self.save_checkpoint:
            self.save(self.save_checkpoint)

    def save(self, path: str | Path) -> None:
        """Writes the learned prompts (and what they fit) to `path` (torch.save, atomic)."""
        import io

        engine = self._build()
        payload = {
            "format": CHECKPOINT_FORMAT, "variant": self.variant,
            "prompt_style": self.prompt_style, "clip_model": self.clip_model,
            "n_ctx": self.n_ctx, "prompt_depth": self.prompt_depth, "t_n_ctx": self.t_n_ctx,
            "state": engine.prompt_state(), "history": self.history,
        }
        buf = io.BytesIO()
        torch.save(payload, buf)
        atomic_write_bytes(path, buf.getvalue())

    def load(self, path: str | Path) -> None:
        """Loads prompts saved by `save`, or an official PointAD checkpoint ({"prompt_learner"})."""
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"prompt checkpoint {path} does not exist")
        payload = torch.load(path, map_location="cpu", weights_only=True)
        engine = self._build()
        if isinstance(payload, dict) and payload.get("format") == CHECKPOINT_FORMAT:
            keys = ("variant", "prompt_style", "clip_model", "n_ctx", "prompt_depth", "t_n_ctx")
            for key in keys:
                if payload[key] != getattr(self, key):
                    raise ConfigError(
                        f"prompt checkpoint {path}: {key}={payload[key]!r}, this detector has "
                        f"{getattr(self, key)!r}"
                    )
            engine.load_prompt_state(payload["state"])
            self.history = list(payload.get("history", []))
        elif isinstance(payload, dict) and "prompt_learner" in payload:
            if self.plus:
                raise ConfigError(f"{path} is an official PointAD checkpoint: no geometry prompts")
            engine.render_prompts.load_official(payload["prompt_learner"])
        else:
            raise ConfigError(f"{path} is not a PointAD prompt checkpoint")
        engine.to(engine.device)
        self.trained = True
        self._texts.clear()

    # ------------------------------------------------------------------------------------------
    # inference

    def _text(self, category: str) -> tuple[torch.Tensor, torch.Tensor | None]:
        key = category if self.prompt_style != "agnostic" else ""
        if key not in self._texts:
            engine = self._build()
            with torch.no_grad():
                g_r = engine.text_features(category)
                g_g = engine.text_features(category, geometry=True) if self.plus else None
            self._texts[key] = (g_r, g_g)
        return self._texts[key]

    def predict(self, sample: Sample) -> Prediction:
        if not self.trained and self.checkpoint:
            self.load(self.checkpoint)
        self.check_fitted(self.trained)  # fit() on auxiliary data, or checkpoint=
        engine = self._build()
        if self.modality == "points+rgb" and (not sample.organized or sample.rgb is None):
            raise ContractError(
                f"sample {sample.id!r}: modality 'points+rgb' needs an organized sample with rgb"
            )
        cloud = prepare_cloud(sample, self._settings(), with_gt=False)
        g_r, g_g = self._text(sample.category)
        with torch.no_grad():
            gfeat, pfeat = engine.encode_views(cloud.render.images)
            view_prob = float(engine.global_logits(gfeat, g_r).softmax(-1)[:, 1].mean())
            maps = engine.similarity_maps(pfeat, g_r)[:, 1].cpu().numpy()
            point_map = rd.backproject(cloud.render, maps).astype(np.float32)
            if self.plus:
                agg = make_aggregator(engine, cloud, self.k, self.sigma, self.alpha)
                cos = agg.explicit_logits(pfeat, g_g)
                explicit = (cos / TEMPERATURE).softmax(-1)[:, 1].cpu().numpy()
                point_map = 0.5 * point_map + 0.5 * explicit
        if cloud.grid_hw is not None:
            return self._organized_prediction(sample, cloud, point_map, view_prob, g_r)
        return self._unorganized_prediction(sample, cloud, point_map, view_prob)

    def _organized_prediction(self, sample: Sample, cloud: Cloud, point_map: np.ndarray,
                              view_prob: float, g_r: torch.Tensor) -> Prediction:
        h, w = cloud.grid_hw
        grid = np.zeros(h * w, np.float32)
        grid[cloud.cells] = point_map
        a_m = gaussian_blur(grid.reshape(h, w), self.blur_sigma)
        a_s = 0.5 * view_prob + 0.5 * float(a_m.max())
        final_map, score = a_m, a_s
        if self.modality == "points+rgb":
            rgb_prob, rgb_maps = self._rgb(sample.rgb, g_r, (h, w))
            if self.m3d_scoring == "paper":
                rgb_map = gaussian_blur(rgb_maps[1], self.blur_sigma)
                final_map = gaussian_blur(0.5 * a_m + 0.5 * rgb_map, self.blur_sigma)
                score = 0.5 * (0.5 * rgb_prob + 0.5 * a_s) + 0.5 * float(final_map.max())
            else:
                colour = gaussian_blur((rgb_maps[1] + 1.0 - rgb_maps[0]) / 2.0, self.blur_sigma)
                final_map = gaussian_blur((a_m + colour) / 2.0, self.blur_sigma)
                score = float(final_map.max()) + 0.5 * (rgb_prob + view_prob)
        point_scores = final_map.reshape(-1)[cloud.native_cells]
        return Prediction(score=score, point_scores=point_scores.astype(np.float32),
                          pixel_scores=final_map.astype(np.float32))

    def _unorganized_prediction(self, sample: Sample, cloud: Cloud, point_map: np.ndarray,
                                view_prob: float) -> Prediction:
        if self.point_blur == "reshape":
            # official test_only_point.py: the point list reshaped to a square and blurred
            n = len(point_map)
            side = math.ceil(math.sqrt(n))
            sq = np.zeros(side * side, np.float32)
            sq[:n] = point_map
            point_map = gaussian_blur(sq.reshape(side, side), self.blur_sigma).reshape(-1)[:n]
        score = 0.5 * view_prob + 0.5 * float(point_map.max())
        if cloud.resampled:
            point_map = propagate_nearest(cloud.points, point_map, sample.points)
        return Prediction(score=score, point_scores=np.asarray(point_map, dtype=np.float32))

    def _rgb(self, rgb: np.ndarray, g_r: torch.Tensor,
             grid_hw: tuple[int, int]) -> tuple[float, np.ndarray]:
        """Global abnormal probability and [normal, abnormal] maps (2,h,w) of the RGB image."""
        engine = self._build()
        size = engine.image_size
        img = np.asarray(Image.fromarray(rgb).resize((size, size), Image.BICUBIC))
        with torch.no_grad():
            gfeat, pfeat = engine.encode_views(img[None])
            prob = float(engine.global_logits(gfeat, g_r).softmax(-1)[0, 1])
            maps = engine.similarity_maps(pfeat, g_r)[0].cpu().numpy()
        if maps.shape[1:] != tuple(grid_hw):
            maps = resize_maps(maps, grid_hw, "bilinear")
        return prob, np.asarray(maps, dtype=np.float32)

    def describe(self) -> dict[str, Any]:
        return {"variant": self.variant, "prompt_style": self.prompt_style,
                "modality": self.modality, "trained": self.trained, "history": self.history}


def _slim(cloud: Cloud) -> Cloud:
    """Drops render arrays training does not read (depth, pixel_index) to bound memory."""
    r = cloud.render
    r.depth = np.zeros((0,), np.float32)
    r.pixel_index = np.zeros((0,), np.int64)
    return cloud
