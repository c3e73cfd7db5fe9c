"""Interactive 3D viewer pages (plotly.js, embedded once in the report folder).

One small HTML page per test sample: the cloud as a plotly ``scatter3d`` coloured by anomaly score
(colour map jet, the category's score range), rotatable and zoomable, with buttons that switch the
ground truth on (anomalous points outlined) or show the ground truth alone. Coordinates and scores
travel as base64 uint16 arrays (plotly's typed-array JSON form, quantized for display), so a page
holds about 12 bytes a point.
Clouds larger than ``max_points`` are subsampled uniformly at random (seed 0) for display only;
the page says so. When the page has drawn, it sets ``data-viewer="ready"`` on ``<body>``.
"""

from __future__ import annotations

import base64
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from benchmark.report.html import esc, page

PLOTLY_JS = "plotly.min.js"


def plotly_js_source() -> Path:
    """The plotly.js bundle of the installed plotly package (it ships with open3d's tree)."""
    import plotly

    path = Path(plotly.__file__).parent / "package_data" / PLOTLY_JS
    if not path.is_file():
        from benchmark.errors import ConfigError

        raise ConfigError(f"plotly.js not found at {path}; reinstall plotly")
    return path


def install_plotly_js(assets: Path) -> Path:
    """Copies plotly.min.js into `assets` once (kept when already there with the same size)."""
    src = plotly_js_source()
    dst = assets / PLOTLY_JS
    assets.mkdir(parents=True, exist_ok=True)
    if not dst.is_file() or dst.stat().st_size != src.stat().st_size:
        shutil.copyfile(src, dst)
    return dst


def display_subset(n: int, max_points: int, seed: int = 0) -> np.ndarray | None:
    """Indices of the displayed points (sorted), or None when every point is shown."""
    if max_points <= 0 or n <= max_points:
        return None
    return np.sort(np.random.default_rng(seed).choice(n, max_points, replace=False))


def _typed(values: np.ndarray, dtype: str) -> dict[str, str]:
    arr = np.ascontiguousarray(values, {"u1": np.uint8, "u2": np.uint16, "f4": np.float32}[dtype])
    return {"dtype": dtype, "bdata": base64.b64encode(arr.tobytes()).decode("ascii")}


Q = 65535  # coordinates and scores travel as uint16 (display precision: 1/65535 of the range)


def _quantize(values: np.ndarray, lo: float, hi: float) -> np.ndarray:
    span = hi - lo if hi > lo else 1.0
    t = np.clip((np.asarray(values, np.float64) - lo) / span, 0.0, 1.0)
    return np.rint(np.nan_to_num(t) * Q).astype(np.uint16)


def figure(points: np.ndarray, scores: np.ndarray, gt: np.ndarray | None, vmin: float,
           vmax: float, title: str) -> dict[str, Any]:
    """plotly figure (data + layout) of one displayed cloud. Coordinates are quantized on one
    common scale (so the aspect ratio holds) and scores on the colour range; the colour bar is
    labelled with the real scores. Traces 1-2 (GT) reuse trace 0's coordinates in the page."""
    xyz = np.asarray(points, np.float64)
    lo = xyz.min(0) if len(xyz) else np.zeros(3)
    extent = float((xyz.max(0) - lo).max()) if len(xyz) else 1.0
    q = [_quantize(xyz[:, k] - lo[k], 0.0, extent) for k in range(3)]
    ticks = np.linspace(0, Q, 6)
    labels = [f"{vmin + (vmax - vmin) * t / Q:.4g}" for t in ticks]
    marker = {"size": 2, "color": _typed(_quantize(scores, vmin, vmax), "u2"),
              "colorscale": "Jet", "cmin": 0, "cmax": Q,
              "colorbar": {"title": {"text": "anomaly score"}, "thickness": 14,
                           "tickvals": ticks.tolist(), "ticktext": labels}}
    traces = [{"type": "scatter3d", "mode": "markers", "name": "anomaly score",
               "x": _typed(q[0], "u2"), "y": _typed(q[1], "u2"), "z": _typed(q[2], "u2"),
               "marker": marker, "hoverinfo": "skip"}]
    gt_visible = []
    if gt is not None:
        g = np.asarray(gt).reshape(-1) > 0
        traces.append({"type": "scatter3d", "mode": "markers", "name": "GT anomaly",
                       "x": _typed(q[0][g], "u2"), "y": _typed(q[1][g], "u2"),
                       "z": _typed(q[2][g], "u2"),
                       "marker": {"size": 3.5, "color": "rgba(0,0,0,0)",
                                  "line": {"color": "magenta", "width": 1}},
                       "visible": False, "hoverinfo": "skip"})
        traces.append({"type": "scatter3d", "mode": "markers", "name": "GT",
                       "x": "trace0", "y": "trace0", "z": "trace0",
                       "marker": {"size": 2, "color": _typed(g, "u1"),
                                  "colorscale": [[0, "#bbbbbb"], [1, "#d00000"]], "cmin": 0,
                                  "cmax": 1},
                       "visible": False, "hoverinfo": "skip"})
        gt_visible = [
            {"label": "scores", "method": "restyle", "args": [{"visible": [True, False, False]}]},
            {"label": "scores + GT", "method": "restyle",
             "args": [{"visible": [True, True, False]}]},
            {"label": "GT only", "method": "restyle", "args": [{"visible": [False, False, True]}]},
        ]
    layout: dict[str, Any] = {
        "title": {"text": title, "font": {"size": 13}},
        "scene": {"aspectmode": "data", "xaxis": {"visible": False},
                  "yaxis": {"visible": False}, "zaxis": {"visible": False}},
        "margin": {"l": 0, "r": 0, "t": 40, "b": 0}, "showlegend": False,
        "paper_bgcolor": "#ffffff",
    }
    if gt_visible:
        layout["updatemenus"] = [{"type": "buttons", "direction": "right", "x": 0.0, "y": 1.0,
                                  "xanchor": "left", "yanchor": "top", "buttons": gt_visible}]
    return {"data": traces, "layout": layout}


def decode(fig: dict[str, Any], trace: int, key: str) -> np.ndarray:
    """An array of the figure as the page decodes it (key x, y, z or color; tests, tools)."""
    t = fig["data"][trace]
    value = t["marker"]["color"] if key == "color" else t[key]
    if value == "trace0":
        value = fig["data"][0][key]
    dtype = {"u1": np.uint8, "u2": np.uint16, "f4": np.float32}[value["dtype"]]
    return np.frombuffer(base64.b64decode(value["bdata"]), dtype)


def viewer_page(fig: dict[str, Any], title: str, info_html: str, plotly_src: str,
                nav: list[tuple[str, str]]) -> str:
    # "</" must not appear inside the inline script
    data = json.dumps(fig, separators=(",", ":")).replace("</", "<\\/")
    body = (f"<h1>{esc(title)}</h1>{info_html}"
            '<div id="plot" style="width:100%;height:78vh;min-height:420px"></div>'
            f'<script src="{esc(plotly_src)}"></script>'
            "<script>(function(){var fig=" + data + ";"
            "fig.data.forEach(function(t){['x','y','z'].forEach(function(k){"
            "if(t[k]==='trace0'){t[k]=fig.data[0][k];}});});"
            "var el=document.getElementById('plot');"
            "Plotly.newPlot(el,fig.data,fig.layout,{responsive:true,displaylogo:false})"
            ".then(function(){document.body.setAttribute('data-viewer','ready');});})();"
            "</script>")
    return page(title, body, nav=nav)


def write_viewer(path: Path, points: np.ndarray, scores: np.ndarray, gt: np.ndarray | None,
                 vmin: float, vmax: float, title: str, info_html: str, plotly_src: str,
                 nav: list[tuple[str, str]], max_points: int = 20_000) -> dict[str, int]:
    """Writes one viewer page; returns the numbers of shown and total points."""
    n = len(points)
    keep = display_subset(n, max_points)
    if keep is not None:
        points, scores = points[keep], scores[keep]
        gt = None if gt is None else np.asarray(gt)[keep]
        note = (f"<p class=\"note\">Subsampled for display only: {len(keep):,} of {n:,} points "
                f"shown (uniform random, seed 0); the metrics use every point.</p>")
    else:
        note = f"<p class=\"note\">All {n:,} points shown.</p>"
    fig = figure(points, scores, gt, vmin, vmax, title)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(viewer_page(fig, title, info_html + note, plotly_src, nav))
    return {"shown": len(points), "total": n}


__all__ = ["decode", "display_subset", "figure", "install_plotly_js", "plotly_js_source",
           "write_viewer"]
