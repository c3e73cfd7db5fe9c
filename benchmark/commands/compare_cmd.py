"""`python -m benchmark compare`: our numbers beside a paper table's, with the difference."""

from __future__ import annotations

import argparse

HELP = "compare a run with a transcribed paper table (ours, paper, difference)"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run", required=True, help="run folder")
    parser.add_argument("--paper", required=True, metavar="PAPER:TABLE",
                        help="e.g. pointad_plus:table1 (see `benchmark tables --list`)")
    parser.add_argument("--format", choices=("md", "latex", "csv"), default="md")
    parser.add_argument("--evaluation", help="evaluation id (default: the paper spec's, else the "
                        "run's own)")


def execute(args: argparse.Namespace) -> int:
    from benchmark.report.tables import compare_text, load_paper_table

    print(compare_text(args.run, load_paper_table(args.paper), args.format, args.evaluation))
    return 0
