"""Memory banks: greedy coreset selection, nearest-neighbour scoring, BTF's image-score reweighting.

Coresets (all return int64 indices into the feature rows, in selection order):
- `approximate_greedy_coreset`: official PatchCore's ``ApproximateGreedyCoresetSampler``
  (amazon-science/patchcore-inspection fcaa92f124fb, ``sampler.py``; identical in M-3LAB/Real3D-AD):
  features projected by an untrained ``nn.Linear(D, 128, bias=False)`` (PyTorch's default uniform
  init, seeded; skipped when D == 128); 10 random starting rows (numpy legacy RNG, seeded); every
  row's initial distance = mean L2 distance to the starts; then n times: take the argmax and lower
  every row's distance to its distance from the pick. The starts are not part of the result.
  Used with n = int(0.1 * N) (2D PatchCore) or a fixed n = 10000 (Real3D-AD baselines).
- `greedy_coreset_btf`: BTF's ``get_coreset_idx_randomp`` (eliahuhorwitz/3D-ADS 612eb7b3ef87, after
  rvorias/ind_knn_ad): sklearn ``SparseRandomProjection(eps=0.9)`` (auto dimension = JL bound); when
  that bound exceeds the feature dimension sklearn raises and the official code silently runs on the
  unprojected features; exact greedy k-center from row 0, n rows including row 0.

Scoring: `FeatureBank.search` (1-NN or k-NN) with faiss ``IndexFlatL2`` when installed (squared L2,
as the official PatchCore code returns it) or a chunked torch search in bounded memory.

Deviation, documented: when D < 128 the approximate coreset does not materialise the 128-d
projection W x; it uses R x with W = QR (||W x|| = ||R x|| exactly in real arithmetic), which keeps
FPFH (33-d) and xyz (3-d) banks of millions of rows at their own width. Selections are the same up
to floating-point rounding on near ties.
"""

from __future__ import annotations

import importlib.util
import math

import numpy as np
import torch

from benchmark.components.geometry.pointops import serial_below
from benchmark.errors import ContractError

_BLOCK_BYTES = 256 * 2**20


def has_faiss() -> bool:
    return importlib.util.find_spec("faiss") is not None


def _as_float_tensor(x: np.ndarray | torch.Tensor, name: str = "features") -> torch.Tensor:
    t = torch.from_numpy(np.ascontiguousarray(x)) if isinstance(x, np.ndarray) else x
    if t.ndim != 2 or t.shape[0] == 0:
        raise ContractError(f"{name}: expected a non-empty (N,D) matrix, got {tuple(t.shape)}")
    return t.detach().float()


def coreset_size(n_rows: int, fraction: float | None = None, size: int | None = None) -> int:
    """Rows to keep: a fixed `size` (capped at n_rows) or int(fraction * n_rows) (at least 1)."""
    if (fraction is None) == (size is None):
        raise ContractError("coreset_size: give exactly one of fraction or size")
    if size is not None:
        if size < 1:
            raise ContractError(f"coreset size must be >= 1, got {size}")
        return min(int(size), n_rows)
    if not 0 < fraction <= 1:
        raise ContractError(f"coreset fraction must lie in (0, 1], got {fraction}")
    return max(1, int(fraction * n_rows))


def linear_projection_weight(in_dim: int, out_dim: int = 128, seed: int = 0) -> torch.Tensor:
    """The (out_dim, in_dim) weight of a freshly initialised ``nn.Linear(in_dim, out_dim,
    bias=False)`` under ``torch.manual_seed(seed)``: U(-1/sqrt(in_dim), 1/sqrt(in_dim))."""
    gen = torch.Generator().manual_seed(int(seed))
    bound = 1.0 / math.sqrt(in_dim)
    return torch.empty(out_dim, in_dim).uniform_(-bound, bound, generator=gen)


def _distances_to(x: torch.Tensor, x_sq: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """L2 distances of every row of x to each row of c (N,M), official clamp-then-sqrt form."""
    d2 = x_sq[:, None] - 2.0 * (x @ c.T) + (c * c).sum(1)[None]
    return d2.clamp_(min=0).sqrt_()


def _farthest_first(
    x: torch.Tensor,
    out: np.ndarray,
    start: int,
    mind: torch.Tensor,
    assign: torch.Tensor,
    centres: list[torch.Tensor],
    dist_rows,
    prune: bool,
) -> None:
    """Greedy k-center: for i in [start, len(out)): pick argmax(mind), lower mind by the distance
    to the pick. `dist_rows(rows|None, c)` gives distances of x[rows] (all when None) to c (1,D)
    in the caller's arithmetic. With `prune`, rows whose nearest centre a satisfies
    d(a, pick) >= 2 * mind (+ a rounding margin) are skipped: by the triangle inequality their
    distance to the pick cannot be below mind, so the selections are the unpruned ones."""
    n_rows = x.shape[0]
    scale = float((x.float() * x.float()).sum(1).max()) if prune else 0.0
    margin = 8.0 * math.sqrt(1.2e-7 * max(scale, 1e-30))  # float32 rounding of the distances
    cbuf = torch.empty(len(out), x.shape[1], dtype=x.dtype)
    for k, c in enumerate(centres):
        cbuf[k] = c
    k = len(centres)
    for i in range(start, len(out)):
        pick = int(torch.argmax(mind))
        out[i] = pick
        c = x[pick : pick + 1]
        rows = None
        if prune and 0 < k < n_rows // 4:
            dc = torch.linalg.vector_norm((cbuf[:k] - c).float(), dim=1)
            dc = torch.cat([dc, torch.zeros(1)])  # assign == -1 (no centre yet) -> always check
            near = dc[assign] < 2.0 * mind.float() + margin
            if int(near.sum()) < n_rows // 2:
                rows = torch.nonzero(near)[:, 0]
        if rows is None:
            d = dist_rows(None, c)
            closer = d < mind
            torch.minimum(mind, d, out=mind)
            assign[closer] = k
        else:
            d = dist_rows(rows, c)
            closer = d < mind[rows]
            upd = rows[closer]
            mind[upd] = d[closer]
            assign[upd] = k
        cbuf[k] = c[0]
        k += 1


@torch.no_grad()
def approximate_greedy_coreset(
    features: np.ndarray | torch.Tensor,
    n: int,
    proj_dim: int = 128,
    n_starts: int = 10,
    seed: int = 0,
    prune: bool = True,
) -> np.ndarray:
    """Official PatchCore approximate greedy coreset; returns n int64 row indices (see module).

    prune=True skips rows that provably cannot change (same selections, much faster on large
    banks); prune=False runs the plain loop of the official code.
    """
    x = _as_float_tensor(features)
    n_rows, dim = x.shape
    if not 1 <= n <= n_rows:
        raise ContractError(f"approximate_greedy_coreset: n={n} must lie in [1, {n_rows}]")
    if dim != proj_dim:
        w = linear_projection_weight(dim, proj_dim, seed)
        if dim < proj_dim:
            _, r = torch.linalg.qr(w.double())  # (dim, dim); ||w v|| == ||r v||
            x = x @ r.float().T
        else:
            x = x @ w.T
    x = x.contiguous()
    x_sq = (x * x).sum(1)
    starts = np.random.RandomState(seed % 2**32).choice(
        n_rows, min(n_starts, n_rows), replace=False
    )
    mind = _distances_to(x, x_sq, x[torch.from_numpy(starts)]).mean(1)

    def dist_rows(rows: torch.Tensor | None, c: torch.Tensor) -> torch.Tensor:
        if rows is None:
            return _distances_to(x, x_sq, c)[:, 0]
        return _distances_to(x[rows], x_sq[rows], c)[:, 0]

    out = np.empty(n, dtype=np.int64)
    assign = torch.full((n_rows,), -1, dtype=torch.int64)
    with serial_below(x.numel()):
        _farthest_first(x, out, 0, mind, assign, [], dist_rows, prune)
    return out


def sparse_random_projection(
    features: np.ndarray | torch.Tensor, eps: float = 0.9, seed: int = 0
) -> torch.Tensor | None:
    """sklearn SparseRandomProjection(eps) with the automatic (JL) dimension; None when the JL
    dimension exceeds the feature dimension (sklearn raises there; BTF then skips projecting)."""
    from sklearn.random_projection import SparseRandomProjection, johnson_lindenstrauss_min_dim

    x = _as_float_tensor(features)
    if johnson_lindenstrauss_min_dim(x.shape[0], eps=eps) > x.shape[1]:
        return None
    srp = SparseRandomProjection(eps=eps, random_state=seed)
    return torch.from_numpy(np.asarray(srp.fit_transform(x.numpy()), dtype=np.float32))


@torch.no_grad()
def greedy_coreset_btf(
    features: np.ndarray | torch.Tensor,
    n: int,
    eps: float = 0.9,
    seed: int = 0,
    float16: bool = False,
    prune: bool = True,
) -> np.ndarray:
    """BTF's exact greedy coreset (see module); n int64 indices starting with row 0.

    float16=True reproduces the official half-precision arithmetic (5x slower on CPU; only near
    ties can differ). The distance of each row is computed directly (||z - last||) in row chunks;
    prune as in `approximate_greedy_coreset`.
    """
    z = _as_float_tensor(features)
    n_rows = z.shape[0]
    if not 1 <= n <= n_rows:
        raise ContractError(f"greedy_coreset_btf: n={n} must lie in [1, {n_rows}]")
    projected = sparse_random_projection(z, eps=eps, seed=seed)
    if projected is not None:
        z = projected
    if float16:
        z = z.half()
    chunk = max(1, _BLOCK_BYTES // (z.element_size() * z.shape[1]))

    def dist_rows(rows: torch.Tensor | None, row: torch.Tensor) -> torch.Tensor:
        src = z if rows is None else z[rows]
        norms = [
            torch.linalg.vector_norm(src[s : s + chunk] - row, dim=1)
            for s in range(0, len(src), chunk)
        ]
        return torch.cat(norms)

    out = np.empty(n, dtype=np.int64)
    out[0] = 0
    mind = dist_rows(None, z[0:1])
    assign = torch.zeros(n_rows, dtype=torch.int64)
    with serial_below(z.numel()):
        _farthest_first(z, out, 1, mind, assign, [z[0]], dist_rows, prune)
    return out


class FeatureBank:
    """A memory bank of feature rows with exact k-NN search in bounded memory.

    backend "auto" uses faiss (``IndexFlatL2``) when installed, else chunked torch; "faiss" /
    "torch" force one. `search` returns Euclidean distances, or squared ones (what FAISS returns
    and official PatchCore scores with) when squared=True.
    """

    def __init__(self, features: np.ndarray | torch.Tensor, backend: str = "auto") -> None:
        self.features = np.ascontiguousarray(_as_float_tensor(features, "bank").numpy())
        if backend == "auto":
            backend = "faiss" if has_faiss() else "torch"
        if backend not in ("faiss", "torch"):
            raise ContractError(f"FeatureBank: unknown backend {backend!r} (auto, faiss, torch)")
        if backend == "faiss" and not has_faiss():
            raise ContractError("FeatureBank: backend 'faiss' requested but faiss is not installed")
        self.backend = backend
        self._index = None
        self._torch = torch.from_numpy(self.features)
        self._sq = (self._torch * self._torch).sum(1)

    def __len__(self) -> int:
        return len(self.features)

    @property
    def dim(self) -> int:
        return self.features.shape[1]

    def search(
        self, queries: np.ndarray | torch.Tensor, k: int = 1, squared: bool = False
    ) -> tuple[np.ndarray, np.ndarray]:
        """(dist (M,k) float32 ascending, idx (M,k) int64) of the k nearest bank rows."""
        q = np.ascontiguousarray(_as_float_tensor(queries, "queries").numpy())
        if q.shape[1] != self.dim:
            raise ContractError(
                f"FeatureBank.search: query dim {q.shape[1]} != bank dim {self.dim}"
            )
        if not 1 <= k <= len(self):
            raise ContractError(f"FeatureBank.search: k={k} must lie in [1, {len(self)}]")
        if self.backend == "faiss":
            d2, idx = self._search_faiss(q, k)
        else:
            d2, idx = self._search_torch(torch.from_numpy(q), k)
        d2 = np.maximum(d2, 0.0, out=d2)
        return (d2 if squared else np.sqrt(d2)).astype(np.float32, copy=False), idx

    def _search_faiss(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        import faiss

        if self._index is None:
            self._index = faiss.IndexFlatL2(self.dim)
            self._index.add(self.features)
        d2, idx = self._index.search(q, k)
        return d2, idx.astype(np.int64, copy=False)

    @torch.no_grad()
    def _search_torch(self, q: torch.Tensor, k: int) -> tuple[np.ndarray, np.ndarray]:
        chunk = max(1, _BLOCK_BYTES // (4 * len(self)))
        ds, ix = [], []
        for s in range(0, len(q), chunk):
            qc = q[s : s + chunk]
            d2 = (qc * qc).sum(1, keepdim=True) - 2.0 * (qc @ self._torch.T) + self._sq[None]
            d2, i = torch.topk(d2, k, dim=1, largest=False, sorted=True)
            ds.append(d2)
            ix.append(i)
        return torch.cat(ds).numpy(), torch.cat(ix).numpy()


def btf_reweighted_score(
    patches: np.ndarray | torch.Tensor,
    min_dist: np.ndarray,
    min_idx: np.ndarray,
    bank: np.ndarray | torch.Tensor,
    n_reweight: int = 3,
    denominator_eps: float = 0.0,
) -> float:
    """BTF's image score (PatchCore paper eq. 7 as implemented in 3D-ADS ``compute_s_s_map``).

    s* = max patch distance (patch m_test), m* = its nearest bank row; N = the `n_reweight`
    nearest bank rows of m* (m* itself first), of which the n_reweight-1 others are used:
    w = 1 - exp(s*/D) / sum_j exp(||m_test - n_j|| / D), D = sqrt(feature dim); score = w * s*.
    M3DM adds 1e-5 to the denominator (denominator_eps).
    """
    p = _as_float_tensor(patches, "patches")
    b = _as_float_tensor(bank, "bank")
    md = torch.as_tensor(np.asarray(min_dist), dtype=torch.float32).reshape(-1)
    mi = torch.as_tensor(np.asarray(min_idx)).reshape(-1).long()
    if not 2 <= n_reweight <= len(b):
        raise ContractError(f"btf_reweighted_score: n_reweight={n_reweight} needs 2..{len(b)} rows")
    s_idx = int(torch.argmax(md))
    s_star = md[s_idx]
    m_test = p[s_idx : s_idx + 1]
    m_star = b[mi[s_idx] : mi[s_idx] + 1]
    w_dist = torch.cdist(m_star, b)
    _, nn_idx = torch.topk(w_dist, k=n_reweight, largest=False)
    knn_dist = torch.linalg.norm(m_test - b[nn_idx[0, 1:]], dim=1)
    d = math.sqrt(p.shape[1])
    w = 1 - torch.exp(s_star / d) / (torch.exp(knn_dist / d).sum() + denominator_eps)
    return float(w * s_star)
