"""Placeholder for commands whose issue has not landed yet."""

from __future__ import annotations

import argparse

from benchmark.errors import BenchmarkError


class NotImplementedYet(BenchmarkError):
    pass


def pending(command: str, issue: str):
    def execute(args: argparse.Namespace) -> int:
        raise NotImplementedYet(f"'{command}' is not implemented yet (tracked in {issue})")

    return execute
