"""Perf suite "backbones": Point-MAE group features of one 16,384-point cloud in the M3DM config
(1024 groups of 128) and the Real3D-AD config (16384 groups of 128, eval and the official train
mode), split into FPS, kNN grouping and the network; WideResNet-50-2 layers 2+3 on a 224x224
image. ``quick=True``: only the M3DM config and the WRN50 row. Random weights (timings do not
depend on them). ``cpu_seconds`` is this process's CPU time."""

from __future__ import annotations

import time

import numpy as np
import torch

from benchmark.perf import peak_rss_mb, suite


def _ellipsoid(n: int, seed: int = 0) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    d = rng.normal(size=(n, 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    return torch.from_numpy((d * [30.0, 20.0, 10.0]).astype(np.float32))[None]


@suite("backbones")
def backbones(quick: bool = False) -> list[dict]:
    from benchmark.components.backbones.pointmae import PointMAEEncoder
    from benchmark.components.backbones.wide_resnet import WideResNet50Features
    from benchmark.components.geometry.pointops import farthest_point_sample, group_knn

    xyz = _ellipsoid(16384)
    configs = [(1024, 128, False)]
    if not quick:
        configs += [(16384, 128, False), (16384, 128, True)]
    rows = []
    for num_group, group_size, train_mode in configs:
        enc = PointMAEEncoder(num_group, group_size, pretrained=False).train(train_mode)
        t0 = time.perf_counter()
        idx = farthest_point_sample(xyz, num_group)
        t_fps = time.perf_counter() - t0
        t0 = time.perf_counter()
        group_knn(xyz, xyz[0, idx[0]][None], group_size)
        t_knn = time.perf_counter() - t0
        t0, c0 = time.perf_counter(), time.process_time()
        feats, _, _ = enc(xyz)
        sec, cpu = time.perf_counter() - t0, time.process_time() - c0
        rows.append(
            {
                "step": f"pointmae G={num_group} K={group_size}"
                + (" train-mode" if train_mode else ""),
                "points": xyz.shape[1],
                "seconds": sec,
                "cpu_seconds": cpu,
                "fps_s": t_fps,
                "knn_s": t_knn,
                "network_s": sec - t_fps - t_knn,
                "out": "x".join(map(str, feats.shape)),
                "peak_rss_mb": peak_rss_mb(),
            }
        )
    net = WideResNet50Features(pretrained=False)
    img = torch.randn(1, 3, 224, 224)
    net(img)  # warm-up
    t0, c0 = time.perf_counter(), time.process_time()
    out = net(img)
    rows.append(
        {
            "step": "wide_resnet50_2 layers 2+3",
            "points": 0,
            "seconds": time.perf_counter() - t0,
            "cpu_seconds": time.process_time() - c0,
            "out": " ".join("x".join(map(str, o.shape)) for o in out),
            "peak_rss_mb": peak_rss_mb(),
        }
    )
    return rows
