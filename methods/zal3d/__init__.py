"""3DzAL (Wang, Peng, Fu, "Towards Zero-shot 3D Anomaly Localization", WACV 2025): zero-shot 3D
anomaly localization with pseudo anomalies from task-irrelevant data, learned 3D patch features
and a normalcy classifier.

Provenance: re-implemented from the paper and supplement, no official code (the authors state it
cannot be released). Sources: ``../shared/specs/3dzal.md`` (facts, inferences and proposed defaults
from the abstract, project-page figures and the supplement) and
``../shared/papers/3dzal_supplement.txt``. First public implementation.

Pipeline (protocol ``zero_shot_pairs``: fit on the normal train split of class A, test on B != A):
1. Three branches per patch-grid cell (28x28 at 224), concatenated: RGB = WRN-50-2 layers 2+3 and
   FPFH, both exactly as BTF (`methods.btf.BTF` with ``features="rgb_fpfh"`` computes them), and a
   learned PointNet++ SSG encoder E_theta (`benchmark.components.backbones.pointnet2`) on the xyz
   patch of each cell (the k nearest points of the cell's anchor). Memory bank of the train class
   only, BTF's coreset (10 %, sparse projection eps 0.9).
2. Pseudo anomalies (`pseudo.py`): the inductive-bias map of an untrained seeded ResNet-50 on
   task-irrelevant xyz; "adding" (attach the neighbourhood of a high-attention point of a
   task-irrelevant cloud at an anchor of a normal cloud) and "removing" (cut a hole) patches.
3. Training: L_con (normal patches positives, pseudo anomalies negatives) + w_rd L_rd for E_theta,
   L_bce for the normalcy classifier C_w (a second PointNet++), jointly, on the train class only.
4. Inference: s = w_d s_d + w_c s_c with s_d the nearest-bank distance of the concatenated feature
   and s_c = 1 - sigma(C_w(P~)), P~ the patch after one input-perturbation step; map 28 -> 224
   bilinear + BTF's 8-bit blur; image score max over cells.

How the task-irrelevant data reaches the detector: ``fit`` only sees the protocol's guarded view
of class A. The irrelevant clouds are read from a dataset root, never from the runner's test
data: ``irrelevant_root`` (default: the root above the training samples' own files, taken from
``Sample.source``) opened with the ``irrelevant_format`` adapter; only the *normal train split*
of allowed categories is read, each sample checked (category, split, label) before use.
- ``irrelevant="strict"`` (default, spec §4 [DEF]): for a test sample of class B the material
  comes from classes not in {A, B}. The test class is known in the zero-shot-pairs setting (a
  trial is the pair); its *name* (``sample.category``) only selects which classes to exclude, and
  none of its data is ever read. One E_theta / C_w / bank is trained per (A, B) on the first test
  sample of B (the paper's 90 trainings), so this mode's predict time for the first sample of
  each class includes a training; ``max_cached_models`` bounds how many stay in memory.
- ``irrelevant="all_but_train"`` (the cheaper variant): one model per A trained in ``fit`` on
  the 9 classes != A. This uses the *normal train data* of the test classes as "anomaly
  material" (a leak of their shapes, never of their test data or labels); results from it must
  say so: the mode is a constructor argument and so part of every job key and result.

Guessed choices (unpublished; all constructor arguments; spec §9 numbering in brackets):
- RGB backbone WRN-50-2 layers (2,3) as BTF, timm ``racm_in1k`` weights [11]; BTF raw data,
  no preprocessing [12]; float32 coreset (BTF's deviation).
- patch = ``patch_points`` = 64 nearest points of the cell anchor (valid pixel nearest to the
  cell's centre pixel), centred on the anchor, divided by a fixed scale = mean distance to the
  64th neighbour over 64 random points per training cloud [1]; empty cells -> zero E feature,
  s_c = 0.
- E_theta / C_w: PointNet++ SSG, SA(32 centres, r 0.2, 16 nn, 64-64-128) -> SA(8, r 0.4, 16,
  128-128-256) -> SA(all, 256-512-1024) -> FC 256 -> d; ``feature_dim`` d = 128; C_w a separate
  net with one logit [2]; ``feature_scaling="raw"`` (no per-branch normalisation; "fpfh_median"
  L2-normalises E and scales it by the median FPFH-cell norm).
- L_con: supervised contrastive on a 2-layer MLP projection (``projection_dim`` 128),
  ``temperature`` 0.07, positives = other normal patches of the batch, negatives = all pseudo
  patches [3].
- L_rd: mean cos^2(h(E(P)), f) with h linear d -> 33 and f the BTF FPFH patch feature of the
  anchor's cell (the figure's arrow from the FPFH "Patchify" output; the spec's DEF averages
  the FPFH of the patch points instead) [4]; ``w_rd`` = 1 (grid {0.1,...,1e4} in the supplement).
- L_bce weight ``w_bce`` = 1; E_theta and C_w trained jointly in one loop [5].
- perturbation: one step, raw gradient of BCE(C(P), y_hat) w.r.t. the patch, y_hat the
  predicted label, ``epsilon`` = 0.01 in normalised patch units; ``perturbation_mode="sign"``
  gives the FGSM form [6].
- score: s_d divided by the mean leave-one-out NN distance of the coreset bank
  (``distance_norm="bank_nn"``; "none" = raw); image score max over cells
  (``image_score="btf_reweighted"``: BTF's reweighted s_d score plus max s_c) [7].
- optimiser: Adam ``lr`` 1e-3, cosine to ``lr_min`` 1e-5 over all steps, ``weight_decay`` 1e-4,
  ``epochs`` 100, ``clouds_per_step`` 16 x ``anchors_per_cloud`` 32 anchors, one normal and one
  pseudo patch per anchor, adding/removing 50/50 (``adding_ratio``); no model selection (the last
  epoch is used; nothing is tuned on test classes) [8].
- task-irrelevant data: other MVTec 3D-AD classes' normal train clouds, all of them
  (``irrelevant_per_class`` None) [9].
- inductive bias: torchvision ``resnet50(weights=None)`` seeded (``attention_nets`` = 1 network,
  seed 0; more networks use seeds 0..n-1, one drawn per pseudo anomaly), eval mode, input = xyz
  standardised per channel over valid points, background 0; attention = sum_c |layer4| upsampled
  bilinearly and min-max normalised [10]; q = a random point among the top ``top_fraction`` = 1 %
  attention points; n_add = ceil(``tau`` * valid points), ``tau`` = 0.1 % [11]; the neighbourhood
  is translated so its centroid lands on the anchor plus r ~ U(0, patch radius) along the anchor's
  PCA normal and rotated by a uniform angle about it; removing: k + n_rm neighbours minus the
  n_rm nearest to a random point within ``hole_centre_radius`` 0.5 x patch radius,
  n_rm ~ U(``hole_fraction`` 0.2 k, 0.5 k) [10].
- seeds: networks from ``seed``; every pseudo-anomaly draw of training step t (anchors, types,
  sources, q, offsets, holes) from ``numpy.random.default_rng((seed, t))`` (supplement D: the loop
  index seeds generation; combined with ``seed`` so that seeds differ).
"""

from __future__ import annotations

from benchmark.registry import METHODS
from methods.zal3d.detector import ZAL3D

__all__ = ["ZAL3D", "PROVENANCE", "SMOKE"]

PROVENANCE = (
    "re-implemented from the paper and supplement, no official code "
    "(specs/3dzal.md; papers/3dzal_supplement.txt)"
)
#: a tiny configuration that fits and predicts on a small synthetic sample in seconds
SMOKE = {
    "image_size": 56, "patch_grid": 7, "pretrained": False, "epochs": 1, "clouds_per_step": 2,
    "anchors_per_cloud": 4, "patch_points": 16, "feature_dim": 16, "projection_dim": 16,
    "encoder_centers": (8, 4), "encoder_radii": (0.5, 1.0), "encoder_neighbors": (8, 8),
    "encoder_mlps": ((16,), (32,), (64,)), "encoder_fc": 32, "irrelevant_per_class": 2,
    "tau": 0.01, "batch_patches": 256,
}  # fmt: skip
_COMMON = dict(
    factory=ZAL3D,
    learning="one_class",
    outputs=("score", "pixel_scores"),
    provenance=PROVENANCE,
    datasets=("mvtec3d",),
    modalities=("xyz_grid", "rgb"),
    smoke=SMOKE,
)
PRESETS = {
    "3dzal": ({}, "3DzAL: RGB + FPFH + learned PointNet++ patch bank, normalcy classifier with "
                  "input perturbation, pseudo anomalies from task-irrelevant data"),
    "3dzal_no_rd": ({"w_rd": 0.0}, "3DzAL without L_rd"),
    "3dzal_no_rd_cw_perturb": ({"w_rd": 0.0, "classifier": False},
                               "3DzAL without L_rd, C_w and input perturbation (supp. Table 11)"),
    "3dzal_no_cw": ({"classifier": False},
                    "3DzAL without C_w (and so without input perturbation; supp. Table 12)"),
    "3dzal_no_perturb": ({"perturbation": False},
                         "3DzAL without input perturbation (supp. Table 13)"),
    "3dzal_no_removing": ({"removing": False},
                          "3DzAL with only adding-point pseudo anomalies (supp. Table 14)"),
    "3dzal_no_adding": ({"adding": False},
                        "3DzAL with only removing-point pseudo anomalies (supp. Table 15)"),
}
for _name, (_kwargs, _summary) in PRESETS.items():
    METHODS.register(_name, kwargs=_kwargs, summary=_summary, **_COMMON)
