"""Group3AD (ACM MM 2024, arXiv 2408.04604): group-level feature contrastive learning for
high-resolution 3D anomaly detection; the first public implementation.

Provenance: re-implemented from the paper (../shared/papers/group3ad.txt §3-4, Algorithms 1-2),
no official code (github M-3LAB/Group3AD holds only a README; specs/methods.md §6). Built on the
Reg3D-AD pipeline the paper extends (methods/reg3dad.py, specs/methods.md §4).

Pipeline
1. Reg3D-AD input: every cloud mean-centred, axis-permuted and RANSAC+FPFH registered to the
   first training cloud (voxel 0.5 mm, Open3D seeded).
2. Training (Algorithm 2), only the Point-MAE encoder (official ShapeNet ``pretrain.pth``, or any
   checkpoint with its key layout, e.g. the project's own Point-MAE pre-training) is optimised:
   - epochs 1..E/2, IUN: each train cloud gets a fake anomaly (fake.py, eq. 1-6), the encoder
     gives group features of a batch of groups, K-means with K by the elbow method (scikit-learn
     KMeans + kneed's Kneedle; clustering.py, eq. 7-8), loss L_uniformity = 1 / min distance
     between cluster centres (eq. 9-11);
   - epochs E/2+1..E, IAN: the clouds as they are, same clustering, loss L_alignment =
     T/K * sum_k (max intra-cluster distance_k)^2 (eq. 12-14).
3. Bank A: fine-tuned Point-MAE features (16384 FPS groups of 128, 1152-d) of the train clouds;
   bank B: registered xyz of every train point (Reg3D-AD); each an approximate greedy coreset of
   10000 rows.
4. Inference: group centres by AGCS (agcs.py, eq. 15-16, Algorithm 1); group scores = squared
   L2 to the nearest bank-A row, copied to every point from the nearest centre; bank B scores
   every point; object score = max per bank; each bank min-max normalised over the test set
   (``normalize="test"``, the Real3D-AD protocol the paper reports; flagged
   ``uses_test_statistics``) or over leave-one-out train scores (``normalize="train"``,
   leak-free), then averaged (Reg3D-AD).

Presets (Tables 1-6; the ablations of Tables 5-6 switch the modules):
``group3ad`` (all on); ``group3ad_no_iun_ian`` ("Group3AD without IUN&IAN": no fine-tuning);
``group3ad_no_agcs`` ("Group3AD without AGCS": FPS centres at inference);
``patchcore_pointmae_iun_ian`` / ``patchcore_pointmae_agcs`` ("PatchCore(PointMAE) with ..."):
the Real3D-AD PatchCore(PointMAE) pipeline (registration, Point-MAE bank only, no
normalisation) with one module added. Reading of the tables: Group3AD without IUN&IAN (0.732
O-AUROC) is far above PatchCore(PointMAE) with AGCS (0.626), so "Group3AD" keeps Reg3D-AD's xyz
bank and PatchCore(PointMAE) does not.

Values from the paper: r in [1%, 10%] of the points, noise variance in [0.01, 0.05], E/2 + E/2
epochs, the loss formulas, K by the elbow method, AGCS's alpha*G / (1-alpha)*G split.
Guessed hyper-parameters (each a constructor argument; the paper states none of them):
- ``epochs=20`` (E), ``optimizer="adam"``, ``lr=1e-4``, ``weight_decay=0``, ``temperature=1.0``
  (T of eq. 14);
- ``k_range=(2, 10)`` (the K tried by the elbow method), ``kmeans_n_init=3`` (K-means restarts);
  no knee found -> the smallest K;
- one optimisation step per train cloud (Algorithm 2's inner loop) on ``train_group_batch=512``
  groups drawn at random (seeded) from the cloud's ``num_group`` FPS centres: the 16384 groups of
  a cloud do not fit one backward pass; ``train_points=None`` (every point of the cloud; an int
  subsamples it before grouping);
- group size and number of groups: Reg3D-AD's 128 and 16384 (training and inference);
- encoder mode while training: as ``pointmae_train_mode`` (True: BatchNorm on the batch's
  statistics, DropPath active, as the Real3D-AD extractor), seeded;
- fake anomalies: "largest FPFH response" = the largest L2 norm of the 33-d histogram
  (``fake_center="l2"``; fake.py says why; "max_bin" / "distinct" offered); the FPFH recipe is
  Real3D-AD's (normals 2*voxel / 30, FPFH 5*voxel / 100); ``fake_mode="replace"`` moves the
  round(r*N) nearest points of the centre (``"union"`` appends the noisy copies, eq. 6 read as
  P u A); noise ``noise_unit="voxel"``: sigma^2 is in squared millimetres on Real3D-AD, the
  units the Reg3D-AD pipeline feeds the encoder (clouds centred, not scaled), i.e. noise std
  0.1-0.22 mm, about one scan spacing; on data whose voxel_size is not 0.5 the noise is scaled
  by voxel / 0.5 so that it keeps its size relative to the sampling; a float sets the unit in
  the cloud's coordinates;
- AGCS: ``agcs_alpha=0.3``, ``agcs_neighbors=16`` (n of eq. 15), the high-variation points are
  the top ``agcs_high_fraction=0.1`` by F_p; FPFH as above; clouds above ``fpfh_max_points=
  200000`` get their FPFH (AGCS and the fake-anomaly centre) on a seeded random subset;
- the bank is built from FPS groups (Algorithm 2 applies AGCS at inference only); with
  ``normalize="train"`` the train clouds are re-scored with AGCS centres for the statistics.
- the IUN/IAN "networks" of Algorithm 2 have no parameters of their own here (the paper names
  no architecture; "only the encoder trains").
"""

from __future__ import annotations

from benchmark.registry import METHODS
from methods.group3ad.detector import Group3AD

PROVENANCE = (
    "re-implemented from the paper (Group3AD, ACM MM 2024, arXiv 2408.04604, §3-4 and "
    "Algorithms 1-2), no official code (M-3LAB/Group3AD holds only a README); on the Reg3D-AD "
    "pipeline of methods/reg3dad.py; every guessed value is listed in methods/group3ad"
)
_COMMON = dict(
    factory=Group3AD,
    modalities=("points",),
    learning="one_class",
    outputs=("score", "point_scores"),
    provenance=PROVENANCE,
    datasets=("real3d", "anomaly_shapenet", "mvtec3d", "eyecandies"),
    smoke={
        "num_group": 32,
        "group_size": 16,
        "memory_size": 64,
        "pretrained": False,
        "ransac_iterations": 2000,
        "epochs": 2,
        "train_group_batch": 24,
        "k_range": (2, 4),
    },
)
#: the Real3D-AD PatchCore(PointMAE) pipeline: one bank, no normalisation
_PATCHCORE = {"xyz_bank": False, "normalize": "none"}

METHODS.register(
    "group3ad",
    kwargs={},
    summary="Group3AD: Reg3D-AD + IUN/IAN contrastive fine-tuning of Point-MAE + AGCS centres "
    "(test-set min-max, flagged)",
    **_COMMON,
)
METHODS.register(
    "group3ad_no_iun_ian",
    kwargs={"iun_ian": False},
    summary="Group3AD without IUN&IAN (Table 5): pretrained Point-MAE, AGCS centres",
    **_COMMON,
)
METHODS.register(
    "group3ad_no_agcs",
    kwargs={"agcs": False},
    summary="Group3AD without AGCS (Table 6): fine-tuned Point-MAE, FPS centres",
    **_COMMON,
)
METHODS.register(
    "patchcore_pointmae_iun_ian",
    kwargs={**_PATCHCORE, "agcs": False},
    summary="PatchCore(PointMAE) with IUN&IAN (Group3AD Table 5)",
    **_COMMON,
)
METHODS.register(
    "patchcore_pointmae_agcs",
    kwargs={**_PATCHCORE, "iun_ian": False},
    summary="PatchCore(PointMAE) with AGCS (Group3AD Table 6)",
    **_COMMON,
)

__all__ = ["Group3AD", "PROVENANCE"]
