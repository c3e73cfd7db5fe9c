"""A self-contained HTML report of a run folder, opened offline in a browser
(`python -m benchmark report --run DIR`)::

    <out>/index.html                       manifest, failures, metric tables (+ paper), categories
    <out>/samples.csv                      every test sample of every job: score, label, rank
    <out>/assets/plotly.min.js             plotly.js, once for the whole report
    <out>/<method>_seed<s>_<key>/<category>/
        index.html                         curves, histograms, gallery, table of all samples
        roc.png pro.png hist.png           (roc/pro from `export.write_curves`)
        samples.csv
        gallery/<sample>_overlay.png|_render.png   (export's overlay / renderer views)
        ply/<sample>.ply                   heat-map PLY (export's writer; CloudCompare, MeshLab)
        view/<sample>.html                 interactive 3D viewer (see `viewer`)

The metric tables are the ones of `python -m benchmark tables` (the same functions of
`report.tables`, the same strings). The gallery orders samples by how wrong they are: a normal
sample's wrongness is the fraction of anomalous samples it outscores, an anomalous sample's the
fraction of normal samples that outscore it (ties count half), so the highest-scored normals and
the lowest-scored anomalies come first.

Cost is bounded: one job's scores.npz at a time, and the test clouds are loaded from the dataset
one sample at a time (never a whole category at once); the 3D viewers subsample large clouds for
display only.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import shlex
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from benchmark.errors import BenchmarkError, ConfigError
from benchmark.report import export
from benchmark.report import tables as T
from benchmark.report.html import details, esc, kv, link, page, table
from benchmark.report.viewer import PLOTLY_JS, display_subset, install_plotly_js, write_viewer
from benchmark.run.spec import EvalConfig, Job, import_plugins, open_dataset
from benchmark.run.store import CategoryScores, RunStore

CHOICES = ("all", "gallery", "none")
#: clouds are drawn by the renderer with at most this many points (display only)
RENDER_POINTS = 200_000
#: dense (pixel / point) scores drawn in a histogram, at most
HIST_VALUES = 200_000
#: height of one row (RGB or depth) of an organized gallery image, in pixels
OVERLAY_ROW = 240


@dataclass
class ReportOptions:
    gallery: int = 8              # samples in each category's gallery (the most wrong first)
    viewers: str = "all"          # 3D viewer pages: every test sample, the gallery's, or none
    ply: str = "gallery"          # heat-map PLY files: every test sample, the gallery's, or none
    viewer_points: int = 20_000   # display subsampling of the 3D viewer
    render_size: int = 256        # one view of an unorganized gallery render (three side by side)
    decimals: int = 1
    evaluation: str | None = None  # evaluation id of the tables (default: the run's own)
    paper: str | None = None      # PAPER:TABLE (default: the one the run's spec name names)

    def __post_init__(self) -> None:
        for name in ("viewers", "ply"):
            if getattr(self, name) not in CHOICES:
                raise ConfigError(f"report: {name} must be one of {CHOICES}, "
                                  f"got {getattr(self, name)!r}")


@dataclass
class CategoryPage:
    job: str
    title: str
    method: str
    seed: int
    train_category: str
    category: str
    href: str
    n: int
    n_anomalous: int
    notes: list[str] = field(default_factory=list)
    figures: list[str] = field(default_factory=list)


def slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", str(name)).strip("_") or "x"


def wrongness(labels: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Per sample in [0, 1]: for a normal sample the fraction of anomalous samples scored at or
    below it, for an anomalous one the fraction of normal samples scored at or above it (ties
    half). With one class only: the score's percentile (normal) or its complement."""
    lab = np.asarray(labels).reshape(-1) > 0
    s = np.nan_to_num(np.asarray(scores, np.float64).reshape(-1), nan=-np.inf)
    pos, neg = np.sort(s[lab]), np.sort(s[~lab])
    out = np.zeros(len(s))
    if len(pos) and len(neg):
        lo, hi = np.searchsorted(pos, s[~lab], "left"), np.searchsorted(pos, s[~lab], "right")
        out[~lab] = (lo + 0.5 * (hi - lo)) / len(pos)
        lo, hi = np.searchsorted(neg, s[lab], "left"), np.searchsorted(neg, s[lab], "right")
        out[lab] = (len(neg) - hi + 0.5 * (hi - lo)) / len(neg)
    elif len(s):
        pct = _percentile(s)
        out = np.where(lab, 1.0 - pct, pct)
    return out


def _percentile(s: np.ndarray) -> np.ndarray:
    from scipy.stats import rankdata

    return (rankdata(s) - 0.5) / len(s)


def wrong_order(labels: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Sample indices, most wrong first (ties: the more extreme score first)."""
    w = wrongness(labels, scores)
    pct = _percentile(np.nan_to_num(np.asarray(scores, np.float64), nan=-np.inf))
    extreme = np.where(np.asarray(labels) > 0, pct, -pct)
    return np.lexsort((extreme, -w))


def score_range(cs: CategoryScores) -> tuple[float, float]:
    """The colour range of a category: its dense scores' range, else its sample scores'."""
    for arr in (cs.point_scores, cs.pixel_scores, cs.scores):
        if arr is not None and np.isfinite(arr).any():
            return float(np.nanmin(arr)), float(np.nanmax(arr))
    return 0.0, 1.0


# --------------------------------------------------------------------------------------------
# figures


def _map_gt(cs: CategoryScores) -> np.ndarray:
    """The GT of every sample at its score map's size (nearest), concatenated like the maps."""
    if np.array_equal(cs.map_shapes, cs.grid_shapes):
        return cs.pixel_masks
    parts = []
    for i in range(len(cs)):
        gt = cs.sample_grid("pixel_masks", i)
        h, w = (int(v) for v in cs.map_shapes[i])
        rows = (np.arange(h) + 0.5) * gt.shape[0] // h
        cols = (np.arange(w) + 0.5) * gt.shape[1] // w
        parts.append(gt[rows.astype(np.int64)][:, cols.astype(np.int64)].reshape(-1))
    return np.concatenate(parts)


def _dense_values(cs: CategoryScores) -> tuple[np.ndarray, np.ndarray, str] | None:
    """Stored per-point (else per-pixel, GT at the map's size) scores and their GT, subsampled."""
    if cs.point_scores is not None and cs.point_masks is not None:
        s, g, name = cs.point_scores, cs.point_masks, "point"
    elif cs.pixel_scores is not None and cs.pixel_masks is not None:
        s, g, name = cs.pixel_scores, _map_gt(cs), "pixel"
    else:
        return None
    keep = display_subset(len(s), HIST_VALUES)
    if keep is not None:
        s, g = s[keep], g[keep]
    return np.asarray(s, np.float64), np.asarray(g) > 0, name


def write_histograms(path: Path, cs: CategoryScores, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dense = _dense_values(cs)
    fig, axes = plt.subplots(1, 2 if dense else 1, figsize=(9 if dense else 4.5, 3.6),
                             squeeze=False)
    parts = [(np.asarray(cs.scores, np.float64), np.asarray(cs.labels) > 0, "sample",
              "sample score", False)]
    if dense:
        parts.append((dense[0], dense[1], dense[2], f"{dense[2]} score", True))
    for ax, (s, g, what, xlabel, density) in zip(axes[0], parts):
        s_ok = np.isfinite(s)
        s, g = s[s_ok], g[s_ok]
        if len(s):
            bins = np.histogram_bin_edges(s, bins=min(40, max(8, len(s) // 3)))
            for sel, name, color in ((~g, "normal", "#1f77b4"), (g, "anomalous", "#d62728")):
                if sel.any():
                    ax.hist(s[sel], bins=bins, alpha=0.6, color=color, density=density,
                            label=f"{name} ({int(sel.sum())})")
        ax.set(xlabel=xlabel, ylabel="density" if density else "samples",
               title=f"{what}s: {title}")
        ax.title.set_fontsize(9)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


# --------------------------------------------------------------------------------------------
# samples, one at a time


@dataclass
class _StoredSample:
    """An unorganized test sample rebuilt from scores.npz when the dataset cannot be opened."""

    id: str
    label: int
    points: np.ndarray
    point_mask: np.ndarray | None
    defect: str = ""
    organized: bool = False


def _sample_source(job: Job, cs: CategoryScores) -> tuple[Callable[[int], Any], str | None]:
    """A loader of sample i of `cs` (one at a time) and a note when the clouds are not there."""
    try:
        seq = open_dataset(job.dataset, job.root, job.dataset_options).test(cs.category)
        ids = list(getattr(seq, "ids", None) or [])
        where = {sid: j for j, sid in enumerate(ids)}

        def load(i: int) -> Any:
            sid = str(cs.ids[i])
            j = where.get(sid, i) if where else i
            sample = seq[j]
            if sample.id != sid:
                raise ConfigError(f"sample {sid!r} is no longer in the dataset")
            return sample

        return load, None
    except (BenchmarkError, OSError) as err:
        reason = f"the dataset cannot be opened here ({err})"
    if cs.points is not None and cs.point_offsets is not None:
        def stored(i: int) -> Any:
            sl = cs.point_slice(i)
            mask = None if cs.point_masks is None else cs.point_masks[sl]
            return _StoredSample(str(cs.ids[i]), int(cs.labels[i]), cs.points[sl], mask)

        return stored, f"{reason}; the clouds come from the run's scores.npz"
    return (lambda i: None), f"{reason}; no gallery, viewers or PLY files"


def _fmt(value: float, digits: int = 4) -> str:
    return "nan" if not math.isfinite(float(value)) else f"{float(value):.{digits}g}"


def _metric_rows(metrics: pd.DataFrame | None, key: str, category: str) -> pd.DataFrame:
    if metrics is None or metrics.empty:
        return pd.DataFrame()
    m = metrics[(metrics["job"] == key) & (metrics["test_category"] == category)]
    rows = [{"metric": T.PRETTY.get(r.metric, r.metric), "value (%)": f"{100 * r.value:.2f}",
             "variant": r.variant} for r in m.itertuples()]
    return pd.DataFrame(rows)


def write_category(out: Path, folder: Path, job: Job, key: str, cs: CategoryScores,
                   cfg: EvalConfig, opts: ReportOptions, metrics: pd.DataFrame | None
                   ) -> tuple[CategoryPage, pd.DataFrame]:
    """Writes one (job, test category) page and its files; returns its index entry and rows."""
    folder.mkdir(parents=True, exist_ok=True)
    up = "../" * len(folder.relative_to(out).parts)
    entry = CategoryPage(key, job.title, job.method_label, job.seed, str(job.train_category),
                         cs.category, str((folder / "index.html").relative_to(out)), len(cs),
                         int((np.asarray(cs.labels) > 0).sum()))
    curves = export.write_curves(folder, cs, cfg, f"{job.method_label} {cs.category}")
    hist = write_histograms(folder / "hist.png", cs, cs.category)
    entry.figures = [p.name for p in (*curves, hist)]

    order = wrong_order(cs.labels, cs.scores)
    wrong = wrongness(cs.labels, cs.scores)
    rank = np.empty(len(cs), np.int64)
    rank[np.argsort(-np.nan_to_num(np.asarray(cs.scores, np.float64), nan=-np.inf),
                    kind="stable")] = np.arange(1, len(cs) + 1)
    gallery = {int(i) for i in order[:max(0, opts.gallery)]}
    vmin, vmax = score_range(cs)
    load, note = _sample_source(job, cs)
    if note:
        entry.notes.append(note)
    # pixel maps are drawn in the colour range of the maps themselves
    mvmin, mvmax = ((float(np.nanmin(cs.pixel_scores)), float(np.nanmax(cs.pixel_scores)))
                    if cs.pixel_scores is not None else (vmin, vmax))
    rows: list[dict[str, Any]] = []
    view_names = {i: f"view/{slug(cs.ids[i])}.html" for i in range(len(cs))}
    plotly_src = f"{up}assets/{PLOTLY_JS}"
    shown_total = [0, 0]
    for pos, i in enumerate(order):
        i = int(i)
        sid = str(cs.ids[i])
        row = {"sample": sid, "label": int(cs.labels[i]), "defect": "",
               "score": float(cs.scores[i]), "rank": int(rank[i]),
               "wrongness": float(wrong[i]), "points": "", "viewer": "", "ply": "", "image": ""}
        want_view = opts.viewers == "all" or (opts.viewers == "gallery" and i in gallery)
        want_ply = opts.ply == "all" or (opts.ply == "gallery" and i in gallery)
        if want_view or want_ply or i in gallery:
            try:
                sample = load(i)
            except (BenchmarkError, OSError) as err:
                sample = None
                if len(entry.notes) < 5:
                    entry.notes.append(f"sample {sid}: {err}")
            if sample is not None:
                row["defect"] = getattr(sample, "defect", "") or ""
                row["points"] = len(sample.points)
                scores = export.point_scores_of(cs, i, sample)
                if scores is not None:
                    row.update(_sample_files(folder, cs, i, sample, scores, vmin, vmax, mvmin,
                                             mvmax, want_view, want_ply, i in gallery, opts,
                                             plotly_src, view_names, order, pos, shown_total))
                del sample, scores
        rows.append(row)
    frame = pd.DataFrame(rows)
    frame.insert(0, "category", cs.category)
    frame.insert(0, "train_category", job.train_category)
    frame.insert(0, "seed", job.seed)
    frame.insert(0, "method", job.method_label)
    frame.insert(0, "job", key)
    frame.drop(columns=["viewer", "ply", "image"]).to_csv(folder / "samples.csv", index=False)
    if shown_total[1] > shown_total[0]:
        entry.notes.append(f"3D viewers show {shown_total[0]:,} of {shown_total[1]:,} points "
                           f"(subsampled for display only)")
    (folder / "index.html").write_text(_category_html(entry, cs, frame, gallery, metrics, up))
    return entry, frame


def _sample_files(folder: Path, cs: CategoryScores, i: int, sample: Any, scores: np.ndarray,
                  vmin: float, vmax: float, mvmin: float, mvmax: float, want_view: bool,
                  want_ply: bool, in_gallery: bool, opts: ReportOptions, plotly_src: str,
                  view_names: dict[int, str], order: np.ndarray, pos: int,
                  shown_total: list[int]) -> dict[str, str]:
    out: dict[str, str] = {}
    name = slug(sample.id)
    gt = getattr(sample, "point_mask", None)
    if want_ply:
        (folder / "ply").mkdir(exist_ok=True)
        export.write_heat_ply(folder / "ply" / f"{name}.ply", sample.points, scores, vmin, vmax,
                              gt)
        out["ply"] = f"ply/{name}.ply"
    if in_gallery:
        (folder / "gallery").mkdir(exist_ok=True)
        if sample.organized:
            write_gallery_overlay(folder / "gallery" / f"{name}_overlay.png", cs, i, sample,
                                  mvmin, mvmax)
            out["image"] = f"gallery/{name}_overlay.png"
        else:
            keep = display_subset(len(sample.points), RENDER_POINTS)
            pts, sc = (sample.points, scores) if keep is None else (sample.points[keep],
                                                                    scores[keep])
            export.write_render_png(folder / "gallery" / f"{name}_render.png", pts,
                                    export.heat_colors(sc, vmin, vmax), opts.render_size)
            out["image"] = f"gallery/{name}_render.png"
    if want_view:
        nav = [("report", "../../../index.html"), ("category", "../index.html")]
        for step, text in ((-1, "previous (more wrong)"), (1, "next (less wrong)")):
            j = pos + step
            if 0 <= j < len(order) and (opts.viewers == "all" or j < opts.gallery):
                nav.append((text, view_names[int(order[j])][len("view/"):]))
        label = "anomalous" if int(cs.labels[i]) else "normal"
        info = kv([("sample", sample.id), ("label", label),
                   ("defect", getattr(sample, "defect", "") or "-"),
                   ("sample score", _fmt(cs.scores[i], 6)),
                   ("colour range", f"{_fmt(vmin)} .. {_fmt(vmax)} (the category's)")])
        if gt is None:
            info += '<p class="note">No per-point ground truth for this sample.</p>'
        else:
            info += ('<p class="note">Buttons: <b>scores</b>, <b>scores + GT</b> (anomalous '
                     'points ringed in magenta), <b>GT only</b>. Drag to rotate, scroll to '
                     'zoom.</p>')
        shown = write_viewer(folder / view_names[i], sample.points, scores, gt, vmin, vmax,
                             f"{sample.id} ({label}, score {_fmt(cs.scores[i])})", info,
                             "../" + plotly_src, nav, opts.viewer_points)
        shown_total[0] += shown["shown"]
        shown_total[1] += shown["total"]
        out["viewer"] = view_names[i]
    return out


def write_gallery_overlay(path: Path, cs: CategoryScores, i: int, sample: Any, vmin: float,
                          vmax: float, row_height: int = OVERLAY_ROW) -> Path:
    """export's overlay (image | map over the image | GT contour) over RGB and, below it when the
    sample has RGB, over depth; each row scaled to `row_height` pixels (at most 4x enlarged)."""
    from PIL import Image

    smap = export.native_map(cs, i, sample)
    export.write_overlay_png(path, sample, smap, vmin, vmax)
    rows = [Image.open(path).convert("RGB")]
    if getattr(sample, "rgb", None) is not None:
        depth = path.with_name(path.stem + "_depth.png")
        export.write_overlay_png(depth, dataclasses.replace(sample, rgb=None), smap, vmin, vmax)
        rows.append(Image.open(depth).convert("RGB"))
        depth.unlink()
    scale = min(row_height / rows[0].height, 4.0)
    size = (max(1, round(rows[0].width * scale)), max(1, round(rows[0].height * scale)))
    resample = Image.NEAREST if scale > 1 else Image.LANCZOS
    rows = [r.resize(size, resample) for r in rows]
    sheet = Image.new("RGB", (size[0], size[1] * len(rows) + 4 * (len(rows) - 1)), (255,) * 3)
    for k, r in enumerate(rows):
        sheet.paste(r, (0, k * (size[1] + 4)))
    sheet.save(path)
    return path


def _links(row: Any) -> str:
    parts = []
    if row.viewer:
        parts.append(link(row.viewer, "3D"))
    if row.ply:
        parts.append(link(row.ply, "PLY"))
    if row.image:
        parts.append(link(row.image, "image"))
    return " ".join(parts)


def _category_html(entry: CategoryPage, cs: CategoryScores, frame: pd.DataFrame,
                   gallery: set[int], metrics: pd.DataFrame | None, up: str) -> str:
    body = [f"<h1>{esc(entry.method)} · {esc(entry.category)}</h1>",
            kv([("job", f"{entry.title} ({entry.job})"),
                ("test samples", f"{entry.n} ({entry.n_anomalous} anomalous)")])]
    for note in entry.notes:
        body.append(f'<p class="note">{esc(note)}</p>')
    m = _metric_rows(metrics, entry.job, entry.category)
    if not m.empty:
        body.append(table(m, "metrics of this job and category (the run's evaluation)"))
    figs = [f'<img src="{n}" alt="{n}">' for n in entry.figures]
    body.append('<h2>Curves and score histograms</h2><div class="figs">' + "".join(figs)
                + "</div>")
    body.append('<p class="note">ROC: object/image level and pixel/point level; PRO: per-region '
                'overlap against the false positive rate, the integration limit dashed. '
                'Histograms: sample scores, and (when the method gives them) dense scores '
                'normalised per class.</p>')
    cards = []
    for row in frame.itertuples():
        if len(cards) >= len(gallery):
            break
        cls = f"label{row.label}"
        img = (f'<a href="{esc(row.image)}"><img loading="lazy" src="{esc(row.image)}" '
               f'alt="{esc(row.sample)}"></a>' if row.image else "")
        cards.append(f'<div class="card">{img}<div class="meta"><b>{esc(row.sample)}</b> '
                     f'<span class="{cls}">{"anomalous" if row.label else "normal"}</span>'
                     f"{(' ' + esc(row.defect)) if row.defect else ''}<br>score "
                     f"{esc(_fmt(row.score))} · rank {row.rank}/{len(frame)} · wrongness "
                     f"{row.wrongness:.2f} · {_links(row)}</div></div>")
    kind = ("image | anomaly map over the image | GT contour in red; top row over RGB, bottom "
            "row over depth (one row over depth when there is no RGB)" if cs.organized
            else "three views of the cloud rendered with the benchmark's renderer, heat colours")
    body.append(f"<h2>Gallery: the most wrong samples first</h2><p class=\"note\">{esc(kind)}. "
                "Wrongness: a normal sample's fraction of anomalous samples it outscores, an "
                "anomalous sample's fraction of normal samples that outscore it.</p>"
                f'<div class="gallery">{"".join(cards)}</div>')
    listing = frame[["sample", "label", "defect", "score", "rank", "wrongness", "points"]].copy()
    listing["score"] = [_fmt(v, 6) for v in listing["score"]]
    listing["wrongness"] = [f"{v:.3f}" for v in listing["wrongness"]]
    listing["files"] = [_links(r) for r in frame.itertuples()]
    body.append("<h2>All test samples</h2>" + link("samples.csv", "samples.csv")
                + table(listing, None, raw_columns=["files"]))
    return page(f"{entry.method} {entry.category}", "\n".join(body),
                nav=[("report", f"{up}index.html")])


# --------------------------------------------------------------------------------------------
# the index


def _tables_html(run_dir: Path, opts: ReportOptions) -> tuple[str, pd.DataFrame | None, str]:
    """The run's metric tables as `tables` renders them (same functions, same cell strings)."""
    try:
        df = T.load_metrics(run_dir)
    except ConfigError as err:
        return f'<p class="bad">{esc(err)}</p>', None, ""
    if not (df["metric"] != T.FAILED_METRIC).any():
        return "<p>(no successful jobs: no metrics)</p>", df, ""
    evaluation = opts.evaluation or T.default_evaluation(run_dir, df)
    df = T.select(df, evaluation)
    parts, partial = [], False
    for (dataset, protocol), sub in df.groupby(["dataset", "protocol"], sort=False):
        seeds = sorted(int(s) for s in sub["seed"].unique())
        for metric, frame in T.run_tables(sub, decimals=opts.decimals).items():
            variants = sorted(sub.loc[sub["metric"] == metric, "variant"].unique())
            title = (f"{T.PRETTY.get(metric, metric)} (%) [{'; '.join(variants)}] - "
                     f"{dataset} / {protocol}, seeds {seeds}")
            parts.append(table(frame, title, cls="metrics"))
            partial = partial or any(T.PARTIAL.search(str(v)) for v in frame["Mean"])
    note = f'<p class="note">evaluation: {esc(evaluation)}. Cells: mean ± std over seeds.'
    if partial:
        note += f" {esc(T.PARTIAL_NOTE)}."
    if T.Summary.of(df).flagged:
        note += f" {T.FLAG} the method uses test-set statistics (as its official code does)."
    return "\n".join(parts) + note + "</p>", df, evaluation


def paper_ref(manifest: dict[str, Any], explicit: str | None) -> str | None:
    """--paper, else the paper table whose name the run's spec carries (<paper>_<table>)."""
    if explicit:
        return explicit
    name = (manifest.get("config") or {}).get("name")
    if not name:
        return None
    for ref in T.paper_tables():
        if ref.replace(":", "_") == name:
            return ref
    return None


def _paper_html(run_dir: Path, ref: str, explicit: bool, evaluation: str | None) -> str:
    try:
        paper = T.load_paper_table(ref)
        ours = T.ours_in_paper_layout(run_dir, paper, evaluation)
        diff = T.compare(run_dir, paper, evaluation)
    except BenchmarkError as err:
        if explicit:
            raise
        return f'<h2>Paper: {esc(ref)}</h2><p class="bad">{esc(err)}</p>'
    caption = " ".join(str(paper.meta.get("caption", "")).split())
    out = [f"<h2>Paper comparison: {esc(ref)}</h2>"]
    if caption:
        out.append(f'<p class="note">{esc(caption)}</p>')
    out.append(table(ours, f"{ref} (ours, paper layout)"))
    out.append(table(paper.frame, f"{ref} (paper)"))
    if diff.empty:
        out.append('<p class="note">No cell in common between the run and the paper table.</p>')
    else:
        shown = diff.copy()
        shown["diff"] = [f'<span class="{"bad" if abs(float(v)) >= 1 else "good"}">{esc(v)}'
                         "</span>" for v in diff["diff"]]
        out.append(table(shown, "ours vs paper (paper scale; diff = ours - paper)",
                         raw_columns=["diff"]))
    return "\n".join(out)


def _error_lines(err: dict[str, Any], n: int = 8) -> str:
    tb = [ln for ln in str(err.get("traceback") or "").rstrip().splitlines() if ln.strip()]
    return "\n".join(tb[-n:])


def _failures_html(failed: list[tuple[str, dict[str, Any]]], problems: list[dict[str, str]]
                   ) -> str:
    """Failed jobs with their error and last traceback lines; damaged or missing results."""
    rows, blocks = list(problems), []
    for key, result in failed:
        title = Job.from_dict(result["job"]).title if result.get("job") else ""
        err = result.get("error") or {}
        rows.append({"job": key, "title": title, "status": result.get("status", "failed"),
                     "error": f"{err.get('type')}: {err.get('message')}"})
        lines = _error_lines(err)
        if lines:
            blocks.append(details(f"{key} {title}: error lines", f"<pre>{esc(lines)}</pre>",
                                  open_=True))
    if not rows:
        return "<h2>Failures</h2><p class=\"good\">none: every job of the run succeeded.</p>"
    return ("<h2>Failures</h2>" + table(pd.DataFrame(rows, columns=["job", "title", "status",
                                                                    "error"]),
                                        f"{len(rows)} job(s) without results", cls="failures")
            + "".join(blocks))


def _manifest_html(manifest: dict[str, Any], run_dir: Path) -> str:
    env = manifest.get("environment") or {}
    command = manifest.get("command") or []
    cmd = shlex.join(str(c) for c in command) if isinstance(command, list) else str(command)
    commit = env.get("git_commit") or "unknown"
    if env.get("git_dirty"):
        commit += " (uncommitted changes)"
    torch = env.get("torch") or {}
    pairs = [("run folder", str(run_dir.resolve())), ("command", cmd),
             ("created", manifest.get("created", "")), ("updated", manifest.get("updated", "")),
             ("commit", commit), ("code version", env.get("code_version", "")),
             ("python", env.get("python", "")), ("platform", env.get("platform", "")),
             ("executor", manifest.get("executor", "")),
             ("seeds", ", ".join(str(s) for s in manifest.get("seeds") or [])),
             ("device", (manifest.get("config") or {}).get("device", ""))]
    if torch:
        pairs.append(("torch", f"{torch.get('version')} (CUDA available: "
                               f"{torch.get('cuda_available')}, threads {torch.get('threads')})"))
    out = ["<h2>Manifest</h2>", kv(pairs)]
    prints = manifest.get("dataset_fingerprints") or {}
    if prints:
        out.append(table(pd.DataFrame([{"dataset": k, "fingerprint": v}
                                       for k, v in prints.items()]), "dataset fingerprints"))
    versions = env.get("packages") or {}
    if versions:
        out.append(table(pd.DataFrame([{"package": k, "version": v}
                                       for k, v in versions.items()]), "versions"))
    out.append(details("run spec (config)", "<pre>" + esc(json.dumps(
        manifest.get("config") or {}, indent=1)) + "</pre>"))
    return "\n".join(out)


def _categories_html(pages: list[CategoryPage], metrics: pd.DataFrame | None) -> str:
    if not pages:
        return "<h2>Categories</h2><p>(no successful job: nothing to show per category)</p>"
    rows = []
    for p in sorted(pages, key=lambda p: (p.category, p.method, p.seed, p.train_category)):
        auroc = ""
        if metrics is not None and not metrics.empty:
            m = metrics[(metrics["job"] == p.job) & (metrics["test_category"] == p.category)
                        & (metrics["metric"] == "image_auroc")]
            auroc = f"{100 * m['value'].iloc[0]:.2f}" if len(m) else ""
        rows.append({"category": p.category, "method": p.method, "seed": p.seed,
                     "trained on": p.train_category, "samples": p.n,
                     "anomalous": p.n_anomalous, "I-AUROC (%)": auroc,
                     "page": link(p.href, "curves, gallery, 3D")})
    return ("<h2>Categories</h2>" + table(pd.DataFrame(rows), None, raw_columns=["page"]))


def write_report(run_dir: str | Path, out_dir: str | Path | None = None,
                 options: ReportOptions | None = None,
                 log: Callable[[str], None] | None = None) -> Path:
    """Writes the report of `run_dir` (default folder ``<run>/report``); returns index.html."""
    opts = options or ReportOptions()
    say = log or (lambda _msg: None)
    run_dir = Path(run_dir)
    store = RunStore(run_dir).require()
    manifest = store.read_manifest()
    out = Path(out_dir) if out_dir else run_dir / "report"
    out.mkdir(parents=True, exist_ok=True)
    if opts.viewers != "none":
        install_plotly_js(out / "assets")
    cfg = EvalConfig.from_dict((manifest.get("config") or {}).get("evaluation"))

    tables_html, metrics, evaluation = _tables_html(run_dir, opts)
    ref = paper_ref(manifest, opts.paper)
    paper_html = (_paper_html(run_dir, ref, bool(opts.paper), opts.evaluation)
                  if ref else "")
    # the jobs the tables show (one current result per job; damaged ones reported, left out)
    warnings: list[str] = []
    current = store.current(warn=warnings.append)
    titles = {j["key"]: j.get("title", "") for j in manifest.get("jobs", [])}
    problems = [{"job": "", "title": "", "status": "damaged", "error": w} for w in warnings]
    listed = set(store.all_keys())
    problems += [{"job": k, "title": titles.get(k, ""), "status": "missing",
                  "error": "no result (not run yet, or interrupted)"}
                 for k in store.job_keys() if k not in listed]
    failed = [(k, v.result or {}) for k, v in current if v.status != "ok"]
    pages: list[CategoryPage] = []
    frames: list[pd.DataFrame] = []
    for key, verdict in current:
        if verdict.status != "ok":
            continue
        job = Job.from_dict(verdict.result["job"])
        import_plugins(job.plugins)
        base = out / f"{slug(job.method_label)}_seed{job.seed}_{key[:8]}"
        try:
            categories = store.load_scores(key)
        except BenchmarkError as err:
            problems.append({"job": key, "title": job.title, "status": "damaged",
                             "error": str(err)})
            continue
        for cs in categories:
            say(f"report: {job.method_label} seed {job.seed} {cs.category}")
            entry, frame = write_category(out, base / slug(cs.category), job, key, cs, cfg,
                                          opts, metrics)
            pages.append(entry)
            frames.append(frame.drop(columns=["viewer", "ply", "image"]))
        del categories
    if frames:
        pd.concat(frames, ignore_index=True).to_csv(out / "samples.csv", index=False)

    n_ok = len({p.job for p in pages})
    body = [f"<h1>Run report: {esc(run_dir.name)}</h1>",
            f'<p class="note">{len(current)} job(s), {n_ok} with results; evaluation '
            f'{esc(evaluation or "-")}. Per-sample scores and labels: '
            f'{link("samples.csv", "samples.csv") if frames else "(none)"}. '
            f'Regenerate with <code>python -m benchmark report --run {esc(run_dir)}</code>.</p>',
            "<h2>Metric tables</h2>", tables_html, paper_html,
            _categories_html(pages, metrics),
            _failures_html(failed, problems),
            _manifest_html(manifest, run_dir)]
    index = out / "index.html"
    index.write_text(page(f"report {run_dir.name}", "\n".join(body)))
    return index


def default_run() -> Path:
    """The most recently updated run folder under the runs root (for `make report`)."""
    from benchmark.run.runner import runs_root

    root = runs_root()
    found = sorted((p.stat().st_mtime, p.parent) for p in root.glob("*/manifest.json"))
    if not found:
        raise ConfigError(f"no run folder under {root}; give --run DIR (or run `make bench`)")
    return found[-1][1]


def print_progress(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


__all__ = ["ReportOptions", "default_run", "paper_ref", "score_range", "write_report",
           "wrong_order", "wrongness"]
