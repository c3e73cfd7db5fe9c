"""Prompt training of PointAD (hybrid loss) and PointAD+ (hierarchical loss).

Provenance: PointAD ``train.py`` as described in specs/methods.md §1.5 and paper §3.5-3.6.
Per batch of objects (each with V renders): the views are encoded without gradient; with
logits = cos / 0.07 against the rendering prompts,
- 2D global: CE(view logits, per-view label = any GT pixel in the view's GT render);
- 3D global: CE(mean over views of the view logits, object label) (view-wise MIL);
- 2D local: Focal + Dice(abnormal, mask) + Dice(normal, 1 - mask) on the up-sampled per-view
  probability maps;
- 3D local: Dice(abnormal, gt) + Dice(normal, 1 - gt) on the back-projected point maps.
PointAD+ adds L^g = Dice on the explicit (G-aggregated) point maps against the geometry prompts,
and L_cross (losses.cross_hierarchy_loss). Total = plain sum. Adam(lr 1e-3, betas (0.5, 0.999)),
only the prompts train. Deviation: the official 3D dice runs over the 336x336 organized array
(background cells count in the normal channel's target); ours runs over the cloud's points.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from benchmark.components.render import multiview as rd
from methods.pointad.aggregation import PointAggregator
from methods.pointad.data import Cloud
from methods.pointad.engine import PointADEngine
from methods.pointad.losses import (
    TEMPERATURE,
    cross_hierarchy_loss,
    dice_loss_list,
    focal_loss,
    two_class_dice,
)

log = logging.getLogger(__name__)


def make_aggregator(engine: PointADEngine, cloud: Cloud, k: int, sigma: float,
                    alpha: float) -> PointAggregator:
    r = cloud.render
    return PointAggregator(cloud.points, r.projected_index, r.effective_visibility("pointad"),
                           (r.image_size, r.image_size), engine.grid_hw, k, sigma, alpha,
                           engine.device)


def batch_loss(engine: PointADEngine, clouds: Sequence[Cloud],
               aggregators: Sequence[PointAggregator] | None = None) -> tuple[torch.Tensor, dict]:
    """The (hybrid or hierarchical) loss of one batch of clouds; returns (total, parts)."""
    dev = engine.device
    v = clouds[0].render.num_views
    images = np.concatenate([c.render.images for c in clouds])
    gfeat, pfeat = engine.encode_views(images)
    masks = torch.from_numpy(np.concatenate([c.view_masks for c in clouds])).to(dev).float()
    view_labels = torch.from_numpy(np.concatenate([c.view_labels for c in clouds])).to(dev)
    labels = torch.tensor([c.label for c in clouds], device=dev)

    categories = sorted({c.category for c in clouds})
    texts = {cat: engine.text_features(cat) for cat in categories}
    logits = torch.cat([engine.global_logits(gfeat[i * v : (i + 1) * v], texts[c.category])
                        for i, c in enumerate(clouds)])  # (B*V,2)
    loss_2d_global = F.cross_entropy(logits, view_labels)
    obj_logits = logits.view(len(clouds), v, 2).mean(1)
    loss_3d_global = F.cross_entropy(obj_logits, labels)

    maps = torch.cat([
        engine.similarity_maps(pfeat[i * v : (i + 1) * v], texts[c.category])
        for i, c in enumerate(clouds)
    ])  # (B*V,2,H,W)
    loss_2d_local = focal_loss(maps, masks) + two_class_dice(maps, masks)

    point_maps, gts = [], []
    for i, c in enumerate(clouds):
        point_maps.append(rd.backproject(c.render, maps[i * v : (i + 1) * v]))  # (M,2)
        gts.append(torch.from_numpy(c.point_mask).to(dev).float())
    loss_3d_local = (dice_loss_list([p[:, 1] for p in point_maps], gts)
                     + dice_loss_list([p[:, 0] for p in point_maps], [1 - g for g in gts]))
    parts = {"2d_global": loss_2d_global, "3d_global": loss_3d_global,
             "2d_local": loss_2d_local, "3d_local": loss_3d_local}

    if engine.geometry_prompts is not None:
        gtexts = {cat: engine.text_features(cat, geometry=True) for cat in categories}
        explicit = []
        for i, c in enumerate(clouds):
            cos = aggregators[i].explicit_logits(pfeat[i * v : (i + 1) * v], gtexts[c.category])
            explicit.append((cos / TEMPERATURE).softmax(-1))
        parts["geometry"] = (dice_loss_list([e[:, 1] for e in explicit], gts)
                             + dice_loss_list([e[:, 0] for e in explicit], [1 - g for g in gts]))
        parts["cross"] = torch.stack(
            [cross_hierarchy_loss(texts[cat], gtexts[cat]) for cat in categories]
        ).mean()
    total = sum(parts.values())
    return total, {k: float(val.detach()) for k, val in parts.items()}


def train_prompts(engine: PointADEngine, clouds: Sequence[Cloud], *, epochs: int = 15,
                  batch_size: int = 4, lr: float = 1e-3, betas: tuple[float, float] = (0.5, 0.999),
                  seed: int = 111, k: int = 10, sigma: float = 1.0,
                  alpha: float = 0.5) -> list[dict]:
    """Trains the prompts in place; returns one record per epoch (mean loss parts, time)."""
    if not clouds:
        raise ValueError("no training clouds")
    views = {c.render.num_views for c in clouds}
    if len(views) != 1:
        raise ValueError(f"all training clouds need the same number of views, got {sorted(views)}")
    aggs = None
    if engine.geometry_prompts is not None:
        aggs = [make_aggregator(engine, c, k, sigma, alpha) for c in clouds]
    params = engine.prompt_parameters()
    opt = torch.optim.Adam(params, lr=lr, betas=betas)
    gen = torch.Generator().manual_seed(seed)
    history = []
    for epoch in range(epochs):
        t0 = time.perf_counter()
        order = torch.randperm(len(clouds), generator=gen).tolist()
        sums: dict[str, float] = {}
        n_batches = math.ceil(len(clouds) / batch_size)
        for b in range(n_batches):
            idx = order[b * batch_size : (b + 1) * batch_size]
            total, parts = batch_loss(engine, [clouds[i] for i in idx],
                                      None if aggs is None else [aggs[i] for i in idx])
            opt.zero_grad(set_to_none=True)
            total.backward()
            opt.step()
            parts["total"] = float(total.detach())
            for key, val in parts.items():
                sums[key] = sums.get(key, 0.0) + val
        rec = {key: val / n_batches for key, val in sums.items()}
        rec.update(epoch=epoch + 1, seconds=time.perf_counter() - t0)
        log.info("pointad epoch %d/%d: %s", epoch + 1, epochs, rec)
        history.append(rec)
    return history
