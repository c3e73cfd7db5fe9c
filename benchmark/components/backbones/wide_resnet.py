"""ImageNet WideResNet-50-2 features (layers 2 and 3) through timm, and the image helpers around it.

Provenance: the RGB branch of BTF (eliahuhorwitz/3D-ADS ``feature_extractors/features.py``:
``timm.create_model('wide_resnet50_2', pretrained=True, features_only=True, out_indices=(2, 3))``,
BatchNorm frozen in eval mode, then per map AvgPool2d(3, stride 1) and AdaptiveAvgPool2d to the
layer-2 grid, concatenated: `btf_pool`) and of official PatchCore (same two layers). Own code.

Weights: timm's default ``wide_resnet50_2`` tag is ``racm_in1k`` (the weights BTF's unpinned
timm loaded since timm 0.4.x); official 2D PatchCore uses the torchvision weights (``tv_in1k``).
Both tags are offered. Files resolve from an explicit path, then the project's weights folder,
the Hugging Face cache (``models--timm--wide_resnet50_2.<tag>``) and the torch hub cache, then a
download where a network exists; offline without a file -> `WeightsError`. The file (a
classification state dict, .pth or .safetensors) is checked key by key: timm's own
``pretrained_cfg_overlay=dict(file=...)`` path loads feature models non-strictly and would accept
a wrong file silently.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from benchmark.errors import ConfigError, ContractError, WeightsError
from benchmark.weights import WeightSpec, resolve_weights

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

WRN50_WEIGHTS = {
    "racm_in1k": WeightSpec(
        name="wide_resnet50_2.racm_in1k",
        filename="wide_resnet50_racm-8234f177.pth",
        description="ImageNet WideResNet-50-2 (timm default weights, wide_resnet50_2.racm_in1k)",
        url="https://github.com/rwightman/pytorch-image-models/releases/download/v0.1-weights/"
        "wide_resnet50_racm-8234f177.pth",
        cache_globs=(
            "models--timm--wide_resnet50_2.racm_in1k/snapshots/*/model.safetensors",
            "models--timm--wide_resnet50_2.racm_in1k/snapshots/*/pytorch_model.bin",
        ),
    ),
    "tv_in1k": WeightSpec(
        name="wide_resnet50_2.tv_in1k",
        filename="wide_resnet50_2-95faca4d.pth",
        description="ImageNet WideResNet-50-2 (torchvision weights, wide_resnet50_2.tv_in1k)",
        url="https://download.pytorch.org/models/wide_resnet50_2-95faca4d.pth",
        cache_globs=(
            "models--timm--wide_resnet50_2.tv_in1k/snapshots/*/model.safetensors",
            "models--timm--wide_resnet50_2.tv_in1k/snapshots/*/pytorch_model.bin",
        ),
    ),
}


def _timm():
    from benchmark.compat import import_torchvision

    import_torchvision()  # timm imports torchvision; the CPU stack needs the op-schema fix first
    import timm

    return timm


class WideResNet50Features(nn.Module):
    """``forward(images (B,3,H,W) ImageNet-normalised) -> [layer2 (B,512,H/8,W/8),
    layer3 (B,1024,H/16,W/16)]``; frozen, eval mode (BatchNorm uses its running statistics)."""

    def __init__(
        self,
        pretrained: bool = True,
        weights: str | os.PathLike | None = None,
        tag: str = "racm_in1k",
    ) -> None:
        super().__init__()
        if tag not in WRN50_WEIGHTS:
            raise ConfigError(
                f"WideResNet50Features: unknown tag {tag!r}; known: {list(WRN50_WEIGHTS)}"
            )
        timm = _timm()
        self.tag = tag
        self.weights_path: Path | None = None
        if weights is not None and not pretrained:
            raise ContractError("WideResNet50Features: weights given but pretrained=False")
        self.backbone = timm.create_model(
            "wide_resnet50_2", pretrained=False, features_only=True, out_indices=(2, 3)
        )
        if pretrained:
            self.weights_path = resolve_weights(WRN50_WEIGHTS[tag], weights)
            self.backbone.load_state_dict(_read_resnet_state(self.weights_path, self.backbone))
        self.eval()
        for p in self.parameters():
            p.requires_grad_(False)

    @property
    def channels(self) -> list[int]:
        return list(self.backbone.feature_info.channels())

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[1] != 3:
            shape = tuple(images.shape) if hasattr(images, "shape") else type(images).__name__
            raise ContractError(f"WideResNet50Features: expected images (B,3,H,W), got {shape}")
        device = next(self.parameters()).device
        return list(self.backbone(images.to(device=device, dtype=torch.float32)))


def _read_resnet_state(path: Path, model: nn.Module) -> dict[str, torch.Tensor]:
    """A classification ResNet state dict (timm / torchvision layout, .pth or .safetensors)
    minus layer4 and the classifier, checked key by key against the feature model (timm itself
    loads feature models non-strictly, which would hide a wrong file)."""
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise WeightsError(f"{path}: cannot read weights ({type(err).__name__}: {err})") from err
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise WeightsError(f"{path}: expected a state dict, got {type(state).__name__}")
    # the feature model stops after layer3: the last stage and the classifier are not used
    state = {k.removeprefix("module."): v for k, v in state.items()}
    state = {k: v for k, v in state.items() if not k.startswith(("fc.", "layer4."))}
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(
        k for k in set(state) & set(expected) if tuple(state[k].shape) != tuple(expected[k].shape)
    )
    if missing or unexpected or wrong:
        raise WeightsError(
            f"{path}: not a wide_resnet50_2 state dict; missing {missing[:8]} ({len(missing)}), "
            f"unexpected {unexpected[:8]} ({len(unexpected)}), wrong shape {wrong[:8]}"
        )
    return state


def btf_pool(feature_maps: list[torch.Tensor], size: int | None = None) -> torch.Tensor:
    """BTF's patch features: each map AvgPool2d(3, stride 1, no padding), then
    AdaptiveAvgPool2d to (size, size) (default: the first map's grid, 28 at 224 input),
    concatenated along channels -> (B, sum C, size, size)."""
    if size is None:
        size = int(feature_maps[0].shape[-1])
    pooled = [F.adaptive_avg_pool2d(F.avg_pool2d(f, 3, stride=1), size) for f in feature_maps]
    return torch.cat(pooled, dim=1)


def imagenet_normalize(rgb: np.ndarray | torch.Tensor, size: int | None = None) -> torch.Tensor:
    """uint8 RGB (H,W,3) or (B,H,W,3) -> float32 (3,H,W) or (B,3,H,W), ImageNet mean/std.

    ``size``: first resize to (size, size) with PIL bicubic, as BTF's torchvision ``Resize`` on
    PIL images (uint8 result, then /255).
    """
    arr = rgb.cpu().numpy() if isinstance(rgb, torch.Tensor) else np.asarray(rgb)
    if arr.dtype != np.uint8 or arr.ndim not in (3, 4) or arr.shape[-1] != 3:
        raise ContractError(
            "imagenet_normalize: expected uint8 RGB (H,W,3) or (B,H,W,3), "
            f"got {arr.dtype} {arr.shape}"
        )
    single = arr.ndim == 3
    batch = arr[None] if single else arr
    if size is not None:
        from PIL import Image

        batch = np.stack(
            [np.asarray(Image.fromarray(im).resize((size, size), Image.BICUBIC)) for im in batch]
        )
    x = torch.from_numpy(np.ascontiguousarray(batch)).permute(0, 3, 1, 2).float().div_(255.0)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    x = (x - mean) / std
    return x[0] if single else x
