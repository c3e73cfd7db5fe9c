"""The full Point-MAE masked autoencoder (encoder, decoder with mask tokens, prediction head),
its official-checkpoint loader and the masked-reconstruction training loop.

Provenance: re-implemented (own code) from Point-MAE (Pang et al., ECCV 2022; github
Pang-Yatian/Point-MAE ``models/Point_MAE.py``, ``cfgs/pretrain.yaml``). Shared by IMRNet (masked
reconstruction is the method), and usable by any Point-MAE user that wants a non-random backbone
(`pretrain_pointmae` writes checkpoints in the official layout, so the encoder-only
`benchmark.components.backbones.pointmae.PointMAEEncoder` reads them too).

Architecture (state-dict keys exactly as the official ``Point_MAE`` module):
- ``MAE_encoder.encoder.*``: mini-PointNet tokens of the (relative) patch points;
  ``MAE_encoder.pos_embed.*``: MLP 3-128-384 of the centres; ``MAE_encoder.blocks.blocks.<i>.*``:
  12 pre-norm blocks (pos added before each, drop path 0..0.1); ``MAE_encoder.norm.*``;
- ``mask_token`` (1,1,384); ``decoder_pos_embed.*`` MLP 3-128-384; ``MAE_decoder.blocks.<i>.*``: 4
  blocks (pos added before each); ``MAE_decoder.norm.*``; the decoder returns the normalised
  outputs of the mask tokens;
- ``increase_dim.0.*``: Conv1d(384, 3*group_size, 1): the points of each masked patch, relative
  to its centre.
Loss: l2 Chamfer distance (mean squared nearest distance both ways, as ``ChamferDistanceL2``),
over all predicted vs all ground-truth patches of the batch, patch by patch.
Masking: random, ``int(ratio * G)`` patches per cloud (official ``_mask_center_rand``), drawn
from a seeded numpy Generator (official: unseeded ``np.random.shuffle``).

Official pre-training recipe (defaults of `PretrainConfig`): ShapeNet-55 clouds of 1024 points,
64 groups of 32, mask ratio 0.6, AdamW lr 1e-3 / weight decay 0.05, cosine schedule with 10
warm-up epochs, 300 epochs, batch 128, augmentation ``PointcloudScaleAndTranslate`` (per-axis
scale U(2/3, 3/2), translation U(-0.2, 0.2)) on clouds normalised to the unit sphere.
"""

from __future__ import annotations

import io
import math
import os
import time
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from benchmark.components.backbones.pointmae import (
    POINTMAE_WEIGHTS,
    _Block,
    _extract_state,
    read_torch_checkpoint,
)
from benchmark.components.geometry.pointops import farthest_point_sample, group_knn
from benchmark.errors import ContractError, WeightsError
from benchmark.weights import resolve_weights

#: prefix of the prediction head's keys (its output size depends on the group size)
HEAD_KEY = "increase_dim.0."


class _TokenEncoder(nn.Module):
    """Mini-PointNet (M,K,3) -> (M,C), keys as the official ``Encoder``; hidden widths
    configurable (official 128, 256, 512; smaller only for random-init tests)."""

    def __init__(self, out_channels: int, widths: tuple[int, int, int] = (128, 256, 512)) -> None:
        super().__init__()
        a, b, c = widths
        self.first_conv = nn.Sequential(
            nn.Conv1d(3, a, 1), nn.BatchNorm1d(a), nn.ReLU(inplace=True), nn.Conv1d(a, b, 1)
        )
        self.second_conv = nn.Sequential(
            nn.Conv1d(2 * b, c, 1), nn.BatchNorm1d(c), nn.ReLU(inplace=True),
            nn.Conv1d(c, out_channels, 1),
        )  # fmt: skip

    def forward(self, groups: torch.Tensor) -> torch.Tensor:
        x = self.first_conv(groups.transpose(1, 2))
        x = torch.cat([x.max(dim=2, keepdim=True).values.expand(-1, -1, x.shape[2]), x], dim=1)
        return self.second_conv(x).max(dim=2).values


class _BlockStack(nn.Module):
    """``blocks`` ModuleList of pre-norm blocks; the positional embedding is added before each."""

    def __init__(self, dim: int, depth: int, heads: int, drop_path_rate: float) -> None:
        super().__init__()
        rates = torch.linspace(0, drop_path_rate, depth).tolist() if depth > 1 else [0.0]
        self.blocks = nn.ModuleList(_Block(dim, heads, r) for r in rates[:depth])

    def forward(self, x: torch.Tensor, pos: torch.Tensor) -> list[torch.Tensor]:
        """Outputs of every block."""
        outs = []
        for block in self.blocks:
            x = block(x + pos)
            outs.append(x)
        return outs


class _MaskEncoder(nn.Module):
    """``MAE_encoder``: tokens, position embedding, transformer, final norm."""

    def __init__(self, dim: int, depth: int, heads: int, drop_path_rate: float,
                 widths: tuple[int, int, int]) -> None:  # fmt: skip
        super().__init__()
        self.encoder = _TokenEncoder(dim, widths)
        self.pos_embed = nn.Sequential(nn.Linear(3, 128), nn.GELU(), nn.Linear(128, dim))
        self.blocks = _BlockStack(dim, depth, heads, drop_path_rate)
        self.norm = nn.LayerNorm(dim)

    def forward(self, neighborhood: torch.Tensor, center: torch.Tensor, visible: torch.Tensor
                ) -> torch.Tensor:  # fmt: skip
        """neighborhood (B,G,K,3), center (B,G,3), visible (B,G) bool with the same count per
        row -> (B,V,C) normalised tokens of the visible patches (in patch order)."""
        b, g, k, _ = neighborhood.shape
        tokens = self.encoder(neighborhood.reshape(b * g, k, 3)).reshape(b, g, -1)
        c = tokens.shape[-1]
        x = tokens[visible].reshape(b, -1, c)
        pos = self.pos_embed(center[visible].reshape(b, -1, 3))
        return self.norm(self.blocks(x, pos)[-1])


class _Decoder(nn.Module):
    """``MAE_decoder``: blocks + norm."""

    def __init__(self, dim: int, depth: int, heads: int, drop_path_rate: float) -> None:
        super().__init__()
        rates = torch.linspace(0, drop_path_rate, depth).tolist() if depth > 1 else [0.0]
        self.blocks = nn.ModuleList(_Block(dim, heads, r) for r in rates[:depth])
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, pos: torch.Tensor) -> list[torch.Tensor]:
        outs = []
        for block in self.blocks:
            x = block(x + pos)
            outs.append(x)
        return outs


class PointMAE(nn.Module):
    """Point-MAE masked autoencoder over pre-grouped patches (see the module docstring).

    ``trans_dim``/``depth``/``decoder_depth``/``num_heads``/``encoder_widths`` default to the
    official model; smaller values only make sense with random initialisation (tests)."""

    def __init__(
        self,
        group_size: int = 32,
        trans_dim: int = 384,
        depth: int = 12,
        decoder_depth: int = 4,
        num_heads: int = 6,
        drop_path_rate: float = 0.1,
        encoder_widths: tuple[int, int, int] = (128, 256, 512),
    ) -> None:
        super().__init__()
        if group_size < 1 or trans_dim % num_heads or depth < 1 or decoder_depth < 1:
            raise ContractError(
                f"PointMAE: invalid shape (group_size {group_size}, trans_dim {trans_dim}, heads "
                f"{num_heads}, depth {depth}, decoder_depth {decoder_depth})"
            )
        self.group_size = int(group_size)
        self.trans_dim = int(trans_dim)
        self.MAE_encoder = _MaskEncoder(
            trans_dim, depth, num_heads, drop_path_rate, tuple(encoder_widths)
        )
        self.mask_token = nn.Parameter(torch.zeros(1, 1, trans_dim))
        self.decoder_pos_embed = nn.Sequential(
            nn.Linear(3, 128), nn.GELU(), nn.Linear(128, trans_dim)
        )
        self.MAE_decoder = _Decoder(trans_dim, decoder_depth, num_heads, drop_path_rate)
        self.increase_dim = nn.Sequential(nn.Conv1d(trans_dim, 3 * group_size, 1))
        self._init_weights()

    def _init_weights(self) -> None:
        """As the official model: truncated-normal(0.02) linear weights, zero biases, unit
        LayerNorms, mask token trunc-normal(0.02); (Conv1d keeps PyTorch's default)."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        nn.init.trunc_normal_(self.mask_token, std=0.02)

    def reconstruct(
        self, neighborhood: torch.Tensor, center: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:
        """Predicted relative points of the masked patches: (B, M, group_size, 3), in the order
        of the masked patches (mask (B,G) bool, the same count M in every row)."""
        b = neighborhood.shape[0]
        x_vis = self.MAE_encoder(neighborhood, center, ~mask)
        c = x_vis.shape[-1]
        pos_vis = self.decoder_pos_embed(center[~mask].reshape(b, -1, 3))
        pos_mask = self.decoder_pos_embed(center[mask].reshape(b, -1, 3))
        m = pos_mask.shape[1]
        x_full = torch.cat([x_vis, self.mask_token.expand(b, m, c)], dim=1)
        pos_full = torch.cat([pos_vis, pos_mask], dim=1)
        x_rec = self.MAE_decoder.norm(self.MAE_decoder(x_full, pos_full)[-1][:, -m:])
        out = self.increase_dim(x_rec.transpose(1, 2)).transpose(1, 2)
        return out.reshape(b, m, -1, 3)

    def loss(self, neighborhood: torch.Tensor, center: torch.Tensor, mask: torch.Tensor
             ) -> torch.Tensor:  # fmt: skip
        """l2 Chamfer between the predicted and the true points of the masked patches."""
        pred = self.reconstruct(neighborhood, center, mask)
        b, m = pred.shape[:2]
        gt = neighborhood[mask].reshape(b * m, -1, 3)
        return chamfer_l2(pred.reshape(b * m, -1, 3), gt).mean()

    def decoder_features(
        self, neighborhood: torch.Tensor, center: torch.Tensor, layers: Sequence[int] = (1, 2, 3)
    ) -> torch.Tensor:
        """Features of every patch without masking: encoder over all patches, decoder blocks
        `layers` (1-based) each through the decoder norm, concatenated -> (B, G, len*C)."""
        visible = torch.ones(center.shape[:2], dtype=torch.bool, device=center.device)
        x = self.MAE_encoder(neighborhood, center, visible)
        outs = self.MAE_decoder(x, self.decoder_pos_embed(center))
        if not layers or max(layers) > len(outs) or min(layers) < 1:
            raise ContractError(f"decoder_features: layers {tuple(layers)} outside 1..{len(outs)}")
        return torch.cat([self.MAE_decoder.norm(outs[i - 1]) for i in layers], dim=-1)


def chamfer_l2(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Batched l2 Chamfer of small sets: a (P,n,3), b (P,m,3) -> (P,) mean squared nearest
    distance a->b plus b->a (differentiable; dense (P,n,m) distances, meant for patches)."""
    d = torch.cdist(a, b).pow(2)
    return d.min(2).values.mean(1) + d.min(1).values.mean(1)


def random_mask(batch: int, groups: int, ratio: float, rng: np.random.Generator) -> torch.Tensor:
    """(B,G) bool: ``int(ratio*G)`` random patches masked per row (official rule)."""
    if not 0.0 <= ratio < 1.0:
        raise ContractError(f"random_mask: ratio {ratio} must lie in [0, 1)")
    m = int(ratio * groups)
    mask = np.zeros((batch, groups), bool)
    for i in range(batch):
        mask[i, rng.permutation(groups)[:m]] = True
    return torch.from_numpy(mask)


def group_fps_knn(xyz: torch.Tensor, num_group: int, group_size: int
                  ) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """Official Point-MAE grouping of (B,N,3): FPS centres, kNN patches relative to them."""
    b, n, _ = xyz.shape
    g, k = min(num_group, n), min(group_size, n)
    idx = farthest_point_sample(xyz, g)
    batch = torch.arange(b)[:, None]
    centers = xyz[batch, idx]
    nb = group_knn(xyz, centers, k)
    return xyz[batch[:, :, None], nb] - centers[:, :, None], centers


def unit_sphere(points: np.ndarray) -> np.ndarray:
    """Official ``pc_norm``: centred on the mean, divided by the largest distance to it."""
    pts = points - points.mean(0, dtype=np.float64)
    r = float(np.sqrt((pts**2).sum(1)).max()) if len(pts) else 1.0
    return (pts / (r if r > 0 else 1.0)).astype(np.float32)


def scale_and_translate(
    neighborhood: torch.Tensor, center: torch.Tensor, rng: np.random.Generator,
    scale: tuple[float, float] = (2 / 3, 3 / 2), shift: float = 0.2,
) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """``PointcloudScaleAndTranslate`` applied to grouped clouds: per cloud a per-axis scale
    U(scale) and translation U(-shift, shift) (relative patch points are scaled only)."""
    b = center.shape[0]
    s = torch.from_numpy(rng.uniform(*scale, size=(b, 1, 3)).astype(np.float32))
    t = torch.from_numpy(rng.uniform(-shift, shift, size=(b, 1, 3)).astype(np.float32))
    return neighborhood * s[:, :, None], center * s + t


# ---------------------------------------------------------------------------------------------
# checkpoints


def _tile_head(value: torch.Tensor, want: tuple[int, ...], key: str) -> torch.Tensor:
    """The official head predicts 3*32 values per patch; a model with group size K > 32 gets
    each predicted point repeated (point j of the new head = point j mod 32 of the official
    one), so its first prediction is the official point set with repeats (same Chamfer)."""
    have_pts, want_pts = value.shape[0] // 3, want[0] // 3
    pts = value.reshape(have_pts, 3, *value.shape[1:])
    rows = torch.arange(want_pts) % have_pts
    return pts[rows].reshape(want_pts * 3, *value.shape[1:]).clone()


def load_pointmae_mae_checkpoint(
    path: str | os.PathLike, expected: Mapping[str, torch.Tensor], adapt_head: bool = True
) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Reads a full Point-MAE checkpoint (encoder, decoder, head) for a `PointMAE` whose state
    dict is `expected`. Returns (state dict, notes about adaptations).

    Layouts: ``{'base_model': {...}}`` (official ``pretrain.pth``, and `pretrain_pointmae`'s
    output) or a plain state dict; a leading ``module.`` is stripped. The key check is strict:
    missing, unexpected or mis-shaped keys raise `WeightsError` listing them. The one allowed
    difference (``adapt_head``): the prediction head of a checkpoint trained with another group
    size is tiled (or truncated) to this model's point count, see `_tile_head`."""
    path = Path(path)
    raw = _extract_state(read_torch_checkpoint(path, "Point-MAE checkpoint"), path)
    state = {(k[len("module.") :] if k.startswith("module.") else k): v for k, v in raw.items()}
    notes: list[str] = []
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    shapes = []
    for k in sorted(set(state) & set(expected)):
        have, want = tuple(state[k].shape), tuple(expected[k].shape)
        if have == want:
            continue
        if adapt_head and k.startswith(HEAD_KEY) and have[0] % 3 == 0 and have[1:] == want[1:]:
            state[k] = _tile_head(state[k], want, k)
            notes.append(f"{k}: {have} -> {want} (head of group size {have[0] // 3} tiled)")
        else:
            shapes.append(f"{k} {have} != {want}")
    if missing or unexpected or shapes:
        parts = []
        found = (("missing", missing), ("unexpected", unexpected), ("wrong shape", shapes))
        for name, items in found:
            if items:
                more = f", ... ({len(items)} in all)" if len(items) > 12 else ""
                parts.append(f"{name}: {', '.join(items[:12])}{more}")
        raise WeightsError(
            f"{path}: not a full Point-MAE checkpoint with the official key layout "
            "(MAE_encoder.*, mask_token, decoder_pos_embed.*, MAE_decoder.*, increase_dim.*); "
            + "; ".join(parts)
        )
    return {k: state[k] for k in expected}, notes


def build_pointmae(
    pretrained: bool | str | os.PathLike = True,
    weights: str | os.PathLike | None = None,
    adapt_head: bool = True,
    **shape,
) -> tuple[PointMAE, Path | None, list[str]]:
    """A `PointMAE` with weights: ``pretrained=True`` -> `weights` or the official
    ``pretrain.pth`` from the caches (offline without it: `WeightsError` naming the file);
    ``pretrained=PATH`` -> that file; ``pretrained=False`` -> random initialisation."""
    model = PointMAE(**shape)
    if pretrained is False or pretrained is None:
        if weights is not None:
            raise ContractError("PointMAE: weights given but pretrained=False")
        return model, None, []
    if pretrained is not True:
        if weights is not None:
            raise ContractError("PointMAE: give the checkpoint as pretrained=PATH or weights=, "
                                "not both")
        weights = pretrained
    path = resolve_weights(POINTMAE_WEIGHTS, weights)
    state, notes = load_pointmae_mae_checkpoint(path, model.state_dict(), adapt_head)
    model.load_state_dict(state)
    return model, path, notes


def save_checkpoint(path: str | os.PathLike, model: PointMAE, **extra: object) -> None:
    """Atomically writes ``{'base_model': state_dict, **extra}`` (official layout)."""
    from benchmark.cache import atomic_write_bytes

    buf = io.BytesIO()
    torch.save({"base_model": model.state_dict(), **extra}, buf)
    atomic_write_bytes(path, buf.getvalue())


# ---------------------------------------------------------------------------------------------
# masked-reconstruction training


@dataclass
class PretrainConfig:
    """Pre-training schedule; defaults = the official Point-MAE ``cfgs/pretrain.yaml``."""

    epochs: int = 300
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup_epochs: int = 10
    npoints: int = 1024
    num_group: int = 64
    group_size: int = 32
    mask_ratio: float = 0.6
    augment: bool = True
    seed: int = 0
    # model shape (official values; smaller ones give checkpoints only PointMAE of that shape reads)
    trans_dim: int = 384
    depth: int = 12
    decoder_depth: int = 4
    num_heads: int = 6
    encoder_widths: tuple[int, int, int] = (128, 256, 512)

    def model_shape(self) -> dict:
        return {"group_size": self.group_size, "trans_dim": self.trans_dim, "depth": self.depth,
                "decoder_depth": self.decoder_depth, "num_heads": self.num_heads,
                "encoder_widths": tuple(self.encoder_widths)}  # fmt: skip

    def check(self) -> PretrainConfig:
        if min(self.epochs, self.batch_size, self.npoints, self.num_group, self.group_size) < 1:
            raise ContractError(f"pretrain: epochs, batch size and sizes must be >= 1 ({self})")
        if not 0.0 < self.mask_ratio < 1.0:
            raise ContractError(f"pretrain: mask_ratio {self.mask_ratio} must lie in (0, 1)")
        return self


def cosine_lr(epoch: float, cfg_lr: float, epochs: int, warmup: int, floor: float = 1e-6
              ) -> float:  # fmt: skip
    """Linear warm-up then cosine decay to `floor` (timm CosineLRScheduler as configured)."""
    if warmup > 0 and epoch < warmup:
        return floor + (cfg_lr - floor) * epoch / warmup
    span = max(epochs - warmup, 1)
    progress = min(epoch - warmup, span) / span
    return floor + 0.5 * (cfg_lr - floor) * (1 + math.cos(math.pi * progress))


def train_masked_reconstruction(
    model: PointMAE,
    batches: Callable[[int, np.random.Generator], list[tuple[torch.Tensor, torch.Tensor]]],
    *,
    epochs: int,
    lr: float,
    weight_decay: float,
    warmup_epochs: int,
    mask_ratio: float,
    augment: bool,
    seed: int,
    start_epoch: int = 0,
    optimizer_state: dict | None = None,
    on_epoch_end: Callable[[int, float, torch.optim.Optimizer], None] | None = None,
    progress: Callable[[int, float], None] | None = None,
    device: str = "cpu",
) -> list[float]:
    """Trains `model` to reconstruct randomly masked patches (l2 Chamfer), AdamW + cosine.

    ``batches(epoch, rng)`` returns that epoch's list of (neighborhood (B,G,K,3), centres
    (B,G,3)). Every random draw of an epoch (batches, masks, augmentation, drop path) comes from
    (seed, epoch), so a run resumed at `start_epoch` ends where an uninterrupted one does.
    Returns the mean loss of each epoch run."""
    model.to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    if optimizer_state:
        opt.load_state_dict(optimizer_state)
    losses = []
    for epoch in range(start_epoch, epochs):
        rng = np.random.default_rng([seed, epoch])
        torch.manual_seed(int(rng.integers(2**62)))
        parts = batches(epoch, rng)
        total, count = 0.0, 0
        for i, (nb, ctr) in enumerate(parts):
            for group in opt.param_groups:
                group["lr"] = cosine_lr(epoch + i / max(len(parts), 1), lr, epochs, warmup_epochs)
            if augment:
                nb, ctr = scale_and_translate(nb, ctr, rng)
            mask = random_mask(ctr.shape[0], ctr.shape[1], mask_ratio, rng)
            loss = model.loss(nb.to(device), ctr.to(device), mask.to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(ctr)
            count += len(ctr)
            if progress is not None:
                progress(len(ctr), float(loss.detach()))
        losses.append(total / max(count, 1))
        if on_epoch_end is not None:
            on_epoch_end(epoch, losses[-1], opt)
    model.eval()
    return losses


def _cloud_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    return np.random.default_rng([seed, epoch, index, 7])


def pretrain_pointmae(
    clouds: Sequence,
    out: str | os.PathLike,
    config: PretrainConfig | None = None,
    init: bool | str | os.PathLike = False,
    resume: bool = True,
    save_every: int = 1,
    device: str = "cpu",
    log: Callable[[str], None] | None = None,
    show_progress: bool | None = None,
) -> dict:
    """Point-MAE masked-reconstruction pre-training on `clouds`, checkpoint at `out`.

    `clouds`: a sequence whose items are (N,3) arrays (or callables returning one), read lazily
    per batch. Each epoch visits every cloud once in a seeded random order; a cloud is
    normalised to the unit sphere, randomly sub-sampled (without replacement; with replacement
    when smaller) to ``npoints`` and grouped by FPS + kNN. `init`: starting weights
    (False = random, True = official pretrain.pth, or a path). The checkpoint at `out` is written
    atomically every `save_every` epochs and at the end in the official layout
    (``base_model``) plus ``epoch``, ``optimizer``, ``config``, ``losses``; with `resume` an
    existing checkpoint of the same config continues from its epoch. Returns a summary dict."""
    from benchmark.progress import Bar

    cfg = (config or PretrainConfig()).check()
    if len(clouds) == 0:
        raise ContractError("pretrain: no training clouds")
    out = Path(out)
    start, opt_state, losses = 0, None, []
    with torch.random.fork_rng():
        torch.manual_seed(cfg.seed)  # the random initialisation (init=False) is seeded too
        model, _, notes = build_pointmae(init, **cfg.model_shape())
    if resume and out.is_file():
        old = read_torch_checkpoint(out, "Point-MAE checkpoint")
        saved = old.get("config") if isinstance(old, Mapping) else None
        same = {**asdict(cfg), "epochs": None}
        if not isinstance(saved, Mapping) or {**saved, "epochs": None} != same:
            raise ContractError(
                f"pretrain: {out} holds a run with another configuration ({saved}); "
                "use another --out or delete it (only the number of epochs may change)"
            )
        state, _ = load_pointmae_mae_checkpoint(out, model.state_dict(), adapt_head=False)
        model.load_state_dict(state)
        start, opt_state = int(old["epoch"]), old.get("optimizer")
        losses = list(old.get("losses") or [])
        if log:
            log(f"resuming {out} at epoch {start}/{cfg.epochs}")
    for note in notes:
        if log:
            log(note)

    def load(i: int) -> np.ndarray:
        item = clouds[i]
        pts = item() if callable(item) else item
        pts = np.asarray(pts, dtype=np.float32)
        if pts.ndim != 2 or pts.shape[1] < 3 or len(pts) == 0:
            raise ContractError(f"pretrain: cloud {i} has shape {pts.shape}, expected (N,3)")
        return pts[:, :3]

    def batches(epoch: int, rng: np.random.Generator) -> list:
        order = rng.permutation(len(clouds))
        parts = []
        for s in range(0, len(order), cfg.batch_size):
            xyz = []
            for i in order[s : s + cfg.batch_size]:
                pts = unit_sphere(load(int(i)))
                r = _cloud_rng(cfg.seed, epoch, int(i))
                pick = r.choice(len(pts), cfg.npoints, replace=len(pts) < cfg.npoints)
                xyz.append(pts[pick])
            parts.append(group_fps_knn(torch.from_numpy(np.stack(xyz)), cfg.num_group,
                                       cfg.group_size))  # fmt: skip
        return parts

    steps = (cfg.epochs - start) * len(clouds)
    t0 = time.perf_counter()
    bar = Bar(steps, f"pretrain {out.name}", unit="cloud", show=show_progress)

    def on_epoch_end(epoch: int, loss: float, opt: torch.optim.Optimizer) -> None:
        losses.append(loss)
        done = epoch + 1
        if done % save_every == 0 or done == cfg.epochs:
            save_checkpoint(out, model, epoch=done, optimizer=opt.state_dict(),
                            config=asdict(cfg), losses=losses)  # fmt: skip
        if log:
            log(f"epoch {done}/{cfg.epochs} loss {loss:.5f}")

    def progress(n: int, loss: float) -> None:
        bar.update(n)
        bar.set_postfix(f"loss {loss:.4f}")

    with bar:
        train_masked_reconstruction(
            model, batches, epochs=cfg.epochs, lr=cfg.lr, weight_decay=cfg.weight_decay,
            warmup_epochs=cfg.warmup_epochs, mask_ratio=cfg.mask_ratio, augment=cfg.augment,
            seed=cfg.seed, start_epoch=start, optimizer_state=opt_state,
            on_epoch_end=on_epoch_end, progress=progress, device=device,
        )  # fmt: skip
    if start >= cfg.epochs and not out.is_file():
        save_checkpoint(out, model, epoch=start, config=asdict(cfg), losses=losses)
    seconds = time.perf_counter() - t0
    return {"out": str(out), "epochs": cfg.epochs, "start_epoch": start, "losses": losses,
            "clouds": len(clouds), "seconds": seconds,
            "clouds_per_s": steps / seconds if seconds > 0 else float("nan")}  # fmt: skip


def seed_from(seed: int, key: str) -> int:
    """A per-item seed from a run seed and a key (e.g. a sample id)."""
    return (int(seed) * 1_000_003 + zlib.crc32(key.encode())) % 2**63

