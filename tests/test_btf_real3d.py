"""BTF on unorganized clouds (the Real3D-AD port): sub-sampling, 1-NN copy, end to end."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from benchmark.components.geometry.pointops import stride_indices, voxel_subsample_indices
from benchmark.errors import ConfigError, ContractError
from benchmark.registry import METHODS
from benchmark.sample import Sample


def line_sample(n: int, sid: str = "s", bump: bool = False) -> Sample:
    """Points along the x axis, 1 unit apart (a hand-made cloud with known nearest points)."""
    pts = np.zeros((n, 3), np.float32)
    pts[:, 0] = np.arange(n)
    pts[:, 1] = np.sin(np.arange(n) / 7.0)
    mask = np.zeros(n, np.uint8)
    if bump:
        pts[n // 2 : n // 2 + 20, 2] += 5.0
        mask[n // 2 : n // 2 + 20] = 1
    return Sample(id=sid, dataset="toy", category="line", split="test", defect="x",
                  points=pts, label=int(bump), point_mask=mask)  # fmt: skip


def test_stride_sampling_counts_match_the_official_index_lists() -> None:
    # Real3D-AD: [i * ratio for i in range(int(N / ratio))]
    for n, r in ((12000, 500), (12000, 100), (499, 500), (1000, 500), (1001, 3)):
        idx = stride_indices(n, r)
        assert idx.tolist() == [i * r for i in range(int(n / r))]
    assert len(stride_indices(12000, 500)) == 24  # specs §O: 24 scored points on 12k clouds


def test_raw_scores_copied_from_the_nearest_sampled_point() -> None:
    det = METHODS.create("btf_raw_real3d", train_sampling_ratio=1, test_sampling_ratio=10)
    det.fit([line_sample(200, "t0"), line_sample(200, "t1")])
    test = line_sample(200, "q", bump=True)
    pred = det.predict(test)
    pts = test.points - test.points.mean(0, dtype=np.float64)
    sampled = pts[::10]
    # each point carries the score of its nearest sampled point (rows 0, 10, 20, ...)
    nearest = np.argmin(((pts[:, None] - sampled[None]) ** 2).sum(-1), axis=1)
    d = np.sqrt(((sampled[:, None] - det.bank.features[None]) ** 2).sum(-1)).min(1)
    np.testing.assert_allclose(pred.point_scores, d[nearest], rtol=1e-5, atol=1e-6)
    assert len(np.unique(pred.point_scores)) <= 20
    # the bump (raised by 5 units) is what scores highest
    assert pred.point_scores[test.point_mask == 1].max() == pytest.approx(pred.point_scores.max())
    assert pred.score > 0


def test_density_sampling_is_even_and_denser_than_the_official_ratio() -> None:
    rng = np.random.default_rng(0)
    dense = rng.uniform(0, 10, size=(20000, 2))
    cloud = np.c_[dense, np.zeros(len(dense))]
    idx = voxel_subsample_indices(cloud, 0.5)
    cells = np.floor((cloud[idx, :2] - cloud[:, :2].min(0)) / 0.5)
    assert len(np.unique(cells, axis=0)) == len(idx) == 400  # one point per occupied voxel
    det = METHODS.create("btf_fpfh_real3d", voxel_size="auto", sampling="density")
    n_test = len(det.sample_indices(cloud.astype(np.float32), train=False))
    assert n_test > len(stride_indices(len(cloud), 500))


def _blob(i: int, n: int, anomalous: bool) -> Sample:
    rng = np.random.default_rng(500 + i)
    d = rng.normal(size=(n, 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    x, y, z = d.T
    r = 10 * (1 + 0.25 * x * y + 0.2 * np.sin(3 * x + 1) * z)
    mask = np.zeros(n, np.uint8)
    if anomalous:
        c = rng.normal(size=3)
        c /= np.linalg.norm(c)
        ang = np.arccos(np.clip(d @ c, -1, 1))
        on = ang < 0.35
        r[on] += 2.5 * np.cos(ang[on] / 0.35 * np.pi / 2)
        mask[on] = 1
    return Sample(id=f"b{i:03d}", dataset="toy", category="blob", split="test",
                  defect="bulge" if anomalous else "good",
                  points=(d * r[:, None]).astype(np.float32), label=int(anomalous),
                  point_mask=mask)  # fmt: skip


@pytest.mark.parametrize("sampling", ["stride", "density"])
def test_fpfh_real3d_detects_bulges_and_is_deterministic(sampling: str) -> None:
    train = [_blob(i, 4000, False) for i in range(3)]
    test = [_blob(10 + i, 4000, i % 2 == 1) for i in range(6)]
    kw = {"voxel_size": "auto", "sampling": sampling}
    if sampling == "stride":
        kw.update(train_sampling_ratio=5, test_sampling_ratio=20)
    det = METHODS.create("btf_fpfh_real3d", **kw)
    det.fit(iter(train))  # a one-shot iterator is enough
    preds = list(det.predict_many(test))
    for p, s in zip(preds, test):
        p.check_against(s)
    pts = roc_auc_score(np.concatenate([s.point_mask for s in test]),
                        np.concatenate([p.point_scores for p in preds]))
    obj = roc_auc_score([s.label for s in test], [p.score for p in preds])
    assert pts > 0.75, pts
    assert obj > 0.7, obj
    again = METHODS.create("btf_fpfh_real3d", **kw)
    again.fit(train)
    np.testing.assert_array_equal(again.predict(test[1]).point_scores, preds[1].point_scores)


def test_errors() -> None:
    det = METHODS.create("btf_raw_real3d")
    with pytest.raises(ContractError, match="before fit"):
        det.predict(line_sample(1000))
    det.fit([line_sample(1000)])
    with pytest.raises(ContractError, match="fewer than the sampling ratio 500"):
        det.predict(line_sample(300))
    with pytest.raises(ConfigError):
        METHODS.create("btf_raw_real3d", sampling="fps")
    with pytest.raises(ContractError, match="btf_raw_real3d"):
        METHODS.create("btf_raw").fit([line_sample(100)])  # organized preset points the way


def test_voxel_in_wrong_units_is_reported() -> None:
    tiny = line_sample(1000)
    tiny.points[:] *= 1e-3  # metres, but the voxel given as a bare number meant for millimetres
    with pytest.raises(ConfigError, match="voxel_size='auto'"):
        METHODS.create("btf_fpfh_real3d", voxel_size=0.5).fit([tiny])
