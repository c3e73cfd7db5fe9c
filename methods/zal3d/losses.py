"""3DzAL objectives and the perturbed classifier score (specs/3dzal.md §5-6; forms are guesses,
see ``methods/zal3d/__init__.py``)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def contrastive_loss(z_normal: torch.Tensor, z_pseudo: torch.Tensor,
                     temperature: float = 0.07) -> torch.Tensor:
    """Supervised-contrastive L_con on L2-normalised projections: each normal patch i is an
    anchor, the other normal patches P(i) its positives, all pseudo-anomaly patches N negatives:
    L = -1/|I| sum_i 1/|P(i)| sum_{p in P(i)} log(e^{z_i.z_p/T} / (sum_{p' in P(i)} e^{z_i.z_p'/T}
    + sum_{n in N} e^{z_i.z_n/T}))."""
    zn = F.normalize(z_normal, dim=1)
    zp = F.normalize(z_pseudo, dim=1)
    n = len(zn)
    if n < 2:
        return zn.sum() * 0.0
    sim_nn = zn @ zn.T / temperature
    sim_np = zn @ zp.T / temperature
    eye = torch.eye(n, dtype=torch.bool, device=zn.device)
    sim_nn = sim_nn.masked_fill(eye, float("-inf"))  # i itself is not in P(i)
    log_den = torch.logsumexp(torch.cat([sim_nn, sim_np], dim=1), dim=1, keepdim=True)
    log_prob = (sim_nn - log_den).masked_fill(eye, 0.0)
    return -(log_prob.sum(1) / (n - 1)).mean()


def disentangle_loss(e_proj: torch.Tensor, fpfh: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """L_rd = mean_i cos^2(h(E(P_i)), f_i): zero when the learned and FPFH features of a patch
    are orthogonal, 1 when parallel."""
    cos = F.cosine_similarity(e_proj, fpfh, dim=1, eps=eps)
    return cos.square().mean()


def classifier_loss(logit_normal: torch.Tensor, logit_pseudo: torch.Tensor) -> torch.Tensor:
    """L_bce of the normalcy classifier: normal patches labelled 1, pseudo anomalies 0."""
    logits = torch.cat([logit_normal.reshape(-1), logit_pseudo.reshape(-1)])
    labels = torch.cat([torch.ones_like(logit_normal.reshape(-1)),
                        torch.zeros_like(logit_pseudo.reshape(-1))])
    return F.binary_cross_entropy_with_logits(logits, labels)


def perturb_patches(classifier: torch.nn.Module, patches: torch.Tensor, epsilon: float,
                    mode: str = "raw") -> torch.Tensor:
    """One step on the input along the gradient of BCE(C(P), y_hat), y_hat = 1[sigma(C(P)) > 0.5]
    (SLA2P-style): P~ = P + eps * grad ("raw") or P + eps * sign(grad) ("sign"). Each patch's
    step depends only on its own loss (the classifier must be in eval mode)."""
    x = patches.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        logits = classifier(x).reshape(-1)
        y_hat = (torch.sigmoid(logits) > 0.5).float().detach()
        loss = F.binary_cross_entropy_with_logits(logits, y_hat, reduction="sum")
        (grad,) = torch.autograd.grad(loss, x)
    step = grad if mode == "raw" else grad.sign()
    return (patches + epsilon * step).detach()
