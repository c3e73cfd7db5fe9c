"""PointAD / PointAD+ training losses.

Provenance: focal and dice losses as PointAD's ``loss.py`` behaves (specs/methods.md §1.5): focal
loss on softmax probabilities with gamma 2 and smoothing 1e-5 (one-hot clamped to
[smooth, 1 - smooth], pt = sum(onehot * p) + smooth), binary dice with smooth 1 averaged over the
batch. The cross-hierarchy contrastive loss L_cross is re-implemented from PointAD+ §3.5.3
(no code): each printed ratio cos(anchor, pos) / (cos(anchor, pos) + cos(anchor, neg)) is read
as a two-way cross-entropy over [cos(anchor, pos), cos(anchor, neg)] / tau with the positive as
target (GUESS: tau = 0.07, CLIP's temperature used everywhere else in PointAD).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

TEMPERATURE = 0.07


def focal_loss(probs: torch.Tensor, target: torch.Tensor, gamma: float = 2.0,
               smooth: float = 1e-5) -> torch.Tensor:
    """probs (B,C,...) already softmaxed; target (B,...) or (B,1,...) integer class map."""
    c = probs.shape[1]
    p = probs.movedim(1, -1).reshape(-1, c)
    t = target.reshape(-1).long()
    onehot = F.one_hot(t, c).to(p.dtype).clamp(smooth / (c - 1), 1.0 - smooth)
    pt = (onehot * p).sum(1) + smooth
    return (-((1.0 - pt) ** gamma) * pt.log()).mean()


def dice_loss(pred: torch.Tensor, target: torch.Tensor, smooth: float = 1.0) -> torch.Tensor:
    """1 - mean over the batch of (2 I + s) / (P + T + s); pred/target (B, ...)."""
    b = target.shape[0]
    p = pred.reshape(b, -1)
    t = target.reshape(b, -1).to(p.dtype)
    dice = (2 * (p * t).sum(1) + smooth) / (p.sum(1) + t.sum(1) + smooth)
    return 1.0 - dice.mean()


def dice_loss_list(preds: list[torch.Tensor], targets: list[torch.Tensor],
                   smooth: float = 1.0) -> torch.Tensor:
    """Dice averaged over samples of different sizes (per-point maps of several clouds)."""
    losses = [dice_loss(p[None], t[None], smooth) for p, t in zip(preds, targets)]
    return torch.stack(losses).mean()


def two_class_dice(probs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Dice(abnormal, mask) + Dice(normal, 1 - mask); probs (B,2,...), mask (B,...)."""
    return dice_loss(probs[:, 1], mask) + dice_loss(probs[:, 0], 1 - mask)


def cross_hierarchy_loss(render_text: torch.Tensor, geometry_text: torch.Tensor,
                         tau: float = TEMPERATURE) -> torch.Tensor:
    """L_cross of PointAD+ (paper §3.5.3); both inputs (2,E) rows [normal, abnormal], L2-normed.

    The four printed terms (anchor, positive, negative):
    (g_a^g, g_a^r, g_n^r), (g_n^r, g_n^g, g_a^g), (g_a^r, g_a^g, g_n^g), (g_n^g, g_n^r, g_a^r).
    """
    rn, ra = render_text[0], render_text[1]
    gn, ga = geometry_text[0], geometry_text[1]
    triples = ((ga, ra, rn), (rn, gn, ga), (ra, ga, gn), (gn, rn, ra))
    logits = torch.stack(
        [torch.stack([a @ pos, a @ neg]) for a, pos, neg in triples]
    ) / tau
    target = torch.zeros(len(triples), dtype=torch.long, device=logits.device)
    return F.cross_entropy(logits, target, reduction="sum")
