"""Perf suite "metrics": exact P-AUROC + AUPRO + pixel AUPR against sklearn ``roc_auc_score``
and against adeval (ADer's evaluator: 1000 score strips, approximate) on the synthetic class of
specs/metrics.md §5 (120 maps of 800x800 float32, 75 % anomalous with 1-3 elliptical regions,
scores N(0,1) + 1.5 * GT). Each contender's deviation is measured from the exact values.

Every contender runs in its own fresh subprocess on the same (seeded) data, so each reported peak
resident memory (VmHWM) is that contender's alone: ``data_mb`` is the process right after
building the maps, ``peak_mb`` the whole-process peak after the computation, ``extra_mb`` the
difference (what the metric computation itself added). The worker runs this file as a script so
that it imports neither the ``benchmark`` package (which loads torch) nor anything else unneeded
(adeval imports torch itself, so its process carries torch; ``extra_mb`` excludes it).
adeval is a development extra (`make perf` installs it); without it its row says so.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]

if __name__ == "__main__":  # worker process: keep the benchmark package (and torch) out

    def suite(name):
        return lambda fn: fn
else:
    from benchmark.perf import suite


def peak_rss_mb() -> float:
    """Peak resident memory of this process image in MB. Linux's ``ru_maxrss`` survives exec, so a
    child started from a big parent would report the parent's peak; VmHWM belongs to this image."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0

EXACT = "evaluate (exact P-AUROC + AUPRO@0.3 + P-AUPR, one sort)"
ADEVAL = "adeval auroc_aupr_aupro (1000 strips, approximate)"
SKLEARN = "sklearn roc_auc_score (P-AUROC only)"
CONTENDERS = {
    EXACT: "evaluate",
    "pixel_auroc() + aupro() (two calls)": "separate",
    "aupro(mode=mvtec3d_sampled, 100)": "sampled",
    ADEVAL: "adeval",
    SKLEARN: "sklearn",
}
VALUES = ("pixel_auroc", "aupro", "pixel_aupr")


def make_class(n_maps: int, size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Synthetic class: (n, size, size) float32 maps and uint8 GT, built one map at a time."""
    rng = np.random.default_rng(seed)
    maps = np.empty((n_maps, size, size), np.float32)
    gts = np.zeros((n_maps, size, size), np.uint8)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    for i in range(n_maps):
        if rng.random() < 0.75:
            for _ in range(rng.integers(1, 4)):
                cy, cx = rng.uniform(0.1, 0.9, 2) * size
                ry, rx = rng.uniform(0.01, 0.08, 2) * size
                angle = rng.uniform(0, np.pi)
                c, s = np.cos(angle), np.sin(angle)
                u = ((xx - cx) * c + (yy - cy) * s) / rx
                v = (-(xx - cx) * s + (yy - cy) * c) / ry
                gts[i][u * u + v * v <= 1.0] = 1
        maps[i] = rng.standard_normal((size, size), dtype=np.float32)
        maps[i] += np.float32(1.5) * gts[i]
    return maps, gts


def _compute(which: str, maps: np.ndarray, gts: np.ndarray) -> dict:
    import metrics

    if which == "evaluate":  # trapezoid AUPR: the quantity adeval approximates
        res = {r.name: r.value
               for r in metrics.evaluate(None, None, maps=maps, gts=gts, aupr_variant="trapezoid")}
        return {k: res[k] for k in VALUES}
    if which == "separate":
        return {"pixel_auroc": metrics.pixel_auroc(maps, gts), "aupro": metrics.aupro(maps, gts)}
    if which == "sampled":
        return {"aupro": metrics.aupro(maps, gts, mode="mvtec3d_sampled", num_thresholds=100)}
    if which == "sklearn":
        from sklearn.metrics import roc_auc_score

        return {"pixel_auroc": float(roc_auc_score(gts.ravel(), maps.ravel()))}
    if which == "adeval":
        import adeval

        auroc, aupr, pro = adeval.auroc_aupr_aupro(maps, gts)
        return {"pixel_auroc": auroc, "aupro": pro, "pixel_aupr": aupr}
    raise ValueError(which)


def _import_contender(which: str) -> None:
    """Imports outside the timed region, as metrics' own import is."""
    if which == "sklearn":
        import sklearn.metrics  # noqa: F401
    elif which == "adeval":
        if not hasattr(np, "trapz"):  # adeval 1.1.0 calls np.trapz, removed in numpy 2
            np.trapz = np.trapezoid
        import adeval  # noqa: F401
    else:
        import metrics  # noqa: F401


def _worker(which: str, n_maps: int, size: int) -> None:
    maps, gts = make_class(n_maps, size)
    _import_contender(which)
    data_mb = peak_rss_mb()
    t0 = time.perf_counter()
    values = _compute(which, maps, gts)
    seconds = time.perf_counter() - t0
    peak = peak_rss_mb()
    print(json.dumps({"seconds": seconds, "data_mb": data_mb, "peak_mb": peak, **values}))


def _run(which: str, n_maps: int, size: int) -> dict | None:
    """One contender in a fresh process; None when it is an optional one that is not installed."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", which,
           "--n", str(n_maps), "--size", str(size)]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=REPO, env=env)
    if done.returncode != 0:
        if which == "adeval" and "ModuleNotFoundError" in done.stderr:
            return None
        raise RuntimeError(f"metrics perf worker {which!r} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


@suite("metrics")
def metrics_suite(quick: bool = False) -> list[dict]:
    n_maps, size = (12, 200) if quick else (120, 800)
    results = {label: _run(which, n_maps, size) for label, which in CONTENDERS.items()}
    exact, sk, ad = results[EXACT], results[SKLEARN], results[ADEVAL]
    rows = []
    for label, r in results.items():
        if r is None:
            rows.append({"contender": label, "seconds": "not installed (make perf installs it)"})
            continue
        deviation = [abs(r[k] - exact[k]) for k in VALUES if k in r]
        rows.append({
            "contender": label,
            "maps": f"{n_maps}x{size}x{size}",
            "seconds": r["seconds"],
            "speedup_vs_sklearn": sk["seconds"] / r["seconds"],
            "speedup_vs_adeval": ad["seconds"] / r["seconds"] if ad else "",
            "peak_mb": r["peak_mb"],
            "extra_mb": r["peak_mb"] - r["data_mb"],
            "max |deviation| from exact": max(deviation),
            **{k: f"{r[k]:.10f}" if k in r else "" for k in VALUES},
        })
    return rows


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="one metrics perf contender (internal)")
    parser.add_argument("--worker", required=True, choices=sorted(set(CONTENDERS.values())))
    parser.add_argument("--n", type=int, default=120)
    parser.add_argument("--size", type=int, default=800)
    args = parser.parse_args()
    _worker(args.worker, args.n, args.size)
