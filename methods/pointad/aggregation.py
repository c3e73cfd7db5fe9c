"""Point <- pixel aggregation: the visible-view mean operator and PointAD+'s G-aggregation.

Provenance: PointAD+ paper §3.4 (re-implemented, no code). A point's initial representation
q_j is the mean of the pixel representations of the views in which it is visible; the pixel
representation is the patch token of the patch containing the point's pixel ((u,v) scaled by
h/H, as the paper's R^(k) = (h/H) R^(k)). G-aggregation then forms
q~_j = sum_l K~(x_j, x_l) q_l over the k nearest neighbours (self excluded) with normalised
Gaussian weights K = exp(-|x_j - x_l|^2 / (2 sigma^2)), and q^_j = alpha q~_j + (1 - alpha) q_j.
Defaults k=10, sigma=1, alpha=0.5 (paper). GUESSES: the aggregated tokens are the L2-normalised
patch tokens (the ones every similarity uses); distances are in the cloud's own units as
rendered; points visible in no view use the renderer's official fill rule (they borrow the
view flags of the nearest visible point in array order, see render.multiview.backproject).

Everything is linear in the patch tokens F (V*h*w, D): q^ = B F with one sparse operator
B = ((1 - alpha) I + alpha W) A, where A (N, V*h*w) averages the visible views' patches and W
holds the neighbour weights (neighbouring points mostly share patches, so B stays sparse). The
explicit logits cos(q^_j, g) = (B (F g^T))_j / |q^_j|: the gradient w.r.t. the text embeddings
never touches an (N, D) tensor; |q^_j| is computed once without gradient.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

from benchmark.components.geometry.pointops import knn


def pixel_to_cell(pixel_index: np.ndarray, image_hw: tuple[int, int],
                  grid_hw: tuple[int, int]) -> np.ndarray:
    """Row-major pixel index in an (H,W) image -> row-major cell of an (h,w) patch grid."""
    (hh, ww), (gh, gw) = image_hw, grid_hw
    row, col = pixel_index // ww, pixel_index % ww
    return (row * gh // hh) * gw + col * gw // ww


def view_mean_matrix(cells: np.ndarray, visible: np.ndarray, cells_per_view: int) -> sp.csr_matrix:
    """Sparse (N, V*cells_per_view): the mean over visible views of a per-view map.

    cells (V,N): the point's cell (pixel or patch) in each view; visible (V,N) bool.
    """
    v, n = cells.shape
    vis = visible.astype(bool)
    count = vis.sum(0)
    view_ids, point_ids = np.nonzero(vis)
    cols = view_ids * cells_per_view + cells[view_ids, point_ids]
    vals = 1.0 / count[point_ids]
    return sp.csr_matrix((vals, (point_ids, cols)), shape=(n, v * cells_per_view))


def neighbour_weights(points: np.ndarray, k: int = 10,
                      sigma: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """The k nearest neighbours of every point (self excluded) and their normalised Gaussian
    weights: idx (N,k) int64, w (N,k) float32 summing to 1 per row."""
    pts = np.ascontiguousarray(points, dtype=np.float32)
    k = min(k, len(pts) - 1)
    if k < 1:
        return np.zeros((len(pts), 0), np.int64), np.zeros((len(pts), 0), np.float32)
    dist, idx = knn(pts, pts, k + 1)
    keep = idx != np.arange(len(pts))[:, None]
    keep[keep.all(1), -1] = False  # duplicates pushed the point itself out of its k+1 list
    idx = idx[keep].reshape(len(pts), k)
    d2 = dist[keep].reshape(len(pts), k).astype(np.float64) ** 2
    # subtracting the row's smallest squared distance leaves the normalised weights unchanged
    # and keeps them finite for any unit of length
    kern = np.exp(-(d2 - d2[:, :1]) / (2.0 * sigma**2))
    return idx, (kern / kern.sum(1, keepdims=True)).astype(np.float32)


def g_aggregation_matrix(idx: np.ndarray, w: np.ndarray, alpha: float = 0.5) -> sp.csr_matrix:
    """Sparse (N,N) (1 - alpha) I + alpha W: applied to q it gives q^ = alpha q~ + (1 - alpha) q."""
    n, k = idx.shape
    rows = np.concatenate([np.arange(n), np.repeat(np.arange(n), k)])
    cols = np.concatenate([np.arange(n), idx.reshape(-1)])
    vals = np.concatenate([np.full(n, 1.0 - alpha), alpha * w.reshape(-1).astype(np.float64)])
    return sp.csr_matrix((vals, (rows, cols)), shape=(n, n))


def to_torch_sparse(m: sp.spmatrix, device: str | torch.device = "cpu") -> torch.Tensor:
    coo = m.tocsr()
    coo.sum_duplicates()
    coo.sort_indices()
    coo = coo.tocoo()
    index = torch.from_numpy(np.stack([coo.row, coo.col]).astype(np.int64))
    vals = torch.from_numpy(coo.data.astype(np.float32))
    t = torch.sparse_coo_tensor(index, vals, coo.shape, check_invariants=False,
                                is_coalesced=True)
    return t.to(device)


class PointAggregator:
    """Per-cloud precomputed G-aggregation operator (PointAD+ explicit point representation).

    points (N,3): the rendered cloud; pixel_index (V,N): the pixel each point projects to in
    each view (the renderer's ``projected_index``); visible (V,N): the views that count for
    each point (the renderer's ``effective_visibility()``, i.e. with the official fill rule for
    points visible nowhere); image_hw: render size; grid_hw: the CLIP patch grid.
    """

    def __init__(self, points: np.ndarray, pixel_index: np.ndarray, visible: np.ndarray,
                 image_hw: tuple[int, int], grid_hw: tuple[int, int], k: int = 10,
                 sigma: float = 1.0, alpha: float = 0.5,
                 device: str | torch.device = "cpu") -> None:
        vis = np.asarray(visible, dtype=bool)
        pix = np.where(vis, pixel_index, 0)
        cells = pixel_to_cell(pix, tuple(image_hw), tuple(grid_hw))
        mean_op = view_mean_matrix(cells, vis, grid_hw[0] * grid_hw[1])
        idx, w = neighbour_weights(points, k, sigma)
        if idx.shape[1]:
            mean_op = g_aggregation_matrix(idx, w, alpha) @ mean_op
        self.op = to_torch_sparse(mean_op, device)

    def _apply(self, dense: torch.Tensor) -> torch.Tensor:
        return torch.sparse.mm(self.op, dense.to(self.op.dtype))

    @torch.no_grad()
    def explicit_features(self, patch_feats: torch.Tensor) -> torch.Tensor:
        """q^ (N,D) from patch tokens (V, h*w, D)."""
        return self._apply(patch_feats.reshape(-1, patch_feats.shape[-1]).float())

    def explicit_logits(self, patch_feats: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """cos(q^_j, g) for text rows g (T,D), L2-normalised: (N,T). Gradient flows to `text`."""
        feats = patch_feats.reshape(-1, patch_feats.shape[-1]).float()
        norms = self.explicit_features(feats).norm(dim=-1).clamp_min(1e-12)
        return self._apply(feats @ text.float().T) / norms[:, None]
