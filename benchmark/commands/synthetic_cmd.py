"""`python -m benchmark synthetic` (not implemented yet: issue 5)."""

from __future__ import annotations

import argparse

from benchmark.commands._pending import pending

HELP = "synthetic (not implemented yet, issue 5)"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)


execute = pending("synthetic", "issue 5")
