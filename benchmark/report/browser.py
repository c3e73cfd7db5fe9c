"""Headless Chromium for the report: load a page and read back its DOM, its JavaScript errors and
whether the 3D viewer drew; take screenshots. No driver library: the browser's own ``--dump-dom``
and ``--screenshot`` switches, with software WebGL (SwiftShader) for plotly's 3D scenes.

The report pages write every JavaScript error (and every script that fails to load) into
``<pre id="js-errors">`` (see `html.ERROR_HOOK`), and a viewer sets ``data-viewer="ready"`` on
``<body>`` once plotly has drawn, so the dumped DOM tells both. Console errors the browser logs
("Uncaught ...") are collected too.

The browser: ``$BENCHMARK_BROWSER``, else the first of chromium / chromium-browser /
google-chrome on PATH (Debian: ``apt-get install chromium``, or ``scripts/system_deps.sh
--browser``).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

import numpy as np

from benchmark.errors import BenchmarkError

NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
FLAGS = ("--headless", "--no-sandbox", "--disable-dev-shm-usage", "--no-first-run",
         "--disable-extensions", "--hide-scrollbars", "--mute-audio",
         "--use-angle=swiftshader", "--enable-unsafe-swiftshader")
CONSOLE_ERROR = re.compile(r'CONSOLE[^\]]*\]\s*"((?:Uncaught|Error|TypeError|ReferenceError|'
                           r'SyntaxError)[^"]*)"')


class BrowserError(BenchmarkError):
    """No headless browser, or it failed."""


def find_browser() -> str | None:
    env = os.environ.get("BENCHMARK_BROWSER")
    if env:
        return env if shutil.which(env) or Path(env).is_file() else None
    for name in NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


def _run(args: list[str], timeout: float) -> subprocess.CompletedProcess:
    browser = find_browser()
    if browser is None:
        raise BrowserError("no headless browser: install chromium (scripts/system_deps.sh "
                           "--browser, or apt-get install chromium) or set $BENCHMARK_BROWSER")
    with tempfile.TemporaryDirectory(prefix="report-browser-") as profile:
        cmd = [browser, *FLAGS, f"--user-data-dir={profile}", *args]
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired as err:
            raise BrowserError(f"{browser} did not finish within {timeout:.0f} s") from err


class _DomReader(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.in_errors = False
        self.errors = ""
        self.body_attrs: dict[str, str] = {}
        self.tags: dict[str, int] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        self.tags[tag] = self.tags.get(tag, 0) + 1
        if tag == "body":
            self.body_attrs = a
        if tag == "pre" and a.get("id") == "js-errors":
            self.in_errors = True

    def handle_endtag(self, tag: str) -> None:
        if tag == "pre":
            self.in_errors = False

    def handle_data(self, data: str) -> None:
        if self.in_errors:
            self.errors += data


@dataclass
class PageLoad:
    url: str
    dom: str
    errors: list[str] = field(default_factory=list)
    viewer_ready: bool = False
    tags: dict[str, int] = field(default_factory=dict)


def load_page(path: str | Path, budget_ms: int = 10_000, timeout: float = 120.0) -> PageLoad:
    """Opens `path` headless, lets it run `budget_ms` of virtual time, returns what it shows."""
    url = Path(path).resolve().as_uri()
    proc = _run(["--enable-logging=stderr", "--v=0", f"--virtual-time-budget={budget_ms}",
                 "--dump-dom", url], timeout)
    if proc.returncode != 0 or "<html" not in proc.stdout:
        raise BrowserError(f"the browser could not load {url} (exit {proc.returncode}): "
                           f"{proc.stderr[-800:]}")
    reader = _DomReader()
    reader.feed(proc.stdout)
    errors = [e for e in reader.errors.splitlines() if e.strip()]
    errors += CONSOLE_ERROR.findall(proc.stderr)
    return PageLoad(url, proc.stdout, errors, reader.body_attrs.get("data-viewer") == "ready",
                    reader.tags)


def screenshot(path: str | Path, png: str | Path, size: tuple[int, int] = (1200, 900),
               budget_ms: int = 10_000, timeout: float = 120.0) -> Path:
    """Saves a screenshot of the page at `path` as `png`."""
    png = Path(png).resolve()
    png.parent.mkdir(parents=True, exist_ok=True)
    proc = _run([f"--window-size={size[0]},{size[1]}", f"--virtual-time-budget={budget_ms}",
                 f"--screenshot={png}", Path(path).resolve().as_uri()], timeout)
    if proc.returncode != 0 or not png.is_file():
        raise BrowserError(f"screenshot of {path} failed (exit {proc.returncode}): "
                           f"{proc.stderr[-800:]}")
    return png


def is_blank(png: str | Path, min_colours: int = 16, min_std: float = 4.0) -> bool:
    """True when the image is (nearly) one flat colour."""
    from PIL import Image

    img = np.asarray(Image.open(png).convert("RGB"))
    colours = len(np.unique(img.reshape(-1, 3)[:: max(1, img.size // 3 // 200_000)], axis=0))
    return colours < min_colours or float(img.std()) < min_std


def montage(pngs: list[Path], out: str | Path, width: int = 1500) -> Path:
    """The screenshots side by side, scaled to `width` pixels, as a small palette PNG."""
    from PIL import Image

    images = [Image.open(p).convert("RGB") for p in pngs]
    h = min(im.height for im in images)
    images = [im.crop((0, 0, im.width, h)) for im in images]
    sheet = Image.new("RGB", (sum(im.width for im in images) + 8 * (len(images) - 1), h),
                      (200, 200, 200))
    x = 0
    for im in images:
        sheet.paste(im, (x, 0))
        x += im.width + 8
    scale = width / sheet.width
    sheet = sheet.resize((width, max(1, round(h * scale))), Image.LANCZOS)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.quantize(colors=192, method=Image.Quantize.MEDIANCUT).save(out, optimize=True)
    return out


def report_pages(index: str | Path) -> list[Path]:
    """The index, its first category page and a 3D viewer of that page: the highest-scored
    anomalous sample's, else the first one linked."""
    import pandas as pd

    from benchmark.report.site import slug

    index = Path(index)
    pages = [index]
    cats = sorted(index.parent.glob("*/*/index.html"))
    if cats:
        pages.append(cats[0])
        views = sorted((cats[0].parent / "view").glob("*.html"))
        table = pd.read_csv(cats[0].parent / "samples.csv", dtype={"sample": str})
        anomalous = table[table["label"] > 0].sort_values("score", ascending=False)
        best = [cats[0].parent / "view" / f"{slug(s)}.html" for s in anomalous["sample"]]
        best = [p for p in best if p.is_file()]
        if best or views:
            pages.append(best[0] if best else views[0])
    return pages


def report_screenshot(index: str | Path, png: str | Path, width: int = 1500) -> Path:
    """Screenshots of the index, a category page and a 3D viewer, side by side (README)."""
    with tempfile.TemporaryDirectory(prefix="report-shots-") as tmp:
        shots = [screenshot(p, Path(tmp) / f"{k}.png", size=(1000, 1100))
                 for k, p in enumerate(report_pages(index))]
        return montage(shots, png, width)


__all__ = ["BrowserError", "PageLoad", "find_browser", "is_blank", "load_page", "montage",
           "report_pages", "report_screenshot", "screenshot"]
