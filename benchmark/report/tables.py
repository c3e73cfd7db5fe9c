"""Tables as views of a run's metrics.csv, optionally in a paper's layout, and the comparison
of our numbers with the paper's (DESIGN §8).

Per-category values: for ``one_class`` the test category; for ``zero_shot`` / ``cross_dataset``
the test category averaged over the auxiliary (training) categories that tested it; for
``zero_shot_pairs`` (3DzAL) the training class averaged over its test classes. The Mean column is
the mean over trials of each trial's mean over its test categories (PointAD: "mean over the
training classes"; 3DzAL: mean of the 90 pairs), computed per seed. Cells are mean +- std over
seeds.

Paper references live in ``results/paper/<paper>/<table>.csv`` (the table as printed) with a
``<table>.meta.yaml`` sidecar (metric names, scale, category and method maps) and optionally a
``<table>.yaml`` run spec (see /tmp/helper_common.md "Paper-table files" and the README).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from benchmark.cache import atomic_write_text
from benchmark.errors import ConfigError
from benchmark.run.spec import EvalConfig
from benchmark.run.store import RunStore

REPO = Path(__file__).resolve().parents[2]
PAPER_ROOT = REPO / "results" / "paper"
MEAN_NAMES = {"mean", "avg", "average", "avg.", "mean.", "overall", "all"}
METRIC_ORDER = ("image_auroc", "image_ap", "pixel_auroc", "aupro", "pixel_aupr", "point_auroc",
                "point_aupr", "point_aupro")
PRETTY = {"image_auroc": "I-AUROC", "image_ap": "AP", "pixel_auroc": "P-AUROC", "aupro": "AUPRO",
          "pixel_aupr": "P-AUPR", "point_auroc": "P-AUROC (point)", "point_aupr": "AUPR (point)",
          "point_aupro": "AUPRO (point, framework-defined)"}
FLAG = "\u2020"  # marks methods that use test statistics
#: the metric of the rows metrics.csv holds for a failed job (value nan, the error in `note`)
FAILED_METRIC = "*"
PARTIAL = re.compile(r"\((\d+)/(\d+)\)")
PARTIAL_NOTE = ("(n/N): a mean over n of the dataset's N categories (the others failed, are NaN "
                "or were not run)")


# --------------------------------------------------------------------------------------------
# reading a run


def load_metrics(run_dir: str | Path) -> pd.DataFrame:
    """The metrics of every current job of a run folder, whatever command wrote them.

    metrics.csv is rebuilt from the jobs' result.json first (under the folder lock) when it is
    missing or out of date; a damaged job is left out with a warning naming it. A folder without
    job results shows its metrics.csv as it is."""
    import io

    from benchmark.run.runner import metrics_csv_text
    from benchmark.run.store import StoreError, warn

    store = RunStore(run_dir).require()
    try:
        old = store.metrics_path.read_text() if store.metrics_path.is_file() else None
    except OSError:
        old = None
    if store.all_keys() or old is None:
        text, _ = metrics_csv_text(store, warn)
    else:  # a folder holding only metrics.csv (imported, hand-made): shown as it is
        text = old
    if old != text:
        try:
            with store.lock(timeout=60):
                atomic_write_text(store.metrics_path, text)
        except (OSError, StoreError):  # a read-only folder: the tables still show
            pass
    df = pd.read_csv(io.StringIO(text), dtype={"train_category": str, "test_category": str,
                                               "method": str, "seed": int, "note": str},
                     keep_default_na=False)
    df["value"] = pd.to_numeric(df["value"], errors="coerce")
    df["note"] = df["note"].fillna("") if "note" in df else ""
    if "n_categories" not in df:
        df["n_categories"] = 0
    df["n_categories"] = pd.to_numeric(df["n_categories"], errors="coerce").fillna(0).astype(int)
    return df


def default_evaluation(run_dir: str | Path, df: pd.DataFrame) -> str:
    """The evaluation the run was made with (manifest), else the most frequent one."""
    try:
        cfg = RunStore(run_dir).read_manifest().get("config", {}).get("evaluation")
        wanted = EvalConfig.from_dict(cfg).id if cfg else None
    except Exception:  # noqa: BLE001 - an old manifest must not stop the table
        wanted = None
    present = df.loc[df["metric"] != FAILED_METRIC, "evaluation"].value_counts()
    if wanted in present.index:
        return wanted
    if present.empty:
        raise ConfigError("the run has no metric rows")
    return str(present.index[0])


def select(df: pd.DataFrame, evaluation: str | None) -> pd.DataFrame:
    if evaluation is None:
        return df
    failed = df["metric"] == FAILED_METRIC
    out = df[(df["evaluation"] == evaluation) | failed]
    if not (out["metric"] != FAILED_METRIC).any() and (~failed).any():
        raise ConfigError(f"no metrics evaluated with '{evaluation}'; present: "
                          f"{sorted(df.loc[~failed, 'evaluation'].unique())} "
                          f"(run `benchmark evaluate`)")
    return out


def with_axis(df: pd.DataFrame) -> pd.DataFrame:
    """`df` with a ``category`` column: the protocol's category axis (the training class for
    zero_shot_pairs, the test category otherwise)."""
    pairs = df["protocol"] == "zero_shot_pairs"
    return df.assign(category=np.where(pairs, df["train_category"], df["test_category"]))


def per_category(df: pd.DataFrame) -> pd.DataFrame:
    """(method, metric, seed, category) -> value, following the protocol's category axis."""
    d = with_axis(df)
    if d.empty:
        return pd.DataFrame(columns=["method", "metric", "seed", "category", "value"])
    g = d.groupby(["method", "metric", "seed", "category"], sort=False)["value"].mean()
    return g.reset_index()


def per_seed_mean(df: pd.DataFrame) -> pd.DataFrame:
    """(method, metric, seed) -> mean over trials of the trial's mean over test categories."""
    trial = df.groupby(["method", "metric", "seed", "train_category", "job"], sort=False)[
        "value"].mean().reset_index()
    return trial.groupby(["method", "metric", "seed"], sort=False)["value"].mean().reset_index()


def coverage(rows: pd.DataFrame, axis: str = "category", expected: int | None = None
             ) -> tuple[int, int]:
    """(n, N) of a mean: n categories on `axis` with a finite value (any seed), N what the
    protocol covers when it runs on every category (at least the categories present)."""
    d = with_axis(rows) if axis == "category" and "category" not in rows else rows
    n = int(d.loc[np.isfinite(d["value"].to_numpy(np.float64)), axis].nunique())
    total = int(d["n_categories"].max()) if expected is None and len(d) else int(expected or 0)
    return n, max(total, int(d[axis].nunique()))


def _cell(values: np.ndarray, scale: float, decimals: int) -> str:
    values = np.asarray(values, np.float64)
    if values.size == 0:
        return ""
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return "nan"
    mean = float(finite.mean()) * scale
    if values.size == 1:
        return f"{mean:.{decimals}f}"
    std = float(finite.std(ddof=1)) * scale if finite.size > 1 else 0.0
    return f"{mean:.{decimals}f} \u00b1 {std:.{decimals}f}"


@dataclass
class Summary:
    """Numbers of one run: per-category and Mean values per (method, metric, seed), why cells
    are NaN, and the failed (method, category) pairs."""

    categories: pd.DataFrame
    means: pd.DataFrame
    flagged: set[str]
    rows: pd.DataFrame
    failed: pd.DataFrame

    @classmethod
    def of(cls, df: pd.DataFrame) -> Summary:
        if "note" not in df:
            df = df.assign(note="")
        if "n_categories" not in df:
            df = df.assign(n_categories=0)
        failed = with_axis(df[df["metric"] == FAILED_METRIC])
        data = df[df["metric"] != FAILED_METRIC]
        flagged = set(df.loc[df["uses_test_statistics"].astype(int) == 1, "method"])
        return cls(per_category(data), per_seed_mean(data), flagged, with_axis(data), failed)

    def values(self, method: str, metric: str, category: str | None) -> np.ndarray:
        if category is None:
            d = self.means
            sel = (d["method"] == method) & (d["metric"] == metric)
        else:
            d = self.categories
            sel = (d["method"] == method) & (d["metric"] == metric) & (d["category"] == category)
        return d.loc[sel].sort_values("seed")["value"].to_numpy()

    def why_nan(self, method: str, metric: str, category: str) -> str:
        """Why a category cell has no finite value: the metric's notes, or the failed job."""
        d = self.rows
        sel = (d["method"] == method) & (d["metric"] == metric) & (d["category"] == category)
        notes = sorted({str(n) for n in d.loc[sel, "note"] if str(n)})
        f = self.failed
        fsel = (f["method"] == method) & (f["category"] == category)
        notes += sorted({str(n) for n in f.loc[fsel, "note"] if str(n)})
        return "; ".join(dict.fromkeys(notes))

    def coverage(self, method: str, metric: str) -> tuple[int, int]:
        d = self.rows[(self.rows["method"] == method) & (self.rows["metric"] == metric)]
        f = self.failed[self.failed["method"] == method]
        both = pd.concat([d, f], ignore_index=True) if len(f) else d
        if both.empty:
            return 0, 0
        return coverage(both)

    def methods(self) -> list[str]:
        return list(dict.fromkeys([*self.means["method"], *self.failed["method"]]))

    def metrics(self) -> list[str]:
        present = list(dict.fromkeys(self.means["metric"]))
        return sorted(present, key=lambda m: (METRIC_ORDER.index(m) if m in METRIC_ORDER
                                              else len(METRIC_ORDER), m))

    def category_names(self, metric: str) -> list[str]:
        d = self.categories
        return list(dict.fromkeys([*d.loc[d["metric"] == metric, "category"],
                                   *self.failed["category"]]))


def _mean_cell(summary: Summary, method: str, metric: str, scale: float, decimals: int) -> str:
    cell = _cell(summary.values(method, metric, None), scale, decimals)
    n, total = summary.coverage(method, metric)
    if cell in ("", "nan") and n == 0:
        return "nan (no category)" if total else cell
    if n < total:
        cell += f" ({n}/{total})"
    return cell


def run_tables(df: pd.DataFrame, scale: float = 100.0, decimals: int = 1,
               metrics: list[str] | None = None) -> dict[str, pd.DataFrame]:
    """One table per metric: rows = methods, columns = categories + Mean (strings). A NaN cell
    says why (``nan (no anomalous sample)``, ``failed (failed job: ...)``); a Mean over fewer
    categories than the protocol has is marked ``(n/N)``."""
    summary = Summary.of(df)
    out = {}
    for metric in metrics or summary.metrics():
        if metric not in summary.metrics():
            continue
        cats = summary.category_names(metric)
        rows = []
        for method in summary.methods():
            row = {"method": method + (FLAG if method in summary.flagged else "")}
            for c in cats:
                cell = _cell(summary.values(method, metric, c), scale, decimals)
                if cell in ("", "nan"):
                    why = summary.why_nan(method, metric, c)
                    if why.startswith("failed"):
                        cell = f"failed ({why.removeprefix('failed job: ')})"
                    elif why:
                        cell = f"nan ({why})"
                row[c] = cell
            row["Mean"] = _mean_cell(summary, method, metric, scale, decimals)
            rows.append(row)
        out[metric] = pd.DataFrame(rows, columns=["method", *cats, "Mean"])
    return out


# --------------------------------------------------------------------------------------------
# rendering


def _latex_escape(text: str) -> str:
    return (str(text).replace("\\", r"\textbackslash{}").replace("_", r"\_").replace("%", r"\%")
            .replace("&", r"\&").replace("#", r"\#").replace("\u00b1", r"$\pm$")
            .replace(FLAG, r"$^\dagger$"))


def render_frame(frame: pd.DataFrame, fmt: str = "md", title: str | None = None) -> str:
    if fmt == "csv":
        return frame.to_csv(index=False, lineterminator="\n")
    cols = [str(c) for c in frame.columns]
    cells = [[str(v) for v in row] for row in frame.itertuples(index=False)]
    if fmt == "md":
        widths = [max(len(c), *(len(r[i]) for r in cells)) if cells else len(c)
                  for i, c in enumerate(cols)]
        lines = [f"**{title}**", ""] if title else []
        lines.append("| " + " | ".join(c.ljust(w) for c, w in zip(cols, widths)) + " |")
        lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
        lines += ["| " + " | ".join(v.ljust(w) for v, w in zip(r, widths)) + " |" for r in cells]
        return "\n".join(lines) + "\n"
    if fmt == "latex":
        spec = "l" + "c" * (len(cols) - 1)
        lines = [r"\begin{table}[t]", r"\centering"]
        if title:
            lines.append(r"\caption{" + _latex_escape(title) + "}")
        lines += [r"\begin{tabular}{" + spec + "}", r"\toprule",
                  " & ".join(_latex_escape(c) for c in cols) + r" \\", r"\midrule"]
        lines += [" & ".join(_latex_escape(v) for v in r) + r" \\" for r in cells]
        lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
        return "\n".join(lines) + "\n"
    raise ConfigError(f"unknown table format '{fmt}' (md, latex, csv)")


def render_run(run_dir: str | Path, fmt: str = "md", evaluation: str | None = None,
               metrics: list[str] | None = None, decimals: int = 1) -> str:
    """All metric tables of a run, one per (dataset, protocol, metric): per-category columns +
    Mean, mean +- std over seeds."""
    df = load_metrics(run_dir)
    if not (df["metric"] != FAILED_METRIC).any():
        return "(no successful jobs: no metrics)\n"
    evaluation = evaluation or default_evaluation(run_dir, df)
    df = select(df, evaluation)
    flagged = bool(Summary.of(df).flagged)
    parts, frames = [], []
    for (dataset, protocol), sub in df.groupby(["dataset", "protocol"], sort=False):
        seeds = sorted(int(s) for s in sub["seed"].unique())
        for metric, table in run_tables(sub, decimals=decimals, metrics=metrics).items():
            frames.append(table.assign(dataset=dataset, protocol=protocol, metric=metric))
            variants = sorted(sub.loc[sub["metric"] == metric, "variant"].unique())
            title = (f"{PRETTY.get(metric, metric)} (%) [{'; '.join(variants)}] - "
                     f"{dataset} / {protocol}, seeds {seeds}")
            parts.append(render_frame(table, fmt, title))
    if fmt == "csv":
        return pd.concat(frames).to_csv(index=False, lineterminator="\n")
    if not parts:
        return "(no successful jobs: no metrics)\n"
    note = f"evaluation: {evaluation}\n"
    if any(PARTIAL.search(str(v)) for f in frames for v in f["Mean"]):
        note += PARTIAL_NOTE + "\n"
    if flagged:
        note += f"{FLAG} the method uses test-set statistics (as its official code does)\n"
    return "\n".join(parts) + ("\n" + note if fmt == "md" else "")


# --------------------------------------------------------------------------------------------
# paper tables


@dataclass(frozen=True)
class CellQuery:
    """What one paper cell measures, in our terms."""

    method: str                  # our row label (preset, or "<preset>+rgb" for points+rgb)
    metrics: tuple[str, ...]     # candidates (the first present in our data is used)
    dataset: str | None = None
    train_category: str | None = None
    category: str | None = None  # None = the mean column
    category_axis: str = "test"  # "test" or "train" (zero_shot_pairs without a train row key)


@dataclass
class PaperTable:
    paper: str
    table: str
    frame: pd.DataFrame
    meta: dict[str, Any]
    spec_path: Path | None

    @property
    def ref(self) -> str:
        return f"{self.paper}:{self.table}"

    @property
    def row_keys(self) -> list[str]:
        return list(self.meta.get("row_keys") or ["method"])

    @property
    def scale(self) -> float:
        return float(self.meta.get("scale") or 1)

    def _is_mean(self, column: str) -> bool:
        return column == self.meta.get("mean_column") or column.strip().lower() in MEAN_NAMES

    def value_columns(self) -> list[str]:
        """Columns holding numbers we can produce (categories, dataset means, the mean)."""
        cmap = self.meta.get("category_map") or {}
        colmap = self.meta.get("column_map") or {}
        return [c for c in self.frame.columns if c not in self.row_keys
                and (c in cmap or c in colmap or self._is_mean(c))]

    def _metric_candidates(self, row: pd.Series, column: str) -> tuple[str, ...]:
        colmap = (self.meta.get("column_map") or {}).get(column) or {}
        if colmap.get("metric"):
            found = colmap["metric"]
        else:
            mmap = self.meta.get("metrics") or {}
            if "metric" in self.row_keys:
                printed = str(row["metric"])
                found = mmap.get(printed, printed if printed in METRIC_ORDER else None)
            else:
                single = self.meta.get("metric")
                if single is None and len(mmap) == 1:
                    single = next(iter(mmap.values()))
                found = mmap.get(single, single) if isinstance(single, str) else single
        if found is None:
            return ()
        return tuple(found) if isinstance(found, (list, tuple)) else (str(found),)

    def query(self, row: pd.Series, column: str) -> CellQuery | None:
        preset = (self.meta.get("method_map") or {}).get(str(row["method"]))
        metrics = self._metric_candidates(row, column)
        if not preset or not metrics or column not in self.value_columns():
            return None
        cmap = self.meta.get("category_map") or {}
        colmap = (self.meta.get("column_map") or {}).get(column) or {}
        modality = colmap.get("modality")
        label = preset if modality in (None, "points") else f"{preset}+rgb"
        train_cat = None
        for key in self.meta.get("row_category_keys") or []:
            printed = str(row[key])
            train_cat = cmap.get(printed, printed)
        is_mean = self._is_mean(column) or column in (self.meta.get("column_map") or {})
        category = None if is_mean else cmap[column]
        axis = ("train" if self.meta.get("protocol") == "zero_shot_pairs" and train_cat is None
                else "test")
        return CellQuery(label, metrics, colmap.get("dataset") or self.meta.get("dataset"),
                         train_cat, category, axis)

    def mean_categories(self) -> list[str] | None:
        """Our names of the categories the paper's mean column averages (its category columns),
        or None when the table has per-dataset means (then the dataset's categories count)."""
        if self.meta.get("column_map"):
            return None
        cmap = self.meta.get("category_map") or {}
        cats = [str(cmap[c]) for c in self.value_columns() if c in cmap]
        return list(dict.fromkeys(cats)) or None

    def evaluation(self) -> EvalConfig | None:
        if self.spec_path is None:
            return None
        data = yaml.safe_load(self.spec_path.read_text()) or {}
        return EvalConfig.from_dict(data.get("evaluation"))


def _query_rows(df: pd.DataFrame, q: CellQuery) -> pd.DataFrame | None:
    """Our rows of one paper cell, of the first of its metrics the run has (None: none)."""
    if q.method in set(df["method"]):
        d = df[df["method"] == q.method]
    else:
        d = df[(df["preset"] == q.method) & (df["method"] == df["preset"])]
    if q.dataset is not None:
        d = d[d["dataset"] == q.dataset]
    if q.train_category is not None:
        d = d[d["train_category"] == q.train_category]
    for metric in q.metrics:
        m = d[d["metric"] == metric]
        if not m.empty:
            return m
    return None


def query_values(df: pd.DataFrame, q: CellQuery) -> np.ndarray:
    """Our per-seed values of one paper cell (empty when the run has none)."""
    m = _query_rows(df, q)
    if m is None:
        return np.array([])
    if q.category is None:
        return per_seed_mean(m).sort_values("seed")["value"].to_numpy()
    col = "train_category" if q.category_axis == "train" else "test_category"
    m = m[m[col] == q.category]
    if m.empty:
        return np.array([])
    return m.groupby("seed")["value"].mean().sort_index().to_numpy()


def query_coverage(df: pd.DataFrame, q: CellQuery, expected: list[str] | None = None
                   ) -> tuple[int, int]:
    """(n, N) of a paper mean cell: how many of the N categories it averages (`expected`, else
    the protocol's categories) we have finite values for. One trial (a paper row per training
    category) of zero_shot / zero_shot_pairs / a same-dataset cross_dataset does not test its
    own category."""
    m = _query_rows(df, q)
    if m is None or q.category is not None:
        return 0, 0
    own = q.train_category is not None and bool((
        m["protocol"].isin(["zero_shot", "zero_shot_pairs"])
        | ((m["protocol"] == "cross_dataset") & (m["train_dataset"] == m["dataset"]))).any())
    axis = "test_category" if q.train_category is not None else "category"
    d = with_axis(m)
    if expected is not None:
        wanted = [c for c in expected if not (own and c == q.train_category)]
        finite = d.loc[np.isfinite(d["value"].to_numpy(np.float64)), axis]
        return int(finite[finite.isin(wanted)].nunique()), len(wanted)
    if q.train_category is None:
        return coverage(d)
    total = int(d["n_categories"].max()) if len(d) else 0
    return coverage(d, axis=axis, expected=total - 1 if own and total else total)


def parse_ref(ref: str) -> tuple[str, str]:
    if ":" not in ref:
        raise ConfigError(f"paper table reference must look like PAPER:TABLE, got {ref!r}")
    paper, table = ref.split(":", 1)
    return paper, table


def load_paper_table(ref: str, root: str | Path | None = None) -> PaperTable:
    paper, table = parse_ref(ref)
    base = Path(root or PAPER_ROOT) / paper
    csv_path, meta_path = base / f"{table}.csv", base / f"{table}.meta.yaml"
    if not csv_path.is_file():
        known = sorted(p.stem for p in base.glob("*.csv")) if base.is_dir() else []
        raise ConfigError(f"paper table {csv_path} does not exist; tables of '{paper}': {known}")
    frame = pd.read_csv(csv_path, dtype=str, keep_default_na=False)
    meta = yaml.safe_load(meta_path.read_text()) if meta_path.is_file() else {}
    spec = base / f"{table}.yaml"
    return PaperTable(paper, table, frame, meta or {}, spec if spec.is_file() else None)


NUMBER = re.compile(r"[-+]?\d+(?:\.\d+)?")


def parse_printed(text: Any) -> tuple[float | None, int]:
    """The leading number of a printed cell ("82.0", "**95.5**", "74.8 (1.2)") and its decimals."""
    m = NUMBER.search(str(text))
    if not m:
        return None, 1
    token = m.group(0)
    decimals = len(token.split(".", 1)[1]) if "." in token else 0
    return float(token), decimals


def _paper_cells(paper: PaperTable, df: pd.DataFrame) -> list[dict[str, Any]]:
    """One record per (paper row, value column): the paper's value, our per-seed values and,
    for mean cells, the coverage (n, N) of our mean."""
    records = []
    for idx, row in paper.frame.iterrows():
        for column in paper.value_columns():
            printed = row[column]
            pval, decimals = parse_printed(printed)
            q = paper.query(row, column)
            ours = query_values(df, q) if q is not None else np.array([])
            cov = query_coverage(df, q, paper.mean_categories()) if q is not None else (0, 0)
            records.append({"index": idx, **{k: row[k] for k in paper.row_keys},
                            "column": column, "printed": printed, "paper": pval,
                            "decimals": decimals, "ours": ours, "coverage": cov})
    return records


def _partial(rec: dict[str, Any]) -> bool:
    n, total = rec["coverage"]
    return n < total


def paper_evaluation(paper: PaperTable, run_dir: str | Path, df: pd.DataFrame) -> str:
    cfg = paper.evaluation()
    if cfg is not None and cfg.id in set(df["evaluation"]):
        return cfg.id
    return default_evaluation(run_dir, df)


def _run_frame(run_dir: str | Path, paper: PaperTable, evaluation: str | None) -> pd.DataFrame:
    df = load_metrics(run_dir)
    if df.empty:
        return df
    return select(df, evaluation or paper_evaluation(paper, run_dir, df))


def ours_in_paper_layout(run_dir: str | Path, paper: PaperTable, evaluation: str | None = None
                         ) -> pd.DataFrame:
    """The paper's table with our numbers in its value cells ("" where we have none; a partial
    mean marked ``(n/N)``)."""
    df = _run_frame(run_dir, paper, evaluation)
    out = paper.frame.copy()
    for col in paper.value_columns():
        out[col] = ""
    if df.empty:
        return out
    for rec in _paper_cells(paper, df):
        if len(rec["ours"]):
            d = rec["decimals"] if rec["paper"] is not None else (3 if paper.scale == 1 else 1)
            cell = _cell(rec["ours"], paper.scale, d)
            if _partial(rec):
                cell += " ({}/{})".format(*rec["coverage"])
            out.at[rec["index"], rec["column"]] = cell
    return out


def compare(run_dir: str | Path, paper: PaperTable, evaluation: str | None = None,
            allow_partial: bool = False) -> pd.DataFrame:
    """Long table: row keys, column, paper value, ours (mean over seeds, paper scale), ours' std,
    number of seeds, coverage of our mean (n/N categories) and the difference ours - paper; only
    cells where both exist. A mean of ours over fewer categories than the paper's average is
    left out (listed in ``attrs["refused"]``) unless `allow_partial`."""
    df = _run_frame(run_dir, paper, evaluation)
    rows, refused = [], []
    for rec in [] if df.empty else _paper_cells(paper, df):
        ours = rec["ours"][np.isfinite(rec["ours"])] if len(rec["ours"]) else rec["ours"]
        if rec["paper"] is None or len(ours) == 0:
            continue
        keys = {k: rec[k] for k in paper.row_keys}
        n, total = rec["coverage"]
        if _partial(rec) and not allow_partial:
            refused.append({**keys, "column": rec["column"], "coverage": f"{n}/{total}"})
            continue
        mean = float(ours.mean()) * paper.scale
        std = float(ours.std(ddof=1)) * paper.scale if len(ours) > 1 else 0.0
        d = rec["decimals"]
        rows.append({**keys, "column": rec["column"],
                     "paper": f"{rec['paper']:.{d}f}", "ours": f"{mean:.{d}f}",
                     "ours_std": f"{std:.{d}f}", "seeds": len(ours),
                     "categories": f"{n}/{total}" if total else "",
                     "diff": f"{mean - rec['paper']:+.{d}f}"})
    cols = [*paper.row_keys, "column", "paper", "ours", "ours_std", "seeds", "categories", "diff"]
    table = pd.DataFrame(rows, columns=cols)
    table.attrs["refused"] = refused
    return table


def compare_report(run_dir: str | Path, paper: PaperTable, fmt: str = "md",
                   evaluation: str | None = None, allow_partial: bool = False
                   ) -> tuple[str, int]:
    """The comparison as text, and the number of cells compared."""
    table = compare(run_dir, paper, evaluation, allow_partial)
    refused = table.attrs.get("refused") or []
    caption = " ".join(str(paper.meta.get("caption", "")).split())
    title = f"{paper.ref}: ours vs paper" + (f" ({caption})" if caption else "")
    note = ""
    if refused:
        shown = ", ".join(f"{' '.join(str(r[k]) for k in paper.row_keys)} / {r['column']} "
                          f"({r['coverage']})" for r in refused[:8])
        note = (f"{len(refused)} mean cell(s) not compared: our mean covers fewer categories "
                f"than the paper's average (n/N): {shown}"
                + (" ..." if len(refused) > 8 else "")
                + "; --allow-partial compares them anyway\n")
    if table.empty:
        mapped = sorted({v for v in (paper.meta.get("method_map") or {}).values() if v})
        return (f"{title}\nno cell in common: the paper rows map to presets {mapped}; check that "
                f"the run used them, on the same dataset and categories\n" + note), 0
    text = render_frame(table, fmt, title)
    if fmt == "md":
        diffs = np.array([float(v) for v in table["diff"]])
        text += (f"\n{len(table)} cells compared; mean |diff| {np.abs(diffs).mean():.3g}, "
                 f"max |diff| {np.abs(diffs).max():.3g} (paper scale)\n")
        if any(PARTIAL.search(f"({c})") and c.split("/")[0] != c.split("/")[1]
               for c in table["categories"] if c):
            text += "categories n/N < 1: compared with --allow-partial\n"
    if note:
        text += note
    return text, len(table)


def compare_text(run_dir: str | Path, paper: PaperTable, fmt: str = "md",
                 evaluation: str | None = None, allow_partial: bool = False) -> str:
    return compare_report(run_dir, paper, fmt, evaluation, allow_partial)[0]


def paper_tables(root: str | Path | None = None) -> list[str]:
    base = Path(root or PAPER_ROOT)
    return sorted(f"{p.parent.name}:{p.stem}" for p in base.glob("*/*.csv"))


def summary_json(run_dir: str | Path) -> str:
    """Means per (method, metric) as JSON (for scripts)."""
    df = load_metrics(run_dir)
    df = select(df, default_evaluation(run_dir, df))
    s = Summary.of(df)
    out: dict[str, dict[str, float]] = {}
    for method in s.methods():
        for metric in s.metrics():
            v = s.values(method, metric, None)
            out.setdefault(method, {})[metric] = float(np.nanmean(v)) if len(v) else math.nan
    return json.dumps(out, indent=1)


__all__ = ["compare", "compare_report", "compare_text", "load_metrics", "load_paper_table",
           "ours_in_paper_layout", "paper_tables", "render_frame", "render_run", "run_tables"]
