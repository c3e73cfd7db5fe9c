"""Frozen CLIP for PointAD: open_clip model loading and the DPAM (V-V attention) image encoder.

Provenance: re-implemented from the description of the official PointAD code (zqhang/PointAD,
``AnomalyCLIP_lib/AnomalyCLIP.py``, itself from AnomalyCLIP) in specs/methods.md §1.1-1.2:

* The ORIGINAL path runs the unmodified open_clip blocks; its CLS token goes through ``ln_post``
  and ``proj`` (the PointAD copy applies ``ln_post``; the current AnomalyCLIP repo does not).
* From the first DPAM block on (default: the last 19 blocks, i.e. blocks 6..24 of ViT-L/14, the
  official ``DPAM_layer=20``), a second "V-V" path accumulates ``vv += VVattn(ln_1(x_orig))``
  with no FFN, where VVattn is the block's own attention with q = k = v = the value projection
  (scale head_dim^-0.5) followed by the block's output projection. The V-V path starts from the
  original hidden state entering the first DPAM block.
* Patch tokens are the V-V path's tokens after ``ln_post`` and ``proj``. The official code stored
  per-layer outputs without cloning while updating the V-V path in place, so every requested
  layer equalled the FINAL layer's V-V tokens; the released checkpoints were trained that way.
  ``patch_layer=None`` (default) reproduces that: final-layer V-V tokens. An integer selects the
  V-V tokens after that (1-indexed) block instead, i.e. the post-fix behaviour.

The text side encodes learned prompt embeddings with "deep" prompts: in text blocks 2..depth the
``t_n_ctx`` token positions right after SOT are overwritten by that layer's learnable tokens.
(The official code casts those tokens to fp16 before inserting them; we keep the model's dtype.)

Weights: ``pretrained="openai"`` goes through open_clip's own download/cache; a file path (an
open_clip state dict, a .safetensors file, or OpenAI's TorchScript ``ViT-L-14-336px.pt``) is
loaded directly; offline with nothing cached raises `WeightsError` naming the file and where to
put it (no DNS wait). ``pretrained=False`` gives a random initialisation (tests, perf).
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

import benchmark  # noqa: F401  (applies the torchvision import fix before open_clip loads)
from benchmark.errors import ConfigError, WeightsError
from benchmark.weights import WeightSpec, offline, resolve_weights, weights_dir

log = logging.getLogger(__name__)

#: OpenAI CLIP image normalisation (open_clip.constants.OPENAI_DATASET_MEAN/STD)
OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)

#: tiny random configs for tests and perf; registered with open_clip on first use
TINY_CONFIGS: dict[str, dict[str, Any]] = {
    "pointad-tiny": {
        "embed_dim": 64,
        "quick_gelu": True,
        "vision_cfg": {
            "image_size": 64, "layers": 3, "width": 64, "head_width": 32, "patch_size": 8,
        },
        "text_cfg": {
            "context_length": 77,
            "vocab_size": 49408,
            "width": 64,
            "heads": 2,
            "layers": 3,
        },
    },
}

_OPENAI_VITL14_336_URL = (
    "https://openaipublic.azureedge.net/clip/models/"
    "3035c92b350959924f9f00213499208652fc7ea050643e8b385c2dac08641f02/ViT-L-14-336px.pt"
)
_HF_VITL14_336 = "models--timm--vit_large_patch14_clip_336.openai/snapshots/*/"
WEIGHT_SPECS: dict[tuple[str, str], WeightSpec] = {
    ("ViT-L-14-336", "openai"): WeightSpec(
        name="clip_vit_l14_336_openai",
        filename="ViT-L-14-336px.pt",
        description="OpenAI CLIP ViT-L/14@336px (open_clip 'ViT-L-14-336', pretrained='openai')",
        url=_OPENAI_VITL14_336_URL,
        cache_globs=(
            _HF_VITL14_336 + "open_clip_model.safetensors",
            _HF_VITL14_336 + "open_clip_pytorch_model.bin",
        ),
    ),
}

_TINY_DIR: Path | None = None


def register_tiny_configs() -> None:
    """Writes the tiny model configs to a private folder and registers it with open_clip (once)."""
    global _TINY_DIR
    if _TINY_DIR is not None:
        return
    import open_clip

    folder = Path(tempfile.mkdtemp(prefix="pointad_clip_cfg_"))
    for name, cfg in TINY_CONFIGS.items():
        (folder / f"{name}.json").write_text(json.dumps(cfg))
    open_clip.add_model_config(folder)
    _TINY_DIR = folder


def _looks_like_path(value: str) -> bool:
    return os.sep in value or value.endswith((".pt", ".pth", ".bin", ".safetensors")) or Path(
        value
    ).expanduser().is_file()


def _spec_for(model_name: str, tag: str = "openai") -> WeightSpec:
    spec = WEIGHT_SPECS.get((model_name, tag))
    if spec is not None:
        return spec
    safe = model_name.replace("/", "-")
    return WeightSpec(
        name=f"clip_{safe}_{tag}",
        filename=f"{safe}-{tag}.bin",
        description=f"open_clip '{model_name}' weights (pretrained={tag!r})",
    )


def _create(model_name: str, pretrained: str | None, **kw: Any) -> torch.nn.Module:
    import open_clip

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*No pretrained weights loaded.*")
        return open_clip.create_model(model_name, pretrained=pretrained, **kw)


def _load_file(model_name: str, path: Path, **kw: Any) -> torch.nn.Module:
    """open_clip state dict / safetensors via open_clip; OpenAI TorchScript archives by hand."""
    try:
        return _create(model_name, str(path), **kw)
    except Exception as err:  # open_clip refuses TorchScript archives with weights_only=True
        try:
            state = torch.jit.load(str(path), map_location="cpu").state_dict()
        except Exception:
            raise WeightsError(f"could not load CLIP weights from {path}: {err}") from err
    for key in ("input_resolution", "context_length", "vocab_size"):
        state.pop(key, None)
    model = _create(model_name, None, **kw)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise WeightsError(f"CLIP weights in {path} do not fit '{model_name}': {err}") from err
    return model


def load_clip(
    model_name: str = "ViT-L-14-336",
    pretrained: str | bool | None = "openai",
    *,
    quick_gelu: bool = True,
    image_size: int | None = None,
    device: str = "cpu",
    precision: str = "fp32",
) -> torch.nn.Module:
    """Creates the frozen open_clip model (eval mode, no grad on its parameters)."""
    import open_clip

    register_tiny_configs()
    if model_name not in open_clip.list_models():
        raise ConfigError(f"unknown open_clip model {model_name!r}")
    kw: dict[str, Any] = {"force_quick_gelu": quick_gelu}
    if image_size is not None:
        kw["force_image_size"] = image_size
    if pretrained in (False, None, "", "none", "random"):
        model = _create(model_name, None, **kw)
    elif not isinstance(pretrained, str):
        raise ConfigError(f"pretrained: expected a tag, a file path or False, got {pretrained!r}")
    elif _looks_like_path(pretrained):
        path = resolve_weights(_spec_for(model_name), path=pretrained)
        model = _load_file(model_name, path, **kw)
    else:
        spec = _spec_for(model_name, pretrained)
        try:
            path = resolve_weights(spec, download=False)
        except WeightsError as err:
            path = None
            if offline():
                hf = spec.cache_globs[0].split("/")[0] if spec.cache_globs else None
                extra = f" open_clip's Hugging Face cache entry '{hf}' is used too." if hf else ""
                raise WeightsError(f"{err}{extra}") from None
        if path is not None:
            model = _load_file(model_name, path, **kw)
        else:
            try:
                model = _create(model_name, pretrained, **kw)
            except Exception as err:
                raise WeightsError(
                    f"{spec.description}: download through open_clip failed ({err}). "
                    f"Place '{spec.filename}' in {weights_dir()}"
                    + (f" (download: {spec.url})" if spec.url else "")
                    + ", or pass its path as pretrained=...; pretrained=False gives random init."
                ) from err
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}.get(precision)
    if dtype is None:
        raise ConfigError(f"precision: expected fp32, fp16 or bf16, got {precision!r}")
    return model.to(device=device, dtype=dtype)


def tokenizer_for(model_name: str):
    import open_clip

    register_tiny_configs()
    return open_clip.get_tokenizer(model_name)


def image_size_of(model: torch.nn.Module) -> int:
    size = model.visual.image_size
    return int(size[0] if isinstance(size, (tuple, list)) else size)


def grid_size_of(model: torch.nn.Module) -> tuple[int, int]:
    return tuple(int(s) for s in model.visual.grid_size)


def normalize_images(images_uint8: torch.Tensor) -> torch.Tensor:
    """(B,H,W,3) uint8 -> (B,3,H,W) float, OpenAI-CLIP normalised."""
    x = images_uint8.permute(0, 3, 1, 2).float().div_(255.0)
    mean = torch.tensor(OPENAI_MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(OPENAI_STD, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std


def _vv_attention(attn: torch.nn.MultiheadAttention, h: torch.Tensor) -> torch.Tensor:
    """V-V self-attention with the block's own value and output projections; h (B,L,W)."""
    width = h.shape[-1]
    heads = attn.num_heads
    w_v = attn.in_proj_weight[2 * width :]
    b_v = attn.in_proj_bias[2 * width :] if attn.in_proj_bias is not None else None
    v = F.linear(h, w_v, b_v)
    b, n, _ = v.shape
    v = v.view(b, n, heads, width // heads).transpose(1, 2)
    out = F.scaled_dot_product_attention(v, v, v)  # softmax(v v^T / sqrt(d)) v
    out = out.transpose(1, 2).reshape(b, n, width)
    return attn.out_proj(out)


@torch.no_grad()
def encode_image_dpam(
    model: torch.nn.Module,
    images: torch.Tensor,
    dpam_layers: int = 19,
    patch_layer: int | None = None,
    use_dpam: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Returns (global embedding (B,E) of the original path, patch tokens (B,h*w,E)).

    images: (B,3,H,W) normalised. ``use_dpam=False`` returns the original path's patch tokens
    (vanilla CLIP, for the CLIP + Rendering baseline).
    """
    visual = model.visual
    if getattr(visual, "attn_pool", None) is not None:
        raise ConfigError("DPAM needs a plain ViT CLIP (no attentional pooling)")
    dtype = visual.conv1.weight.dtype
    x = visual._embeds(images.to(dtype))
    tr = visual.transformer
    if not getattr(tr, "batch_first", True):
        raise ConfigError("DPAM expects a batch_first open_clip transformer")
    blocks = tr.resblocks
    start = max(0, len(blocks) - dpam_layers) if use_dpam else len(blocks)
    vv = None
    stored = None
    for i, blk in enumerate(blocks):
        if i >= start:
            res = blk.ls_1(_vv_attention(blk.attn, blk.ln_1(x)))
            vv = x + res if vv is None else vv + res
            if patch_layer is not None and i + 1 == patch_layer:
                stored = vv.clone()
        x = blk(x, attn_mask=None)
    pooled, tokens = visual._pool(x)
    if visual.proj is not None:
        pooled = pooled @ visual.proj
    if not use_dpam:
        patches = tokens
    else:
        if patch_layer is not None and stored is None:
            raise ConfigError(
                f"patch_layer={patch_layer} is not a DPAM block (DPAM blocks: "
                f"{start + 1}..{len(blocks)})"
            )
        chosen = stored if patch_layer is not None else vv
        patches = visual.ln_post(chosen)[:, 1:]
    if visual.proj is not None:
        patches = patches @ visual.proj
    return pooled, patches


def encode_text_embeddings(
    model: torch.nn.Module,
    embeddings: torch.Tensor,
    eot_index: torch.Tensor,
    deep_prompts: torch.Tensor | None = None,
) -> torch.Tensor:
    """Text features of prompt embeddings (P,L,W); deep_prompts (depth-1, t, W) or None."""
    dtype = model.transformer.get_cast_dtype()
    x = embeddings.to(dtype) + model.positional_embedding.to(dtype)
    blocks = model.transformer.resblocks
    if not getattr(model.transformer, "batch_first", True):
        raise ConfigError("expected a batch_first open_clip text transformer")
    n_deep = 0 if deep_prompts is None else deep_prompts.shape[0]
    for i, blk in enumerate(blocks):
        if 1 <= i <= n_deep:
            t = deep_prompts.shape[1]
            ctx = deep_prompts[i - 1].to(dtype).unsqueeze(0).expand(x.shape[0], -1, -1)
            x = torch.cat([x[:, :1], ctx, x[:, 1 + t :]], dim=1)
        x = blk(x, attn_mask=model.attn_mask)
    x = model.ln_final(x)
    x = x[torch.arange(x.shape[0], device=x.device), eot_index]
    proj = model.text_projection
    if proj is not None:
        x = proj(x) if isinstance(proj, torch.nn.Linear) else x @ proj
    return x
