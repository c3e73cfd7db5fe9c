"""`python -m benchmark report`: a self-contained HTML report of a run folder (tables, curves,
histograms, galleries, 3D viewers, per-sample CSV, PLY heat maps), opened offline."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HELP = "write a browsable offline HTML report of a run (tables, curves, galleries, 3D viewers)"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run", help="run folder (default: the newest run under results/runs)")
    parser.add_argument("--out", help="report folder (default: <run>/report)")
    parser.add_argument("--paper", metavar="PAPER:TABLE",
                        help="compare with a paper table (default: the one the run spec names)")
    parser.add_argument("--evaluation", help="evaluation id of the tables (default: the run's)")
    parser.add_argument("--gallery", type=int, default=8,
                        help="gallery samples per category, the most wrong first (default 8)")
    parser.add_argument("--viewers", choices=("all", "gallery", "none"), default="all",
                        help="3D viewer pages for every test sample (default), the gallery's, "
                             "or none")
    parser.add_argument("--ply", choices=("all", "gallery", "none"), default="gallery",
                        help="heat-map PLY files for the gallery's samples (default), all, none")
    parser.add_argument("--viewer-points", type=int, default=20_000,
                        help="the 3D viewer shows at most this many points (display only)")
    parser.add_argument("--render-size", type=int, default=256)
    parser.add_argument("--decimals", type=int, default=1)
    parser.add_argument("--screenshot", metavar="PNG",
                        help="also save screenshots of the index, a category page and a 3D "
                             "viewer, side by side (needs chromium)")


def execute(args: argparse.Namespace) -> int:
    from benchmark.report.site import ReportOptions, default_run, print_progress, write_report

    run = Path(args.run) if args.run else default_run()
    opts = ReportOptions(gallery=args.gallery, viewers=args.viewers, ply=args.ply,
                         viewer_points=args.viewer_points, render_size=args.render_size,
                         decimals=args.decimals, evaluation=args.evaluation, paper=args.paper)
    index = write_report(run, args.out, opts, log=print_progress)
    if args.screenshot:
        from benchmark.report.browser import report_screenshot

        report_screenshot(index, Path(args.screenshot))
        print(f"screenshot: {args.screenshot}", file=sys.stderr)
    print(f"report: {index}  (open it in a browser; it works offline)", file=sys.stderr)
    print(index.resolve().as_uri())
    return 0
