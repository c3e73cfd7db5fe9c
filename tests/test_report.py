"""The HTML report of a run: every number of `tables` is in it, the pages parse and link only to
files inside the report, the viewers carry the (subsampled) clouds, the CSV the scores."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import test_runner_fixtures as toy

from benchmark.cli import main
from benchmark.registry import DATASETS
from benchmark.report.site import ReportOptions, paper_ref, write_report, wrong_order, wrongness
from benchmark.report.tables import paper_tables, render_run
from benchmark.report.viewer import decode, figure
from benchmark.run.runner import run
from benchmark.run.store import RunStore

VOID = {"meta", "link", "img", "br", "hr", "input", "source", "col", "area", "base", "wbr"}


class StrictPage(HTMLParser):
    """Balanced tags, table cells and captions, every href/src."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.problems: list[str] = []
        self.refs: list[str] = []
        self.tables: list[dict] = []
        self._cell: list[str] | None = None
        self._caption: list[str] | None = None
        self._row: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        for key in ("href", "src"):
            if a.get(key):
                self.refs.append(a[key])
        if tag == "table":
            self.tables.append({"caption": "", "rows": []})
        elif tag == "caption":
            self._caption = []
        elif tag == "tr":
            self._row = []
        elif tag in ("td", "th"):
            self._cell = []
        if tag not in VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if tag in VOID:
            return
        if not self.stack or self.stack[-1] != tag:
            self.problems.append(f"</{tag}> closes <{self.stack[-1] if self.stack else None}>")
            return
        self.stack.pop()
        if tag in ("td", "th") and self._row is not None:
            self._row.append("".join(self._cell or []).strip())
            self._cell = None
        elif tag == "tr" and self.tables:
            self.tables[-1]["rows"].append(self._row)
            self._row = None
        elif tag == "caption" and self.tables:
            self.tables[-1]["caption"] = "".join(self._caption or []).strip()
            self._caption = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)
        if self._caption is not None:
            self._caption.append(data)


def parse(path: Path) -> StrictPage:
    p = StrictPage()
    p.feed(path.read_text())
    p.close()
    assert not p.problems, (path, p.problems[:5])
    assert p.stack == [], (path, p.stack)
    return p


def md_tables(text: str) -> list[dict]:
    """The tables `tables` prints (md): title and rows of cells."""
    out, title = [], None
    for line in text.splitlines():
        if line.startswith("**") and line.endswith("**"):
            title = line.strip("*")
            out.append({"caption": title, "rows": []})
        elif line.startswith("|") and not line.startswith("|-"):
            out[-1]["rows"].append([c.strip() for c in line.strip().strip("|").split("|")])
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One organized (mvtec3d-like, two seeds) and one unorganized (real3d-like) synthetic run."""
    if "synthetic" not in DATASETS:
        pytest.skip("the synthetic dataset is not available")
    base = tmp_path_factory.mktemp("report")
    out = {}
    with pytest.MonkeyPatch.context() as mp:
        toy.activate(mp)
        try:
            for kind, fmt, seeds in (("organized", "mvtec3d", [0, 1]),
                                     ("unorganized", "real3d", [0])):
                spec = toy.toy_spec(dataset="synthetic", seeds=seeds,
                                    methods=[{"name": "toy_nn", "args": {"noise": 0.05}}],
                                    dataset_options={"format": fmt, "categories": 2})
                s = run(spec, out=base / kind, show_progress=False)
                assert not s.failures, s.report()
                index = write_report(base / kind, base / f"{kind}_report",
                                     ReportOptions(viewer_points=400, gallery=3))
                out[kind] = (base / kind, index)
        finally:
            toy.unregister()
    return out


@pytest.mark.parametrize("kind", ["organized", "unorganized"])
def test_report_has_every_table_of_tables(runs, kind):
    run_dir, index = runs[kind]
    printed = md_tables(render_run(run_dir))
    assert printed
    page = parse(index)
    html_tables = [(t["caption"], t["rows"]) for t in page.tables]
    for t in printed:
        assert (t["caption"], t["rows"]) in html_tables, t["caption"]
    numbers = set(re.findall(r"\d+\.\d+", render_run(run_dir)))
    text = index.read_text()
    assert all(n in text for n in numbers)
    if kind == "organized":  # two seeds: mean +- std cells
        assert "\u00b1" in text


@pytest.mark.parametrize("kind", ["organized", "unorganized"])
def test_every_page_parses_and_links_stay_inside_the_report(runs, kind):
    _run_dir, index = runs[kind]
    root = index.parent
    pages = sorted(root.rglob("*.html"))
    assert len(pages) > 3
    for page in pages:
        for ref in parse(page).refs:
            assert not re.match(r"^[a-z]+://", ref) and not ref.startswith("//"), (page, ref)
            target = (page.parent / ref.split("#")[0]).resolve()
            assert target.is_file() and root.resolve() in target.parents, (page, ref)
    # plotly.js once, in the report itself
    assert len(list(root.rglob("plotly*.js"))) == 1


@pytest.mark.parametrize("kind", ["organized", "unorganized"])
def test_samples_csv_and_viewers_match_the_stored_scores(runs, kind):
    run_dir, index = runs[kind]
    store = RunStore(run_dir)
    table = pd.read_csv(index.parent / "samples.csv", dtype={"sample": str})
    for key, _result in store.iter_results():
        for cs in store.load_scores(key):
            mine = table[(table["job"] == key) & (table["category"] == cs.category)]
            assert len(mine) == len(cs)
            by_id = mine.set_index("sample")
            np.testing.assert_allclose(by_id.loc[list(cs.ids), "score"], cs.scores)
            np.testing.assert_array_equal(by_id.loc[list(cs.ids), "label"], cs.labels)
            # the gallery/listing order is the most wrong first
            w = wrongness(cs.labels, cs.scores)
            assert np.all(np.diff(w[wrong_order(cs.labels, cs.scores)]) <= 0)
    viewers = sorted(index.parent.rglob("view/*.html"))
    assert len(viewers) == len(table)
    text = viewers[0].read_text()
    fig = json.loads(re.search(r"var fig=(\{.*?\});fig\.data", text, re.S).group(1)
                     .replace("<\\/", "</"))
    x = decode(fig, 0, "x")
    assert 0 < len(x) <= 400 and len(decode(fig, 2, "x")) == len(x)
    gt = decode(fig, 2, "color")
    assert len(gt) == len(x) and len(decode(fig, 1, "x")) == int(gt.sum())
    assert "Subsampled for display only" in text and "of " in text
    assert [t["name"] for t in fig["data"]] == ["anomaly score", "GT anomaly", "GT"]
    plys = sorted(index.parent.rglob("ply/*.ply"))
    assert plys and b"anomaly_score" in plys[0].read_bytes()[:600]
    gallery = sorted(index.parent.rglob("gallery/*.png"))
    suffix = "_overlay.png" if kind == "organized" else "_render.png"
    assert gallery and all(p.name.endswith(suffix) for p in gallery)
    cat_page = next(index.parent.glob("*/*/index.html")).read_text()
    assert "roc.png" in cat_page and "hist.png" in cat_page


def test_viewer_figure_keeps_the_cloud_and_scores_to_display_precision():
    rng = np.random.default_rng(0)
    pts = rng.normal(size=(500, 3)) * [10.0, 2.0, 0.5] + 100.0
    scores = rng.uniform(1.0, 3.0, 500)
    gt = (pts[:, 0] > 105).astype(np.uint8)
    fig = figure(pts, scores, gt, 1.0, 3.0, "t")
    extent = (pts.max(0) - pts.min(0)).max()
    for k, axis in enumerate("xyz"):
        back = decode(fig, 0, axis) / 65535 * extent + pts[:, k].min()
        np.testing.assert_allclose(back, pts[:, k], atol=extent / 65535)
    np.testing.assert_allclose(decode(fig, 0, "color") / 65535 * 2.0 + 1.0, scores,
                               atol=2.0 / 65535)
    np.testing.assert_array_equal(decode(fig, 2, "color"), gt)
    assert len(decode(fig, 1, "x")) == gt.sum()
    ticks = fig["data"][0]["marker"]["colorbar"]["ticktext"]
    assert ticks[0] == "1" and ticks[-1] == "3"


def test_wrongness_orders_high_normals_and_low_anomalies_first():
    labels = np.array([0, 0, 0, 1, 1, 1])
    scores = np.array([0.1, 0.9, 0.2, 0.8, 0.15, 0.95])
    w = wrongness(labels, scores)
    # normal 0.9 beats anomalies 0.8 and 0.15 -> 2/3; anomaly 0.15 is beaten by 0.9 and 0.2 -> 2/3
    np.testing.assert_allclose(w, [0, 2 / 3, 1 / 3, 1 / 3, 2 / 3, 0])
    order = wrong_order(labels, scores)
    assert set(order[:2]) == {1, 4} and set(order[-2:]) == {0, 5}


def test_failures_are_listed_with_their_error_lines(tmp_path, monkeypatch):
    toy.activate(monkeypatch)
    try:
        spec = toy.toy_spec(categories=["alpha", "beta"],
                            methods=[{"name": "toy_nn", "args": {"fail_on": "beta"}}])
        run(spec, out=tmp_path / "run", show_progress=False)
        assert main(["report", "--run", str(tmp_path / "run"), "--out", str(tmp_path / "rep"),
                     "--viewers", "none", "--ply", "none"]) == 0
    finally:
        toy.unregister()
    text = (tmp_path / "rep" / "index.html").read_text()
    assert "RuntimeError: toy detector told to fail on beta" in text
    assert "Traceback" in text or "raise RuntimeError" in text
    assert "toy_nn toy/one_class fit=beta" in text
    manifest = RunStore(tmp_path / "run").read_manifest()
    assert manifest["environment"]["git_commit"][:12] in text
    assert next(iter(manifest["dataset_fingerprints"].values())) in text
    assert not list((tmp_path / "rep").rglob("plotly*.js"))  # no viewers, no plotly.js
    parse(tmp_path / "rep" / "index.html")


def test_paper_table_named_by_the_spec_or_given(tmp_path, monkeypatch):
    refs = paper_tables()
    if not refs:
        pytest.skip("no transcribed paper tables")
    assert paper_ref({"config": {"name": refs[0].replace(":", "_")}}, None) == refs[0]
    assert paper_ref({"config": {"name": "my_run"}}, None) is None
    assert paper_ref({}, refs[-1]) == refs[-1]
    toy.activate(monkeypatch)
    try:
        run(toy.toy_spec(categories=["alpha"]), out=tmp_path / "run", show_progress=False)
        write_report(tmp_path / "run", tmp_path / "rep",
                     ReportOptions(paper=refs[0], viewers="none", ply="none", gallery=0))
    finally:
        toy.unregister()
    text = (tmp_path / "rep" / "index.html").read_text()
    assert f"Paper comparison: {refs[0]}" in text and f"{refs[0]} (paper)" in text


def test_damaged_scores_and_a_missing_dataset_do_not_stop_the_report(tmp_path, monkeypatch):
    import benchmark.run.spec as spec_mod

    toy.activate(monkeypatch)
    try:
        s = run(toy.toy_spec(categories=["alpha", "beta"]), out=tmp_path / "run",
                show_progress=False)
    finally:
        toy.unregister()
    monkeypatch.setattr(spec_mod, "_DATASETS", {})  # the dataset "toy" is gone now
    store = RunStore(tmp_path / "run")
    alpha, beta = (j.key for j in s.jobs)
    store.scores_path(beta).write_bytes(b"not a zip file")
    index = write_report(tmp_path / "run", tmp_path / "rep", ReportOptions(gallery=1))
    text = index.read_text()
    assert "damaged" in text and beta in text and "scores.npz" in text
    page = next((tmp_path / "rep").glob(f"*_{alpha[:8]}/alpha/index.html")).read_text()
    assert "the dataset cannot be opened here" in page and "scores.npz" in page
    assert len(list((tmp_path / "rep").rglob("view/*.html"))) == len(store.load_scores(alpha)[0])


def test_clouds_are_loaded_one_at_a_time(tmp_path, monkeypatch):
    """Bounded memory: at most one test cloud of a category is alive while the report is made."""
    import weakref

    import benchmark.report.site as site

    toy.activate(monkeypatch)
    try:
        run(toy.toy_spec(categories=["alpha"], dataset_options={"n_test": 6}),
            out=tmp_path / "run", show_progress=False)
        real_open = site.open_dataset
        alive, peak, loads = set(), [0], [0]

        class Counting:
            def __init__(self, seq):
                self.seq, self.ids = seq, seq.ids

            def __len__(self):
                return len(self.seq)

            def __getitem__(self, j):
                sample = self.seq[j]
                alive.add(loads[0])
                weakref.finalize(sample, alive.discard, loads[0])
                loads[0] += 1
                peak[0] = max(peak[0], len(alive))
                return sample

        class Wrapped:
            def __init__(self, ds):
                self.ds = ds

            def test(self, category):
                return Counting(self.ds.test(category))

        monkeypatch.setattr(site, "open_dataset", lambda *a: Wrapped(real_open(*a)))
        write_report(tmp_path / "run", tmp_path / "rep", ReportOptions(gallery=3, ply="all"))
    finally:
        toy.unregister()
    assert loads[0] == 6 and peak[0] == 1
