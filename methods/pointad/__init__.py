"""PointAD (NeurIPS'24) and PointAD+ (arXiv 2509.03277): zero-shot 3D anomaly detection with
CLIP on multi-view renders, plus the CLIP + Rendering baseline.

Provenance
- PointAD: ported from the behaviour of the official code (zqhang/PointAD, commit 19e2c82a169c,
  described in specs/methods.md §1; no code copied): open_clip ViT-L-14-336 with OpenAI weights
  (QuickGELU), frozen; DPAM / V-V attention on blocks 6-24 with the final-layer V-V patch tokens
  (the official aliasing behaviour) and the original path's CLS (ln_post + proj); object-agnostic
  prompts (12 context tokens, deep text prompts depth 9 x 4 tokens); hybrid loss (2D/3D global
  CE, 2D focal + dice, 3D dice); Adam lr 1e-3 betas (0.5, 0.999), 15 epochs, batch 4, seed 111;
  renders from components.render (official view recipes, 336x336); scoring 0.5 max(blurred point
  map) + 0.5 mean view probability, Gaussian sigma 4.
- PointAD+: re-implemented from the paper (§3.4-3.6; no official code exists): G-aggregation,
  geometry prompts, explicit point dice loss, cross-hierarchy contrastive loss, fused scoring.
- CLIP + Rendering: the paper's baseline: vanilla CLIP (no DPAM, original-path patch tokens),
  prompts "A photo of a normal [cls]." / "A photo of an anomalous [cls].", no training.

Guessed hyper-parameters and choices (PointAD+ has no code; each is a constructor argument):
- geometry prompts have their own 12 context tokens and their own deep text tokens (depth 9, 4);
- G-aggregation aggregates the L2-normalised patch tokens (nearest patch of each point's pixel),
  distances in the rendered cloud's units, k=10 / sigma=1 / alpha=0.5 from the paper;
- L_cross: each printed ratio read as a 2-way CE over cosines / 0.07, summed over the 4 terms;
- explicit maps use the same 0.07 temperature; the final PointAD+ map is
  G_sigma(0.5 S_a + 0.5 T_a) with sigma 4 as in PointAD;
- M3D: the RGB image is resized (bicubic) to the CLIP input size without cropping, so that it
  stays pixel-aligned with the organized grid; ``pointad`` / ``pointad_coop`` score M3D as the
  official ``test.py`` does (``m3d_scoring="official"``, their preset default); ``pointad_plus*``
  (no official code) and ``clip_rendering`` use the paper's formulas (``"paper"``);
- CLIP + Rendering uses the original path's final patch tokens for its maps;
- the 3D dice runs over the cloud's points (the official code runs it over the 336x336 organized
  array, background included);
- the official code runs CLIP in fp16 on the GPU (prompt parameters too); we default to fp32
  (``precision="fp16"`` casts CLIP only).
"""

from __future__ import annotations

from benchmark.registry import METHODS
from methods.pointad.detector import PointADDetector

__all__ = ["PointADDetector"]

_DATASETS = ("mvtec3d", "eyecandies", "real3d", "anomaly_shapenet", "synthetic")
_OUTPUTS = ("score", "point_scores", "pixel_scores")
SMOKE = {
    "clip_model": "pointad-tiny", "pretrained": False, "epochs": 1, "batch_size": 2,
    "max_views": 3, "render_window": 160, "grid_size": 32, "num_points": None,
    "prompt_depth": 3, "dpam_layers": 2,
}
_PROV_POINTAD = ("ported from the behaviour of zqhang/PointAD @19e2c82 (specs/methods.md §1); "
                 "open_clip ViT-L-14-336 OpenAI weights")
_PROV_PLUS = ("re-implemented from the PointAD+ paper (arXiv 2509.03277 §3.4-3.6, no official "
              "code) on top of the PointAD port; guessed hyper-parameters in methods/pointad")

_PRESETS = {
    "pointad": (dict(variant="pointad", prompt_style="agnostic", m3d_scoring="official"),
                "PointAD: CLIP + DPAM on 9 renders, object-agnostic prompts, hybrid loss",
                _PROV_POINTAD),
    "pointad_coop": (dict(variant="pointad", prompt_style="coop", m3d_scoring="official"),
                     "PointAD-CoOp: PointAD with class-name learnable prompts", _PROV_POINTAD),
    "pointad_plus": (dict(variant="pointad_plus", prompt_style="agnostic"),
                     "PointAD+: PointAD + G-aggregated explicit points, geometry prompts, L_cross",
                     _PROV_PLUS),
    "pointad_plus_coop": (dict(variant="pointad_plus", prompt_style="coop"),
                          "PointAD+-CoOp: PointAD+ with class-name learnable prompts", _PROV_PLUS),
    "clip_rendering": (dict(variant="pointad", prompt_style="hand", use_dpam=False),
                       "CLIP + Rendering: vanilla CLIP on the renders with two hand prompts",
                       "the PointAD+ paper's baseline (§4.1), re-implemented; no training"),
}

for _name, (_kwargs, _summary, _prov) in _PRESETS.items():
    METHODS.register(
        _name, factory=PointADDetector, kwargs=_kwargs, summary=_summary,
        modalities=("points",), learning="zero_shot", outputs=_OUTPUTS, provenance=_prov,
        datasets=_DATASETS, smoke=dict(SMOKE),
    )
