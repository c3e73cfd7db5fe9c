"""The PointAD model proper: frozen CLIP + learnable prompts, and the per-view computations.

It knows nothing about datasets or rendering: images in, features, similarities and maps out.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from benchmark.errors import ConfigError
from methods.pointad.clip_dpam import (
    encode_image_dpam,
    grid_size_of,
    image_size_of,
    load_clip,
    normalize_images,
    tokenizer_for,
)
from methods.pointad.losses import TEMPERATURE
from methods.pointad.prompts import GEOMETRY_WORDS, RENDERING_WORDS, HandPrompts, PromptPair


class PointADEngine(nn.Module):
    """CLIP (frozen) plus the rendering prompts and, for PointAD+, the geometry prompts.

    prompt_style: "agnostic" (object-agnostic learnable), "coop" (class-name learnable) or
    "hand" (fixed CLIP prompts, nothing learnable: the CLIP + Rendering baseline).
    """

    def __init__(self, clip_model: str = "ViT-L-14-336", pretrained: str | bool = "openai",
                 prompt_style: str = "agnostic", geometry: bool = False, n_ctx: int = 12,
                 prompt_depth: int = 9, t_n_ctx: int = 4, dpam_layers: int = 19,
                 patch_layer: int | None = None, use_dpam: bool = True,
                 image_size: int | None = None, device: str = "cpu", precision: str = "fp32",
                 seed: int = 111) -> None:
        super().__init__()
        if prompt_style not in ("agnostic", "coop", "hand"):
            raise ConfigError(f"prompt_style must be agnostic, coop or hand, got {prompt_style!r}")
        if geometry and prompt_style == "hand":
            raise ConfigError("geometry prompts need learnable prompts (agnostic or coop)")
        self.device = torch.device(device)
        self.clip = load_clip(clip_model, pretrained, image_size=image_size, device=device,
                              precision=precision)
        self.tokenizer = tokenizer_for(clip_model)
        self.image_size = image_size_of(self.clip)
        self.grid_hw = grid_size_of(self.clip)
        self.dpam_layers, self.patch_layer, self.use_dpam = dpam_layers, patch_layer, use_dpam
        self.prompt_style = prompt_style
        width = self.clip.token_embedding.weight.shape[1]
        gen = torch.Generator().manual_seed(seed)
        coop = prompt_style == "coop"
        if prompt_style == "hand":
            self.render_prompts: nn.Module = HandPrompts()
            self.geometry_prompts: nn.Module | None = None
        else:
            self.render_prompts = PromptPair(width, n_ctx, prompt_depth, t_n_ctx,
                                             RENDERING_WORDS, coop, gen)
            self.geometry_prompts = (PromptPair(width, n_ctx, prompt_depth, t_n_ctx,
                                                GEOMETRY_WORDS, coop, gen) if geometry else None)
        self.render_prompts.to(self.device)
        if self.geometry_prompts is not None:
            self.geometry_prompts.to(self.device)

    @property
    def learnable(self) -> bool:
        return any(p.requires_grad for p in self.prompt_parameters())

    def prompt_parameters(self) -> list[nn.Parameter]:
        mods = [self.render_prompts, self.geometry_prompts]
        return [p for m in mods if m is not None for p in m.parameters()]

    def prompt_state(self) -> dict[str, dict[str, torch.Tensor]]:
        state = {
            "render": {k: v.detach().cpu() for k, v in self.render_prompts.state_dict().items()}
        }
        if self.geometry_prompts is not None:
            state["geometry"] = {
                k: v.detach().cpu() for k, v in self.geometry_prompts.state_dict().items()
            }
        return state

    def load_prompt_state(self, state: dict[str, dict[str, torch.Tensor]]) -> None:
        self.render_prompts.load_state_dict(state["render"])
        if self.geometry_prompts is not None:
            if "geometry" not in state:
                raise ConfigError("the prompt checkpoint has no geometry prompts (PointAD+ needs)")
            self.geometry_prompts.load_state_dict(state["geometry"])

    def text_features(self, category: str | None, geometry: bool = False) -> torch.Tensor:
        """(2,E) normalised [normal, abnormal] embeddings of the rendering / geometry prompts."""
        mod = self.geometry_prompts if geometry else self.render_prompts
        if mod is None:
            raise ConfigError("this model has no geometry prompts")
        return mod(self.clip, self.tokenizer, category)

    @torch.no_grad()
    def encode_views(self, images: np.ndarray | torch.Tensor,
                     chunk: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
        """uint8 (V,H,W,3) -> normalised global (V,E) and patch (V,h*w,E) features (fp32)."""
        imgs = images if torch.is_tensor(images) else torch.from_numpy(np.array(images, np.uint8))
        if imgs.shape[1] != self.image_size or imgs.shape[2] != self.image_size:
            raise ConfigError(
                f"images are {tuple(imgs.shape[1:3])}, the CLIP model expects {self.image_size}"
            )
        gl, pa = [], []
        for s in range(0, imgs.shape[0], chunk):
            x = normalize_images(imgs[s : s + chunk].to(self.device))
            g, p = encode_image_dpam(self.clip, x, self.dpam_layers, self.patch_layer,
                                     self.use_dpam)
            gl.append(F.normalize(g.float(), dim=-1))
            pa.append(F.normalize(p.float(), dim=-1))
        return torch.cat(gl), torch.cat(pa)

    @staticmethod
    def global_logits(global_feats: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """cos / 0.07 between image embeddings (B,E) and [normal, abnormal] text (2,E): (B,2)."""
        return global_feats @ text.T / TEMPERATURE

    def similarity_maps(self, patch_feats: torch.Tensor, text: torch.Tensor,
                        out_size: int | None = None) -> torch.Tensor:
        """Per-patch softmax over [normal, abnormal] of cos/0.07, bilinear up-sampled: (B,2,H,W)."""
        b = patch_feats.shape[0]
        h, w = self.grid_hw
        probs = (patch_feats @ text.T / TEMPERATURE).softmax(-1)  # (B,h*w,2)
        probs = probs.transpose(1, 2).reshape(b, 2, h, w)
        size = out_size or self.image_size
        return F.interpolate(probs, size=(size, size), mode="bilinear", align_corners=False)
