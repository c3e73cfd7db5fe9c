"""Point-BERT encoder as M3DM and the Real3D-AD ``M3DM(PointBERT)`` baseline use it.

Provenance: own code after the Point-BERT pre-training model (Yu et al., CVPR 2022, github
lulutang0608/Point-BERT ``models/Point_BERT.py`` ``MaskTransformer``) as loaded by
nomewang/M3DM ``models/models.py`` (``PointTransformer(encoder_dims=256)`` +
``load_model_from_pb_ckpt``; copied into M-3LAB/Real3D-AD ``M3DM/models.py``). It shares
everything with the Point-MAE encoder (`backbones.pointmae`: FPS + kNN grouping, mini-PointNet,
positional MLP added before each of the 12 blocks, blocks 4/8/12 through the final LayerNorm ->
1152-d) except that

- the mini-PointNet emits 256-d tokens, mapped to 384 by ``reduce_dim`` (Linear 256 -> 384);
- a learned CLS token with its own learned position is prepended; it takes part in attention
  and is dropped from the output (the features stay one per group).

Weights: the official ``Point-BERT.pth`` (Tsinghua cloud link of the Point-BERT README): a dict
whose ``base_model`` holds ``module.transformer_q.*`` (the encoder used here), the momentum copy
``transformer_k.*``, the dVAE and the MoCo queue. Only ``transformer_q`` is read; its
pre-training heads (``cls_head``, ``lm_head``) and ``mask_token`` are dropped; every other key
must match, shape for shape (the official loader uses ``strict=False`` and prints what it
skipped; here a wrong file raises `WeightsError`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import torch

from benchmark.components.backbones.pointmae import (
    PointMAEEncoder,
    check_state_keys,
    read_torch_checkpoint,
)
from benchmark.errors import WeightsError
from benchmark.weights import WeightSpec

POINTBERT_WEIGHTS = WeightSpec(
    name="pointbert_pretrain",
    filename="Point-BERT.pth",
    description="Point-BERT encoder pre-trained on ShapeNet (official lulutang0608/Point-BERT "
    "Point-BERT.pth)",
    url="https://cloud.tsinghua.edu.cn/f/202b29805eea45d7be92/?dl=1",
    cache_globs=("pointbert_pretrain.pth", "Point-BERT/Point-BERT.pth",
                 "checkpoints/Point-BERT.pth"),
)
#: entries of ``transformer_q`` that only the pre-training uses
PRETRAINING_ONLY = ("cls_head.", "lm_head.", "mask_token")


def load_pointbert_checkpoint(
    path: str | os.PathLike, expected: Mapping[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """The encoder state dict from an official Point-BERT checkpoint.

    Accepted: ``{'base_model': {...}}`` (official) or a plain state dict, keys with or without
    ``module.``; the ``transformer_q.`` entries are taken (without the prefix), pre-training heads
    dropped. Anything missing, unexpected or mis-shaped -> `WeightsError` naming the keys.
    """
    path = Path(path)
    obj = read_torch_checkpoint(path, "Point-BERT checkpoint")
    raw = obj.get("base_model", obj) if isinstance(obj, Mapping) else None
    if not isinstance(raw, Mapping) or not all(isinstance(v, torch.Tensor) for v in raw.values()):
        raise WeightsError(
            f"{path}: not a Point-BERT checkpoint (expected a dict with a 'base_model' state "
            "dict, as the official Point-BERT.pth)"
        )
    state: dict[str, torch.Tensor] = {}
    for key, value in raw.items():
        key = key.removeprefix("module.")
        if not key.startswith("transformer_q."):
            continue
        key = key[len("transformer_q.") :]
        if not key.startswith(PRETRAINING_ONLY):
            state[key] = value
    if not state:
        raise WeightsError(f"{path}: no 'transformer_q.*' entry: not a Point-BERT checkpoint")
    check_state_keys(
        state, expected, path,
        "a Point-BERT checkpoint with the official key layout (transformer_q.encoder.*, "
        ".reduce_dim.*, .cls_token, .cls_pos, .pos_embed.*, .blocks.blocks.<i>.*, .norm.*)",
    )
    return state


class PointBERTEncoder(PointMAEEncoder):
    """Point-BERT group features: same interface and outputs as `PointMAEEncoder`
    (``forward(xyz (B,N,3)) -> (features (B,G,1152), centers, group_idx)``)."""

    encoder_dims = 256
    uses_cls_token = True
    weight_spec = POINTBERT_WEIGHTS

    @staticmethod
    def read_checkpoint(
        path: str | os.PathLike, expected: Mapping[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        return load_pointbert_checkpoint(path, expected)
