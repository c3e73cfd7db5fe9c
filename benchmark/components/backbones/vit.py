"""DINO ViT-B/8 patch tokens through timm (the RGB branch of M3DM).

Provenance: nomewang/M3DM ``models/models.py`` (``timm.create_model('vit_base_patch8_224_dino',
pretrained=True)``, then patch embedding, position embedding, ``norm_pre``, the blocks and the
final ``norm``; the CLS token is dropped and the 28x28 patch tokens of a 224x224 image form a
768-channel map). Own code; the module is timm's ``vit_base_patch8_224`` (``.dino`` tag), whose
``forward_features`` is exactly that sequence.

Weights: the official DINO release ``dino_vitbase8_pretrain.pth`` (Facebook, a plain state dict in
timm's key layout: ``cls_token``, ``pos_embed``, ``patch_embed.proj.*``, ``blocks.<i>.*``,
``norm.*``), timm's own copy on the Hugging Face hub (``timm/vit_base_patch8_224.dino``), or a
DINO training checkpoint (``teacher``/``student`` entries whose keys carry ``module.`` /
``backbone.`` and a projection ``head.*``, dropped here). Checked key by key (`WeightsError`).
Offline without a file -> `WeightsError` naming it; random init only with ``pretrained=False``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from benchmark.components.backbones.pointmae import check_state_keys, read_torch_checkpoint
from benchmark.errors import ContractError, WeightsError
from benchmark.weights import WeightSpec, resolve_weights

DINO_VITB8_WEIGHTS = WeightSpec(
    name="vit_base_patch8_224.dino",
    filename="dino_vitbase8_pretrain.pth",
    description="DINO ViT-B/8 (official facebookresearch/dino dino_vitbase8_pretrain.pth, "
    "timm vit_base_patch8_224.dino)",
    url="https://dl.fbaipublicfiles.com/dino/dino_vitbase8_pretrain/dino_vitbase8_pretrain.pth",
    cache_globs=(
        "models--timm--vit_base_patch8_224.dino/snapshots/*/model.safetensors",
        "models--timm--vit_base_patch8_224.dino/snapshots/*/pytorch_model.bin",
    ),
)
#: timm architecture of DINO ViT-B/8 (224 input, 28x28 tokens of 768 channels)
DINO_VITB8_ARCH: dict[str, Any] = {
    "img_size": 224, "patch_size": 8, "embed_dim": 768, "depth": 12, "num_heads": 12,
}


def load_vit_checkpoint(
    path: str | os.PathLike, expected: Mapping[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """A ViT backbone state dict from a DINO / timm file (.pth or .safetensors), checked against
    `expected` (the timm model's state dict)."""
    path = Path(path)
    if path.suffix == ".safetensors":
        try:
            from safetensors.torch import load_file

            obj: Any = load_file(str(path))
        except Exception as err:
            raise WeightsError(f"{path}: cannot read ({type(err).__name__}: {err})") from err
    else:
        obj = read_torch_checkpoint(path, "ViT checkpoint")
    if isinstance(obj, Mapping):
        for key in ("teacher", "model", "state_dict", "student"):
            if isinstance(obj.get(key), Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsError(f"{path}: not a ViT state dict")
    state = {}
    for key, value in obj.items():
        key = key.removeprefix("module.").removeprefix("backbone.")
        if key.startswith("head."):
            continue  # DINO projection head / classifier: not part of the backbone
        state[key] = value
    check_state_keys(state, expected, path, "a DINO ViT checkpoint in timm's key layout")
    return state


class DinoViTFeatures(nn.Module):
    """``forward(images (B,3,H,W) ImageNet-normalised) -> (B, C, H/p, W/p)`` patch tokens after
    the final LayerNorm (CLS dropped); frozen, eval mode.

    ``arch`` overrides the timm architecture (tests use tiny random configs with
    ``pretrained=False``).
    """

    def __init__(
        self,
        pretrained: bool = True,
        weights: str | os.PathLike | None = None,
        arch: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        from benchmark.components.backbones.wide_resnet import _timm

        if weights is not None and not pretrained:
            raise ContractError("DinoViTFeatures: weights given but pretrained=False")
        cfg = {**DINO_VITB8_ARCH, **dict(arch or {})}
        timm = _timm()
        self.model = timm.create_model(
            "vit_base_patch8_224", pretrained=False, num_classes=0, **cfg
        )
        self.patch_size = int(cfg["patch_size"])
        self.weights_path: Path | None = None
        if pretrained:
            self.weights_path = resolve_weights(DINO_VITB8_WEIGHTS, weights)
            self.model.load_state_dict(
                load_vit_checkpoint(self.weights_path, self.model.state_dict())
            )
        self.eval()
        for p in self.parameters():
            p.requires_grad_(False)

    @property
    def channels(self) -> int:
        return int(self.model.embed_dim)

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[1] != 3:
            shape = tuple(images.shape) if hasattr(images, "shape") else type(images).__name__
            raise ContractError(f"DinoViTFeatures: expected images (B,3,H,W), got {shape}")
        device = next(self.parameters()).device
        x = images.to(device=device, dtype=torch.float32)
        tokens = self.model.forward_features(x)[:, self.model.num_prefix_tokens :]
        b, _, h, w = x.shape
        gh, gw = h // self.patch_size, w // self.patch_size
        return tokens.transpose(1, 2).reshape(b, tokens.shape[-1], gh, gw)
