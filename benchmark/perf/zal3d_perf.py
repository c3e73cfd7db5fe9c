"""Perf suite "zal3d": 3DzAL beside BTF (RGB + FPFH), per-sample predict time on the same data.

Data: the synthetic MVTec 3D-AD tree (``size="small"``, 96x96 scans resized to the methods' input
size). Both methods are fit on the normal train split of the first class and predict the first
``n_predict`` test samples of the second; the RGB backbone has random weights
(``pretrained=False``: timing does not depend on the weights). 3DzAL's model for the test class
(strict task-irrelevant data) is trained before timing, with ``epochs=1`` (training is not what
is timed). The two are timed alternately, sample by sample, so that both see the same load.
Full mode: the paper-sized configuration (224 input, 28x28 cells, 64-point patches,
the default PointNet++); quick: the tiny smoke configuration. The supplement (§E) reports 3DzAL at
1.54x BTF's time on the cable_gland test set (V100).
"""

from __future__ import annotations

import sys
import time

from benchmark.perf import peak_rss_mb, suite


def _interleaved(dets: list, samples) -> list[float]:
    """Mean predict seconds per sample of each detector, timed alternately sample by sample so
    that both see the same machine load (the cores are shared)."""
    total = [0.0] * len(dets)
    for s in samples:
        for j, det in enumerate(dets):
            t0 = time.perf_counter()
            det.predict(s)
            total[j] += time.perf_counter() - t0
    return [t / len(samples) for t in total]


@suite("zal3d")
def zal3d(quick: bool = False, n_predict: int = 3) -> list[dict]:
    from benchmark.registry import DATASETS, METHODS

    ds = DATASETS.create("synthetic", format="mvtec3d", size="small", seed=0)
    train_cat, test_cat = ds.categories[:2]
    tests = [ds.test(test_cat)[i] for i in range(n_predict)]
    size = {"image_size": 56, "patch_grid": 7} if quick else {}
    btf = METHODS.create("btf_rgb_fpfh", pretrained=False, **size)
    btf.fit(ds.train(train_cat))
    btf.predict(tests[0])  # warm-up
    full = {"pretrained": False, "irrelevant_per_class": 4}
    args = dict(METHODS.get("3dzal").smoke) if quick else full
    zal = METHODS.create("3dzal", **{**args, "epochs": 1})
    zal.fit(ds.train(train_cat))
    zal.model_for(tests[0])  # trains the (train, test) model outside the timing
    zal.predict(tests[0])  # warm-up
    btf_s, zal_s = _interleaved([btf, zal], tests)
    row = {
        "data": f"synthetic mvtec3d small: fit {train_cat}, predict {n_predict} of {test_cat}",
        "config": "smoke" if quick else "paper-sized (224, 28x28, k=64)",
        "btf_rgb_fpfh_s_per_sample": btf_s,
        "3dzal_s_per_sample": zal_s,
        "ratio_3dzal_over_btf": zal_s / btf_s,
        "paper_ratio": 327.8 / 212.8,
        "peak_rss_mb": peak_rss_mb(),
    }
    row.update({f"3dzal_{k}_s": v for k, v in zal.timer.per_sample().items()
                if k in ("features_rgb", "features_fpfh", "features_learned", "classifier",
                         "scoring")})
    print(f"zal3d perf: {row}", file=sys.stderr, flush=True)
    return [row]
