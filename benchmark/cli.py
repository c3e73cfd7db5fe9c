"""`python -m benchmark <command>`: one module per command under `benchmark/commands/`.

Each command module defines ``HELP`` (one line), ``configure(parser)`` and ``execute(args) -> int``.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from benchmark.errors import BenchmarkError

COMMANDS = ("list", "describe", "run", "evaluate", "tables", "compare", "synthetic", "export",
            "report", "perf", "pretrain")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmark",
        description="3D industrial anomaly-detection benchmark",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        module = importlib.import_module(f"benchmark.commands.{name.replace('-', '_')}_cmd")
        cmd = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.configure(cmd)
        cmd.set_defaults(_execute=module.execute)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args._execute(args) or 0)
    except BenchmarkError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted (Ctrl-C): workers stopped; finished jobs are kept, the same "
              "command resumes the run", file=sys.stderr)
        return 130
