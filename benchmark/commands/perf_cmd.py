"""`python -m benchmark perf [SUITE ...]`: the speed/memory benchmarks, printed as tables."""

from __future__ import annotations

import argparse

from benchmark.perf import SUITES, discover, print_rows

HELP = "run performance benchmarks (suites: metrics, methods, rendering, ...) and print tables"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("suites", nargs="*", help="suite names (default: all)")
    parser.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke run")


def execute(args: argparse.Namespace) -> int:
    discover()
    names = args.suites or sorted(SUITES)
    unknown = [n for n in names if n not in SUITES]
    if unknown:
        from benchmark.errors import ConfigError

        raise ConfigError(f"unknown perf suite(s) {unknown}; known: {sorted(SUITES)}")
    for name in names:
        print(f"\n## perf: {name}")
        print_rows(SUITES[name](quick=args.quick))
    return 0
