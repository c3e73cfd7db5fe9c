"""`python -m benchmark list`: both registries with their metadata."""

from __future__ import annotations

import argparse
import json

from benchmark.registry import DATASETS, METHODS, Registry

HELP = "list the registered methods and datasets with their metadata"
COLUMNS = {
    "methods": ("name", "learning", "modalities", "outputs", "status", "summary"),
    "datasets": ("name", "status", "summary"),
}


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("what", nargs="?", choices=("methods", "datasets", "all"), default="all")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument("--verbose", "-v", action="store_true",
                        help="add provenance and origin (datasets: unit) columns; "
                             "`describe NAME` shows one entry in full")


def _rows(registry: Registry) -> list[dict]:
    rows = [entry.describe() for entry in registry.entries()]
    if registry is DATASETS:
        from benchmark.commands.describe_cmd import unit_text

        for row, entry in zip(rows, registry.entries()):
            row["unit"] = unit_text(entry)
    return rows


def execute(args: argparse.Namespace) -> int:
    selected = {"methods": METHODS, "datasets": DATASETS}
    if args.what != "all":
        selected = {args.what: selected[args.what]}
    if args.json:
        print(json.dumps({k: _rows(r) for k, r in selected.items()}, indent=2))
        return 0
    from rich.console import Console
    from rich.table import Table

    console = Console(width=160)
    for kind, registry in selected.items():
        extra = (("unit",) if kind == "datasets" else ()) + ("provenance", "origin")
        cols = COLUMNS[kind] + (extra if args.verbose else ())
        table = Table(title=f"{kind} ({len(registry)})", show_lines=False)
        for col in cols:
            table.add_column(col, overflow="fold")
        for row in _rows(registry):
            table.add_row(*(str(row[c]) for c in cols))
        console.print(table)
        for name, err in registry.discovery_errors.items():
            console.print(f"[red]plugin {name!r} failed to load:[/red] {err}")
    return 0
