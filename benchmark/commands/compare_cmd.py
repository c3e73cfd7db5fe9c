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
    parser.add_argument("--allow-partial", action="store_true",
                        help="also compare our means over fewer categories than the paper's "
                             "average (marked n/N)")


def execute(args: argparse.Namespace) -> int:
    """Exit code 0 when at least one cell was compared, 1 when none matched."""
    from benchmark.report.tables import compare_report, load_paper_table

    text, n = compare_report(args.run, load_paper_table(args.paper), args.format,
                             args.evaluation, allow_partial=args.allow_partial)
    print(text)
    return 0 if n else 1
