"""`python -m benchmark evaluate` (not implemented yet: issue 6)."""

from __future__ import annotations

import argparse

from benchmark.commands._pending import pending

HELP = "evaluate (not implemented yet, issue 6)"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)


execute = pending("evaluate", "issue 6")
