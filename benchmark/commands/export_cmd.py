"""`python -m benchmark export`: heat-map PLY/PNG files, anomaly-map overlays, ROC/PRO curves."""

from __future__ import annotations

import argparse
import sys

HELP = "export per-point heat maps (PLY + PNG), anomaly-map overlays and ROC/PRO curves of a run"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run", required=True, help="run folder")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--job", help="only this job (key or key prefix)")
    parser.add_argument("--category", help="only this test category")
    parser.add_argument("--limit", type=int, default=4,
                        help="samples per category (anomalous first; default 4; 0 = all)")
    parser.add_argument("--no-ply", action="store_true")
    parser.add_argument("--no-png", action="store_true")
    parser.add_argument("--no-curves", action="store_true")
    parser.add_argument("--render-size", type=int, default=384)
    parser.add_argument("--scale", choices=("category", "sample"), default="category",
                        help="colour scale: the category's min..max over the exported samples "
                             "(default; colours compare) or each sample's own min..max")


def execute(args: argparse.Namespace) -> int:
    from benchmark.report.export import export_run

    files = export_run(args.run, args.out, job=args.job, category=args.category,
                       limit=None if args.limit == 0 else args.limit, ply=not args.no_ply,
                       png=not args.no_png, curves=not args.no_curves,
                       render_size=args.render_size, scale=args.scale)
    print(f"wrote {len(files)} file(s) under {args.out}", file=sys.stderr)
    for f in files:
        print(f)
    return 0
