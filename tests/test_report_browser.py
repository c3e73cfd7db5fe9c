"""The report in a real headless browser (Chromium): the index, a category page and a 3D viewer
load without JavaScript errors, the viewer draws, and a screenshot is not blank. Slow; skipped
when no browser is installed (`scripts/system_deps.sh --browser` installs Debian's chromium)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import test_runner_fixtures as toy

from benchmark.report.browser import find_browser, is_blank, load_page, report_pages, screenshot
from benchmark.report.site import ReportOptions, write_report
from benchmark.run.runner import run

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def browser():
    path = find_browser()
    if path is None:
        pytest.skip("no headless browser (chromium) installed: run scripts/system_deps.sh "
                    "--browser (as root) or set BENCHMARK_BROWSER")
    return path


@pytest.mark.parametrize("organized", [True, False], ids=["organized", "unorganized"])
def test_report_loads_in_chromium_without_errors(browser, tmp_path, monkeypatch, organized):
    toy.activate(monkeypatch)
    try:
        spec = toy.toy_spec(categories=["alpha", "beta"], seeds=[0, 1],
                            dataset_options={"organized": organized},
                            methods=[{"name": "toy_nn", "args": {"noise": 0.05}}])
        run(spec, out=tmp_path / "run", show_progress=False)
        index = write_report(tmp_path / "run", tmp_path / "report",
                             ReportOptions(gallery=2, viewer_points=100))
    finally:
        toy.unregister()
    pages = report_pages(index)
    assert len(pages) == 3 and pages[2].parent.name == "view"
    loads = [load_page(page) for page in pages]
    for page, loaded in zip(pages, loads):
        assert loaded.errors == [], (page, loaded.errors)
        assert loaded.tags.get("table", 0) > 0 or page.parent.name == "view"
    viewer = loads[2]
    assert viewer.viewer_ready, "the 3D viewer did not finish drawing"
    assert viewer.tags.get("canvas", 0) > 0 and viewer.tags.get("svg", 0) > 0
    for k, page in enumerate(pages):
        png = screenshot(page, tmp_path / f"shot{k}.png", size=(1000, 800))
        assert not is_blank(png), png
    keep = os.environ.get("REPORT_SCREENSHOTS")  # CI may keep them as artifacts
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        for k in range(len(pages)):
            shutil.copy(tmp_path / f"shot{k}.png",
                        Path(keep) / f"{'org' if organized else 'unorg'}_{k}.png")


def test_a_javascript_error_is_caught(browser, tmp_path):
    """The check can fail: a page with a broken script and a missing one reports both."""
    from benchmark.report.html import page

    bad = tmp_path / "bad.html"
    bad.write_text(page("bad", '<script src="missing.js"></script>'
                               "<script>undefinedFunction();</script><table></table>"))
    loaded = load_page(bad, budget_ms=2000)
    assert any("missing.js" in e for e in loaded.errors)
    assert any("undefinedFunction" in e for e in loaded.errors)


def test_a_blank_screenshot_is_detected(tmp_path):
    import numpy as np
    from PIL import Image

    Image.fromarray(np.full((50, 80, 3), 255, np.uint8)).save(tmp_path / "white.png")
    assert is_blank(tmp_path / "white.png")
