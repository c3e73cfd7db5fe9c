"""Small HTML string builders for the run report (no template engine): escaped text, tables,
definition lists and a page shell whose first script records JavaScript errors in the page itself
(``<pre id="js-errors">``), so that a headless browser's DOM dump tells whether the page ran
cleanly."""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence
from typing import Any

import pandas as pd

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0 auto;max-width:1280px;
padding:0 1.2em 3em;color:#1d1d1f;background:#fff;font-size:14px}
h1{font-size:1.6em;margin:.8em 0 .3em}h2{font-size:1.25em;margin:1.4em 0 .4em;
border-bottom:1px solid #ddd;padding-bottom:.2em}h3{font-size:1.05em;margin:1em 0 .3em}
table{border-collapse:collapse;margin:.4em 0 1em;font-variant-numeric:tabular-nums}
th,td{border:1px solid #d0d0d0;padding:.25em .55em;text-align:right;white-space:nowrap}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}
caption{caption-side:top;text-align:left;font-weight:600;padding:.3em 0;white-space:nowrap}
.note{color:#555;font-size:.92em}.bad{color:#b00020}.good{color:#0a7d28}
dl.kv{display:grid;grid-template-columns:max-content auto;gap:.15em 1em}
dl.kv dt{font-weight:600}dl.kv dd{margin:0;word-break:break-all}
pre{background:#f6f6f6;padding:.6em;overflow:auto;font-size:.85em;max-height:24em}
.figs img{max-width:100%;border:1px solid #e5e5e5;margin:.2em}
.gallery{display:grid;grid-template-columns:repeat(auto-fill,minmax(380px,1fr));gap:.8em}
.card{border:1px solid #ddd;border-radius:6px;padding:.4em}.card img{width:100%}
.card .meta{font-size:.9em}.label1{color:#b00020;font-weight:600}.label0{color:#0a5ad4}
nav a{margin-right:1em}#js-errors:empty{display:none}#js-errors{color:#b00020}
"""

# first script of every page: JavaScript errors (including scripts that fail to load) are written
# into the page, where a DOM dump or a person sees them
ERROR_HOOK = """<script>
window.__jsErrors=[];
window.addEventListener('error',function(e){var m=e.message||('failed to load '+
((e.target&&(e.target.src||e.target.href))||'a resource'));window.__jsErrors.push(m);
var p=document.getElementById('js-errors');if(p){p.textContent+=m+'\\n';}},true);
window.addEventListener('unhandledrejection',function(e){var m='unhandled rejection: '+
e.reason;window.__jsErrors.push(m);var p=document.getElementById('js-errors');
if(p){p.textContent+=m+'\\n';}});
</script>"""


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def page(title: str, body: str, head: str = "", nav: Sequence[tuple[str, str]] = ()) -> str:
    links = "".join(f'<a href="{esc(href)}">{esc(text)}</a>' for text, href in nav)
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">"
            f"<title>{esc(title)}</title>{ERROR_HOOK}<style>{CSS}</style>{head}</head>\n<body>"
            f"{f'<nav>{links}</nav>' if links else ''}<pre id=\"js-errors\"></pre>\n{body}\n"
            "</body></html>\n")


def table(frame: pd.DataFrame, caption: str | None = None, cls: str = "",
          raw_columns: Iterable[str] = ()) -> str:
    """`frame` as an HTML table; cells are escaped except in `raw_columns` (already HTML)."""
    raw = set(raw_columns)
    head = "".join(f"<th>{esc(c)}</th>" for c in frame.columns)
    rows = []
    for rec in frame.itertuples(index=False):
        cells = "".join(f"<td>{v if c in raw else esc(v)}</td>"
                        for c, v in zip(frame.columns, rec))
        rows.append(f"<tr>{cells}</tr>")
    cap = f"<caption>{esc(caption)}</caption>" if caption else ""
    return (f'<table class="{esc(cls)}">{cap}<thead><tr>{head}</tr></thead><tbody>'
            + "".join(rows) + "</tbody></table>")


def kv(pairs: Iterable[tuple[str, Any]]) -> str:
    return ('<dl class="kv">' + "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in pairs)
            + "</dl>")


def details(summary: str, inner_html: str, open_: bool = False) -> str:
    return (f"<details{' open' if open_ else ''}><summary>{esc(summary)}</summary>{inner_html}"
            "</details>")


def link(href: str, text: str) -> str:
    return f'<a href="{esc(href)}">{esc(text)}</a>'


__all__ = ["CSS", "ERROR_HOOK", "details", "esc", "kv", "link", "page", "table"]
