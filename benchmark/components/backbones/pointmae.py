"""Point-MAE encoder as the M3DM / Real3D-AD anomaly-detection code uses it (1152-d group features).

Provenance: re-implemented (own code) from the Point-MAE pre-training model (Pang et al., ECCV
2022, github Pang-Yatian/Point-MAE ``models/Point_MAE.py``) and its feature-extractor variant in
nomewang/M3DM ``models/models.py`` (copied into M-3LAB/Real3D-AD ``M3DM/models.py``); see
specs/methods.md §3.2. What it does:

1. grouping: ``num_group`` centres by farthest point sampling (starting at point 0, as the
   pointnet2 CUDA kernel), the ``group_size`` nearest points of each centre (the centre itself
   first), coordinates made relative to their centre;
2. mini-PointNet token encoder: shared MLP 3-128-256 (BatchNorm+ReLU in between), max-pool, the
   pooled vector concatenated to every point, shared MLP 512-512-384, max-pool -> one 384-d token
   per group;
3. positional embedding MLP 3-128-384 (GELU) of the centre coordinates, added before EVERY one of
   the 12 pre-norm transformer blocks (width 384, 6 heads, MLP ratio 4, qkv without bias);
4. the outputs of blocks 4, 8 and 12 (0-based 3, 7, 11), each through the final LayerNorm,
   concatenated -> 1152-d per group.

Weights: the official ``pretrain.pth`` (a dict whose ``base_model`` entry holds the full Point-MAE
state dict with the encoder under ``MAE_encoder.``); see `load_pointmae_checkpoint`.

Differences from the official code, all without effect on the numbers unless stated:
- attention runs through ``torch.nn.functional.scaled_dot_product_attention`` (same formula and
  scale 1/sqrt(head dim); rounding differs at float precision), so 16384 tokens need no
  16384 x 16384 attention matrix on CPU;
- kNN grouping uses geometry.pointops (KD-tree; the official code uses sklearn or KNN_CUDA):
  equal up to the order of exactly tied neighbours;
- the token encoder runs over chunks of groups (bounded memory); in train mode the BatchNorm
  batch statistics are gathered over all groups first (three passes), so the result is the same
  as the official one-piece forward up to float rounding, and the running buffers stay untouched;
- clouds with fewer points than ``num_group`` / ``group_size`` use all points (G = min(num_group,
  N), K = min(group_size, N)); the official kernels have no defined behaviour there.

Official quirk (M3DM and Real3D-AD): the feature extractor is never switched to eval mode, so its
BatchNorm layers normalise with the statistics of the current cloud's groups and DropPath (rate
linearly 0..0.1 over the blocks) randomly drops whole residual branches. The encoder here starts in
eval mode; calling ``.train()`` reproduces that behaviour exactly (seeded through torch's RNG).
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from benchmark.components.geometry.pointops import farthest_point_sample, group_knn
from benchmark.errors import ContractError, WeightsError
from benchmark.weights import WeightSpec, resolve_weights

POINTMAE_WEIGHTS = WeightSpec(
    name="pointmae_pretrain",
    filename="pointmae_pretrain.pth",
    description="Point-MAE encoder pre-trained on ShapeNet (official Pang-Yatian/Point-MAE "
    "pretrain.pth)",
    url="https://github.com/Pang-Yatian/Point-MAE/releases/download/main/pretrain.pth",
    cache_globs=(
        "point_mae_pretrain.pth",
        "Point-MAE/pretrain.pth",
        "checkpoints/pointmae_pretrain.pth",
    ),
)

TRANS_DIM = 384
DEPTH = 12
NUM_HEADS = 6
DROP_PATH_RATE = 0.1
FETCH_BLOCKS = (3, 7, 11)
FEATURE_DIM = TRANS_DIM * len(FETCH_BLOCKS)

#: prefixes of the official checkpoint that belong to the pre-training decoder (not used here)
PRETRAINING_ONLY = ("MAE_decoder.", "decoder_pos_embed.", "increase_dim.", "mask_token")
#: the token encoder keeps about this many bytes of activations alive per chunk of groups
_ENCODER_CHUNK_BYTES = 256 * 2**20


class _TokenEncoder(nn.Module):
    """Mini-PointNet: (M, K, 3) relative group coordinates -> (M, C) tokens."""

    def __init__(self, out_channels: int = TRANS_DIM) -> None:
        super().__init__()
        self.first_conv = nn.Sequential(
            nn.Conv1d(3, 128, 1), nn.BatchNorm1d(128), nn.ReLU(inplace=True), nn.Conv1d(128, 256, 1)
        )
        self.second_conv = nn.Sequential(
            nn.Conv1d(512, 512, 1),
            nn.BatchNorm1d(512),
            nn.ReLU(inplace=True),
            nn.Conv1d(512, out_channels, 1),
        )

    def forward(self, groups: torch.Tensor) -> torch.Tensor:
        """The plain module forward (BatchNorm as its mode says), as the original."""
        x = self.first_conv(groups.transpose(1, 2))  # (M, 256, K)
        pooled = x.max(dim=2, keepdim=True).values
        x = torch.cat([pooled.expand(-1, -1, x.shape[2]), x], dim=1)
        return self.second_conv(x).max(dim=2).values

    def _first(self, g: torch.Tensor, stats1: tuple | None) -> torch.Tensor:
        """(m,K,3) -> the (m,512,K) input of second_conv."""
        conv_a, bn, _, conv_b = self.first_conv
        x = conv_b(F.relu(_batch_norm(conv_a(g.transpose(1, 2)), bn, stats1)))
        return torch.cat([x.max(dim=2, keepdim=True).values.expand(-1, -1, x.shape[2]), x], dim=1)

    def encode_chunked(self, groups: torch.Tensor, chunk: int, batch_stats: bool) -> torch.Tensor:
        """Same result as `forward` over all groups, computed `chunk` groups at a time.

        batch_stats=False: BatchNorm with its running statistics (eval mode). batch_stats=True:
        BatchNorm with the statistics of the whole batch of groups, as train mode does (running
        buffers are left untouched); found exactly in three passes (moments of the first
        BatchNorm input, then of the second, then the output)."""
        parts = [groups[s : s + chunk] for s in range(0, len(groups), chunk)]
        stats1 = stats2 = None
        conv_c, bn2, _, conv_d = self.second_conv
        if batch_stats:
            stats1 = _moments(self.first_conv[0](p.transpose(1, 2)) for p in parts)
            stats2 = _moments(conv_c(self._first(p, stats1)) for p in parts)
        out = [
            conv_d(F.relu(_batch_norm(conv_c(self._first(p, stats1)), bn2, stats2))).max(2).values
            for p in parts
        ]
        return torch.cat(out)


def _moments(blocks) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and biased variance of (m, C, K) blocks taken together (float64 sums)."""
    total = sq = None
    count = 0
    for x in blocks:
        xd = x.double()
        s, q = xd.sum(dim=(0, 2)), (xd * xd).sum(dim=(0, 2))
        total, sq = (s, q) if total is None else (total + s, sq + q)
        count += x.shape[0] * x.shape[2]
    mean = total / count
    var = (sq / count - mean * mean).clamp_min(0)
    return mean.float(), var.float()


def _batch_norm(x: torch.Tensor, bn: nn.BatchNorm1d, stats: tuple | None) -> torch.Tensor:
    mean, var = (bn.running_mean, bn.running_var) if stats is None else stats
    if mean.requires_grad or var.requires_grad:  # batch statistics under autograd (fine-tuning)
        scale = (bn.weight / torch.sqrt(var + bn.eps))[None, :, None]
        return (x - mean[None, :, None]) * scale + bn.bias[None, :, None]
    return F.batch_norm(x, mean, var, bn.weight, bn.bias, False, 0.0, bn.eps)


class _DropPath(nn.Module):
    """Stochastic depth per sample (active in train mode only), as timm's DropPath."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.p == 0.0 or not self.training:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask.div_(keep)


class _Attention(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, dim * 3, bias=False)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)  # scale 1/sqrt(head dim), as the original
        return self.proj(out.transpose(1, 2).reshape(b, n, c))


class Mlp(nn.Module):
    """Linear - GELU - Linear (the transformer blocks' MLP; also M3DM's fusion block)."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class _Block(nn.Module):
    def __init__(self, dim: int, heads: int, drop_path: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = _Attention(dim, heads)
        self.drop_path = _DropPath(drop_path)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, dim * 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class _Transformer(nn.Module):
    """12 blocks; the positional embedding is added before every block."""

    def __init__(self) -> None:
        super().__init__()
        rates = torch.linspace(0, DROP_PATH_RATE, DEPTH).tolist()
        self.blocks = nn.ModuleList(_Block(TRANS_DIM, NUM_HEADS, r) for r in rates)

    def forward(self, x: torch.Tensor, pos: torch.Tensor) -> list[torch.Tensor]:
        fetched = []
        for i, block in enumerate(self.blocks):
            x = block(x + pos)
            if i in FETCH_BLOCKS:
                fetched.append(x)
        return fetched


class PointMAEEncoder(nn.Module):
    """Point-MAE group features: ``forward(xyz (B,N,3)) -> (features (B,G,1152), centers (B,G,3),
    group_idx (B,G,K))`` with ``group_idx`` indexing the input points.

    ``pretrained=True`` loads the official checkpoint (``weights`` = a path, else the caches, else a
    download), ``pretrained=PATH`` that file (e.g. one written by ``python -m benchmark
    pretrain``); offline without the file it raises `WeightsError`. ``pretrained=False`` keeps the
    random initialisation (tests only). The module starts in eval mode (see the module docstring
    for the official code's train-mode quirk).
    """

    #: width of the mini-PointNet tokens (Point-BERT: 256, then a linear map to 384)
    encoder_dims: int = TRANS_DIM
    #: whether a learned CLS token (and its position) is prepended (Point-BERT)
    uses_cls_token: bool = False
    weight_spec: WeightSpec = POINTMAE_WEIGHTS

    def __init__(
        self,
        num_group: int = 1024,
        group_size: int = 128,
        pretrained: bool | str | os.PathLike = True,
        weights: str | os.PathLike | None = None,
    ) -> None:
        super().__init__()
        name = type(self).__name__
        if not isinstance(pretrained, bool):  # pretrained=PATH: that checkpoint
            if weights is not None:
                raise ContractError("PointMAEEncoder: give pretrained=PATH or weights=, not both")
            pretrained, weights = True, pretrained
        if num_group < 1 or group_size < 1:
            raise ContractError(
                f"{name}: num_group ({num_group}) and group_size ({group_size}) must be >= 1"
            )
        self.num_group = int(num_group)
        self.group_size = int(group_size)
        if self.uses_cls_token:  # created first: the official module order of Point-BERT
            self.cls_token = nn.Parameter(torch.zeros(1, 1, TRANS_DIM))
            self.cls_pos = nn.Parameter(torch.randn(1, 1, TRANS_DIM))
        if self.encoder_dims != TRANS_DIM:
            self.reduce_dim = nn.Linear(self.encoder_dims, TRANS_DIM)
        self.encoder = _TokenEncoder(self.encoder_dims)
        self.pos_embed = nn.Sequential(nn.Linear(3, 128), nn.GELU(), nn.Linear(128, TRANS_DIM))
        self.blocks = _Transformer()
        self.norm = nn.LayerNorm(TRANS_DIM)
        self.weights_path: Path | None = None
        if pretrained:
            self.weights_path = resolve_weights(self.weight_spec, weights)
            self.load_state_dict(self.read_checkpoint(self.weights_path, self.state_dict()))
        elif weights is not None:
            raise ContractError(f"{name}: weights given but pretrained=False")
        self.eval()
        for p in self.parameters():
            p.requires_grad_(False)

    @staticmethod
    def read_checkpoint(
        path: str | os.PathLike, expected: Mapping[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        """The encoder state dict of an official checkpoint (see `load_pointmae_checkpoint`)."""
        return load_pointmae_checkpoint(path, expected)

    @property
    def feature_dim(self) -> int:
        return FEATURE_DIM

    def group(
        self, xyz: torch.Tensor, center_idx: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(B,N,3) -> neighbourhoods relative to their centre (B,G,K,3), centres (B,G,3),
        neighbour indices (B,G,K). Centres: FPS, or the given (B,G) indices into the points."""
        b, n, _ = xyz.shape
        k = min(self.group_size, n)
        if center_idx is None:
            center_idx = farthest_point_sample(xyz, min(self.num_group, n))
        else:
            center_idx = _check_center_idx(center_idx, b, n, xyz.device)
        batch = torch.arange(b, device=xyz.device)[:, None]
        centers = xyz[batch, center_idx]
        group_idx = group_knn(xyz, centers, k).to(xyz.device)
        neighborhood = xyz[batch[:, :, None], group_idx] - centers[:, :, None]
        return neighborhood, centers, group_idx

    def _encode_tokens(self, groups: torch.Tensor) -> torch.Tensor:
        """(M,K,3) -> (M,384) in chunks of groups (bounded memory); in train mode BatchNorm uses
        the statistics of all M groups, exactly as the official one-piece forward."""
        chunk = max(1, _ENCODER_CHUNK_BYTES // (groups.shape[1] * 512 * 4 * 2))
        tokens = self.encoder.encode_chunked(groups, chunk, batch_stats=self.training)
        return self.reduce_dim(tokens) if self.encoder_dims != TRANS_DIM else tokens

    @torch.no_grad()
    def forward(
        self, xyz: torch.Tensor | np.ndarray, center_idx: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.forward_features(xyz, center_idx)

    def forward_features(
        self, xyz: torch.Tensor | np.ndarray, center_idx: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """`forward` without the no-grad guard, for fine-tuning the encoder (enable gradients
        with ``requires_grad_(True)``); `center_idx` (B,G) replaces the FPS centres."""
        xyz = _check_cloud(xyz, next(self.parameters()).device)
        neighborhood, centers, group_idx = self.group(xyz, center_idx)
        b, g, k, _ = neighborhood.shape
        tokens = self._encode_tokens(neighborhood.reshape(b * g, k, 3)).reshape(b, g, TRANS_DIM)
        pos = self.pos_embed(centers)
        skip = 0
        if self.uses_cls_token:
            tokens = torch.cat([self.cls_token.expand(b, -1, -1), tokens], dim=1)
            pos = torch.cat([self.cls_pos.expand(b, -1, -1), pos], dim=1)
            skip = 1
        fetched = self.blocks(tokens, pos)
        features = torch.cat([self.norm(x)[:, skip:] for x in fetched], dim=-1)
        return features, centers, group_idx

    def cloud_features(
        self,
        xyz: np.ndarray,
        *,
        official_train_mode: bool,
        seed: int,
        key: str,
        center_idx: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Features (G,1152) and centres (G,3) of one cloud (N,3), as numpy float32.

        The official Real3D-AD / M3DM extractors never switch Point-MAE to eval mode: BatchNorm
        uses the cloud's own statistics and DropPath drops residual branches at random. With
        ``official_train_mode=True`` that behaviour is reproduced, with the randomness seeded from
        `seed` and `key` (e.g. the sample id) so that every result is repeatable. `center_idx`
        (G,) chooses the group centres (default: FPS)."""
        device = next(self.parameters()).device
        cloud = torch.from_numpy(np.ascontiguousarray(xyz, dtype=np.float32))[None].to(device)
        devices = [device.index or 0] if device.type == "cuda" else []
        self.train(official_train_mode)
        try:
            with torch.random.fork_rng(devices=devices):
                torch.manual_seed((seed * 1_000_003 + zlib.crc32(key.encode())) % 2**63)
                idx = None if center_idx is None else torch.as_tensor(center_idx)[None]
                feats, centers, _ = self(cloud, idx)
        finally:
            self.eval()
        return feats[0].cpu().numpy(), centers[0].cpu().numpy()


def _check_cloud(xyz: torch.Tensor | np.ndarray, device: torch.device) -> torch.Tensor:
    if isinstance(xyz, np.ndarray):
        xyz = torch.from_numpy(np.ascontiguousarray(xyz))
    if not isinstance(xyz, torch.Tensor):
        raise ContractError(f"PointMAEEncoder: expected a (B,N,3) tensor, got {type(xyz).__name__}")
    if xyz.ndim != 3 or xyz.shape[-1] != 3 or xyz.shape[1] == 0:
        raise ContractError(
            f"PointMAEEncoder: expected a (B,N,3) cloud with N > 0, got {tuple(xyz.shape)}"
        )
    xyz = xyz.to(device=device, dtype=torch.float32)
    if not torch.isfinite(xyz).all():
        raise ContractError("PointMAEEncoder: the cloud contains NaN or inf coordinates")
    return xyz.contiguous()


def read_torch_checkpoint(path: str | os.PathLike, what: str, allow: tuple = ()) -> object:
    """``torch.load`` of a checkpoint without running code from it (weights_only; the numpy
    scalars that some checkpoints store beside the weights are allowed, plus the classes in
    `allow`); WeightsError otherwise."""
    path = Path(path)
    safe = [np.dtype, *{type(np.dtype(c)) for c in "?bhilqBHILQefd"}, *allow]
    scalar = getattr(getattr(np, "_core", np), "multiarray", None)
    if scalar is not None and hasattr(scalar, "scalar"):
        safe.append(scalar.scalar)
    try:
        with torch.serialization.safe_globals(safe):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated file, not a torch file, disallowed pickled objects
        raise WeightsError(f"{path}: cannot read {what} ({type(err).__name__}: {err})") from err


def check_state_keys(
    state: Mapping[str, torch.Tensor],
    expected: Mapping[str, torch.Tensor],
    path: str | os.PathLike,
    layout: str,
) -> None:
    """WeightsError listing missing, unexpected and mis-shaped keys (strict loading)."""
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    shapes = sorted(
        f"{k} {tuple(state[k].shape)} != {tuple(expected[k].shape)}"
        for k in set(state) & set(expected)
        if tuple(state[k].shape) != tuple(expected[k].shape)
    )
    if missing or unexpected or shapes:
        parts = []
        groups = (("missing", missing), ("unexpected", unexpected), ("wrong shape", shapes))
        for name, items in groups:
            if items:
                more = f", ... ({len(items)} in all)" if len(items) > 12 else ""
                parts.append(f"{name}: " + ", ".join(items[:12]) + more)
        raise WeightsError(f"{path}: not {layout}; " + "; ".join(parts))


def _check_center_idx(idx: torch.Tensor, b: int, n: int, device: torch.device) -> torch.Tensor:
    idx = torch.as_tensor(idx, device=device)
    if idx.ndim != 2 or idx.shape[0] != b or idx.shape[1] == 0 or idx.is_floating_point():
        raise ContractError(
            f"PointMAEEncoder: center_idx must be (B={b}, G>0) integer indices, got "
            f"{tuple(idx.shape)} {idx.dtype}"
        )
    if int(idx.min()) < 0 or int(idx.max()) >= n:
        raise ContractError(f"PointMAEEncoder: center_idx outside [0, {n})")
    return idx.long()


def _extract_state(obj: object, path: Path) -> Mapping[str, torch.Tensor]:
    if isinstance(obj, Mapping):
        for key in ("base_model", "model", "state_dict"):
            if key in obj and isinstance(obj[key], Mapping):
                return obj[key]
        if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
            return obj
    raise WeightsError(
        f"{path}: not a Point-MAE checkpoint (expected a dict with a 'base_model' state dict, "
        f"as the official pretrain.pth, or a plain state dict)"
    )


def load_pointmae_checkpoint(
    path: str | os.PathLike, expected: Mapping[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """Reads an official Point-MAE checkpoint and returns the encoder's state dict.

    Accepted layouts: ``{'base_model': {...}}`` (official), or a plain state dict; keys may carry
    ``module.`` (DataParallel) and ``MAE_encoder.`` / ``base_model.`` prefixes. Pre-training-only
    entries (decoder, mask token, reconstruction head) are dropped. Every other key must match
    `expected` exactly, with the same shape: otherwise `WeightsError` lists what is missing,
    unexpected or mis-shaped.
    """
    path = Path(path)
    obj = read_torch_checkpoint(path, "Point-MAE checkpoint")
    state: dict[str, torch.Tensor] = {}
    for key, value in _extract_state(obj, path).items():
        key = key.replace("module.", "", 1) if key.startswith("module.") else key
        if key.startswith(PRETRAINING_ONLY):
            continue
        for prefix in ("MAE_encoder.", "base_model."):
            if key.startswith(prefix):
                key = key[len(prefix) :]
                break
        state[key] = value
    check_state_keys(
        state, expected, path,
        "a Point-MAE encoder checkpoint with the official key layout (MAE_encoder.encoder.*, "
        ".pos_embed.*, .blocks.blocks.<i>.*, .norm.*)",
    )
    return state
