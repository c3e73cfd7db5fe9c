"""The Group3AD detector: Reg3D-AD's pipeline (methods/reg3dad.py) with a contrastively fine-tuned
Point-MAE encoder (IUN then IAN, Algorithm 2) and AGCS group centres at inference."""

from __future__ import annotations

import copy
import os
from collections.abc import Iterable

import numpy as np
import torch

from benchmark.components.geometry.descriptors import fpfh
from benchmark.components.geometry.pointops import farthest_point_sample
from benchmark.errors import ConfigError
from benchmark.sample import Sample
from methods.group3ad.agcs import agcs_centres
from methods.group3ad.clustering import alignment_loss, cluster_features, uniformity_loss
from methods.group3ad.fake import MODES, RESPONSES, fake_anomaly, fpfh_response
from methods.reg3dad import Reg3DAD

OPTIMIZERS = ("adam", "adamw", "sgd")
#: the official Real3D-AD voxel (mm); noise_unit="voxel" scales the fake-anomaly noise by
#: voxel / OFFICIAL_VOXEL, so it is in millimetres with the official recipe
OFFICIAL_VOXEL = 0.5


class Group3AD(Reg3DAD):
    """Group3AD (see the package docstring for the pipeline, provenance and every guess).

    Switches for the paper's ablations: ``iun_ian`` (fine-tune the encoder, Table 5), ``agcs``
    (adaptive centres at inference, Table 6), ``xyz_bank`` (Reg3D-AD's raw-xyz bank; off = the
    PatchCore(PointMAE) pipeline the tables also extend). Reads ``sample.points`` only.
    """

    name = "group3ad"

    def __init__(
        self,
        # Reg3D-AD pipeline (official Real3D-AD values)
        num_group: int = 16384,
        group_size: int = 128,
        memory_size: int = 10000,
        num_nn: int = 1,
        normalize: str = "test",
        register: bool = True,
        voxel_size: float | str = "0.5mm",
        ransac_iterations: int = 100000,
        cache: bool = True,
        pointmae_train_mode: bool = True,
        pretrained: bool = True,
        weights: str | os.PathLike | None = None,
        seed: int = 42,
        device: str = "cpu",
        xyz_bank: bool = True,
        # modules
        iun_ian: bool = True,
        agcs: bool = True,
        # two-phase training (guesses unless stated)
        epochs: int = 20,
        lr: float = 1e-4,
        optimizer: str = "adam",
        weight_decay: float = 0.0,
        temperature: float = 1.0,
        k_range: tuple[int, int] = (2, 10),
        kmeans_n_init: int = 3,
        train_group_batch: int = 512,
        train_points: int | None = None,
        # fake anomalies (ranges from the paper)
        fake_anomalies: bool = True,
        fake_ratio_range: tuple[float, float] = (0.01, 0.10),
        fake_variance_range: tuple[float, float] = (0.01, 0.05),
        noise_unit: float | str = "voxel",
        fake_center: str = "l2",
        fake_mode: str = "replace",
        # AGCS (guesses)
        agcs_alpha: float = 0.3,
        agcs_neighbors: int = 16,
        agcs_high_fraction: float = 0.1,
        fpfh_max_points: int | None = 200_000,
    ) -> None:
        super().__init__(
            num_group=num_group, group_size=group_size, memory_size=memory_size, num_nn=num_nn,
            normalize=normalize, register=register, voxel_size=voxel_size,
            ransac_iterations=ransac_iterations, cache=cache,
            pointmae_train_mode=pointmae_train_mode, pretrained=pretrained, weights=weights,
            seed=seed, device=device, xyz_bank=xyz_bank,
        )  # fmt: skip
        if optimizer not in OPTIMIZERS:
            raise ConfigError(f"group3ad: optimizer must be one of {OPTIMIZERS}, got {optimizer!r}")
        if fake_center not in RESPONSES:
            raise ConfigError(
                f"group3ad: fake_center must be one of {sorted(RESPONSES)}, got {fake_center!r}"
            )
        if fake_mode not in MODES:
            raise ConfigError(f"group3ad: fake_mode must be one of {MODES}, got {fake_mode!r}")
        if noise_unit != "voxel" and (isinstance(noise_unit, str) or not noise_unit > 0):
            raise ConfigError(f"group3ad: noise_unit must be 'voxel' or > 0, got {noise_unit!r}")
        if epochs < 0 or train_group_batch < 2 or not lr > 0:
            raise ConfigError(
                f"group3ad: need epochs >= 0 ({epochs}), train_group_batch >= 2 "
                f"({train_group_batch}) and lr > 0 ({lr})"
            )
        self.iun_ian = bool(iun_ian)
        self.agcs = bool(agcs)
        self.epochs = int(epochs)
        self.lr = float(lr)
        self.optimizer = optimizer
        self.weight_decay = float(weight_decay)
        self.temperature = float(temperature)
        self.k_range = (int(k_range[0]), int(k_range[1]))
        if not 2 <= self.k_range[0] <= self.k_range[1]:
            raise ConfigError(f"group3ad: k_range must satisfy 2 <= min <= max, got {k_range}")
        self.kmeans_n_init = int(kmeans_n_init)
        self.train_group_batch = int(train_group_batch)
        self.train_points = None if train_points is None else int(train_points)
        self.fake_anomalies = bool(fake_anomalies)
        self.fake_ratio_range = tuple(float(v) for v in fake_ratio_range)
        self.fake_variance_range = tuple(float(v) for v in fake_variance_range)
        self.noise_unit = noise_unit
        self.fake_center = fake_center
        self.fake_mode = fake_mode
        self.agcs_alpha = float(agcs_alpha)
        self.agcs_neighbors = int(agcs_neighbors)
        self.agcs_high_fraction = float(agcs_high_fraction)
        self.fpfh_max_points = None if fpfh_max_points is None else int(fpfh_max_points)
        self.history: list[dict] = []
        self._initial_state = (
            copy.deepcopy(self.encoder.state_dict()) if self.iun_ian and self.epochs else None
        )

    # --- helpers ---------------------------------------------------------------------------
    def _fpfh_args(self) -> tuple[float, int, float, int]:
        """Real3D-AD's FPFH recipe (normals 1.0 / 30, FPFH 2.5 / 100 at the 0.5 mm voxel)."""
        v = self._voxel
        return (2.0 * v, 30, 5.0 * v, 100)

    def _noise_unit(self) -> float:
        if self.noise_unit == "voxel":
            return self._voxel / OFFICIAL_VOXEL
        return float(self.noise_unit)

    def _inference_centres(self, xyz: np.ndarray, sample_id: str) -> np.ndarray | None:
        if not self.agcs:
            return None
        with self.timer("agcs"):
            return agcs_centres(
                xyz, self.num_group, self.agcs_alpha, self.agcs_neighbors,
                self.agcs_high_fraction, self._fpfh_args(), self.fpfh_max_points, seed=self.seed,
            )  # fmt: skip

    def _fake_centre(self, xyz: np.ndarray, rng: np.random.Generator) -> int:
        """Eq. 1-2: the point of largest FPFH response (on a random subset above
        fpfh_max_points)."""
        subset = np.arange(len(xyz))
        if self.fpfh_max_points is not None and len(xyz) > self.fpfh_max_points:
            subset = np.sort(rng.choice(len(xyz), self.fpfh_max_points, replace=False))
        response = fpfh_response(fpfh(xyz[subset], *self._fpfh_args()), self.fake_center)
        return int(subset[int(np.argmax(response))])

    def _make_optimizer(self, params) -> torch.optim.Optimizer:
        if self.optimizer == "adam":
            return torch.optim.Adam(params, lr=self.lr, weight_decay=self.weight_decay)
        if self.optimizer == "adamw":
            return torch.optim.AdamW(params, lr=self.lr, weight_decay=self.weight_decay)
        return torch.optim.SGD(params, lr=self.lr, weight_decay=self.weight_decay)

    # --- fit -------------------------------------------------------------------------------
    def fit(self, train: Iterable[Sample]) -> None:
        xyzs, ids = self._registered_train(train)
        self.history = []
        if self.iun_ian and self.epochs:
            with self.timer("fine_tune"):
                self.fine_tune(xyzs)
        self._fit_banks(xyzs, ids)

    def fine_tune(self, clouds: list[np.ndarray]) -> list[dict]:
        """Algorithm 2 on the (registered, centred) train clouds: E/2 epochs of IUN on clouds
        with a fake anomaly, then E - E/2 epochs of IAN on the clouds as they are; one step per
        cloud, on `train_group_batch` groups drawn from its `num_group` FPS centres. Only the
        encoder's parameters are optimised. Appends one record per step to ``self.history``."""
        enc = self.encoder
        if self._initial_state is not None:  # every fit starts from the pretrained weights
            enc.load_state_dict(self._initial_state)
        device = next(enc.parameters()).device
        prepared = [self._prepare_cloud(xyz, i) for i, xyz in enumerate(clouds)]
        phase1 = self.epochs // 2
        opt = self._make_optimizer(list(enc.parameters()))
        devices = [device.index or 0] if device.type == "cuda" else []
        enc.requires_grad_(True)
        enc.train(self.pointmae_train_mode)
        try:
            with torch.random.fork_rng(devices=devices):
                torch.manual_seed(self.seed)
                for epoch in range(self.epochs):
                    phase = "iun" if epoch < phase1 else "ian"
                    for i, (pts, centres, fake_c) in enumerate(prepared):
                        rng = np.random.default_rng([self.seed, epoch, i])
                        if phase == "iun" and self.fake_anomalies:
                            pts = fake_anomaly(
                                pts, fake_c, rng, self.fake_ratio_range, self.fake_variance_range,
                                self._noise_unit(), self.fake_mode,
                            ).points  # fmt: skip
                        b = min(self.train_group_batch, len(centres))
                        batch = np.sort(rng.choice(centres, b, replace=False))
                        cloud = torch.from_numpy(pts)[None].to(device)
                        feats = enc.forward_features(cloud, torch.from_numpy(batch)[None])[0][0]
                        k, labels = cluster_features(
                            feats.detach().cpu().numpy(), self.k_range,
                            seed=int(rng.integers(2**31)), n_init=self.kmeans_n_init,
                        )  # fmt: skip
                        if phase == "iun":
                            loss = uniformity_loss(feats, labels)
                        else:
                            loss = alignment_loss(feats, labels, self.temperature)
                        opt.zero_grad(set_to_none=True)
                        loss.backward()
                        opt.step()
                        self.history.append(
                            {"phase": phase, "epoch": epoch, "cloud": i, "k": k,
                             "loss": float(loss.detach())}
                        )  # fmt: skip
        finally:
            enc.eval()
            enc.requires_grad_(False)
        return self.history

    def _prepare_cloud(self, xyz: np.ndarray, i: int) -> tuple[np.ndarray, np.ndarray, int]:
        """(training points, FPS centre indices, fake-anomaly centre index) of one train cloud."""
        rng = np.random.default_rng([self.seed, 1 << 20, i])
        pts = np.ascontiguousarray(xyz, dtype=np.float32)
        if self.train_points is not None and len(pts) > self.train_points:
            pts = pts[np.sort(rng.choice(len(pts), self.train_points, replace=False))]
        g = min(self.num_group, len(pts))
        centres = np.asarray(farthest_point_sample(pts, g), dtype=np.int64)
        fake_c = self._fake_centre(pts, rng) if self.fake_anomalies and self.epochs > 1 else 0
        return pts, centres, fake_c
