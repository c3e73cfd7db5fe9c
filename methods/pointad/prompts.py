"""Learnable text prompts (AnomalyCLIP-style object-agnostic prompts, CoOp variants, hand prompts).

Provenance: PointAD's prompt learner as described in specs/methods.md §1.3 (object-agnostic,
``n_ctx=12`` context tokens initialised N(0, 0.02), built by tokenising "X X ... X object." and
replacing the X embeddings; deep text prompts ``depth=9`` -> 8 tensors of ``t_n_ctx=4`` tokens,
N(0, 0.02), shared by the normal and the abnormal prompt). PointAD+ (paper §3.5, no code) adds a
second, "geometry" prompt pair "[V..] point cloud." / "[W..] damaged point cloud." that is a
separate `PromptPair` with its own context and deep tokens (GUESS: the paper does not say whether
the geometry prompts have their own deep tokens). CoOp variants replace "object" / "point cloud"
with the class name. The CLIP + Rendering baseline uses the fixed hand prompts
"A photo of a normal [cls]." / "A photo of an anomalous [cls]." (no learnable parameters).
"""

from __future__ import annotations

import torch
from torch import nn

from methods.pointad.clip_dpam import encode_text_embeddings

RENDERING_WORDS = ("object", "damaged object")
GEOMETRY_WORDS = ("point cloud", "damaged point cloud")
HAND_TEMPLATES = ("A photo of a normal {}.", "A photo of an anomalous {}.")


def class_phrase(category: str) -> str:
    """'cable_gland' -> 'cable gland' (CoOp / hand prompts use the class name)."""
    return category.replace("_", " ").strip()


class PromptPair(nn.Module):
    """A learnable normal/abnormal prompt pair plus its deep text tokens.

    ``words`` are the fixed words after the context: ("object", "damaged object") or a class
    name pair; CoOp prompts pass ``class_words=True`` and get the words per class at encode time.
    """

    def __init__(
        self,
        width: int,
        n_ctx: int = 12,
        depth: int = 9,
        t_n_ctx: int = 4,
        words: tuple[str, str] = RENDERING_WORDS,
        class_words: bool = False,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        self.n_ctx, self.depth, self.t_n_ctx = n_ctx, depth, t_n_ctx
        self.words = words
        self.class_words = class_words
        self.ctx_normal = nn.Parameter(torch.randn(n_ctx, width, generator=generator) * 0.02)
        self.ctx_abnormal = nn.Parameter(torch.randn(n_ctx, width, generator=generator) * 0.02)
        n_deep = max(0, depth - 1)
        self.deep = nn.Parameter(torch.randn(n_deep, t_n_ctx, width, generator=generator) * 0.02)

    def texts(self, category: str | None) -> list[str]:
        normal, abnormal = self.words
        if self.class_words:
            if not category:
                raise ValueError("CoOp prompts need the class name")
            name = class_phrase(category)
            normal, abnormal = name, f"damaged {name}"
        prefix = " ".join(["X"] * self.n_ctx)
        return [f"{prefix} {normal}.", f"{prefix} {abnormal}."]

    def forward(self, model: nn.Module, tokenizer, category: str | None = None) -> torch.Tensor:
        """L2-normalised text features (2, E): row 0 normal, row 1 abnormal."""
        device = self.ctx_normal.device
        tokens = tokenizer(self.texts(category)).to(device)
        with torch.no_grad():
            emb = model.token_embedding(tokens)
        ctx = torch.stack([self.ctx_normal, self.ctx_abnormal]).to(emb.dtype)
        emb = torch.cat([emb[:, :1], ctx, emb[:, 1 + self.n_ctx :]], dim=1)
        deep = self.deep if self.deep.shape[0] else None
        feats = encode_text_embeddings(model, emb, tokens.argmax(dim=-1), deep).float()
        return feats / feats.norm(dim=-1, keepdim=True)

    def load_official(self, state: dict[str, torch.Tensor]) -> None:
        """Loads an official PointAD/AnomalyCLIP prompt-learner state (ctx_pos, ctx_neg,
        compound_prompts_text.*) into this pair."""
        with torch.no_grad():
            self.ctx_normal.copy_(state["ctx_pos"].reshape(self.ctx_normal.shape))
            self.ctx_abnormal.copy_(state["ctx_neg"].reshape(self.ctx_abnormal.shape))
            keys = sorted(
                (k for k in state if k.startswith("compound_prompts_text.")),
                key=lambda k: int(k.rsplit(".", 1)[1]),
            )
            if keys:
                self.deep.copy_(torch.stack([state[k] for k in keys]).reshape(self.deep.shape))


class HandPrompts(nn.Module):
    """Fixed CLIP prompts of the CLIP + Rendering baseline (nothing to learn)."""

    def __init__(self, templates: tuple[str, str] = HAND_TEMPLATES) -> None:
        super().__init__()
        self.templates = templates

    @torch.no_grad()
    def forward(self, model: nn.Module, tokenizer, category: str | None = None) -> torch.Tensor:
        name = class_phrase(category) if category else "object"
        device = next(model.parameters()).device
        tokens = tokenizer([t.format(name) for t in self.templates]).to(device)
        feats = model.encode_text(tokens).float()
        return feats / feats.norm(dim=-1, keepdim=True)
