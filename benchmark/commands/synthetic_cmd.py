"""`python -m benchmark synthetic`: write a synthetic dataset in a real dataset's on-disk format."""

from __future__ import annotations

import argparse
import time

from benchmark.registry import DATASETS

HELP = "write a synthetic dataset in the on-disk format of a real one (mvtec3d, eyecandies, ...)"
FORMATS = ("mvtec3d", "eyecandies", "real3d", "anomaly_shapenet")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--format", choices=FORMATS, default="mvtec3d", help="on-disk format")
    parser.add_argument(
        "--out", required=True, help="folder to create (must not exist or be empty)"
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="everything derives from it (default 0)"
    )
    parser.add_argument(
        "--categories",
        type=int,
        default=None,
        help="number of categories (default: all of the size, 4 small / 10 medium)",
    )
    parser.add_argument("--size", choices=("small", "medium"), default="small")


def execute(args: argparse.Namespace) -> int:
    # reached through the registry: benchmark/ never imports datasets/ directly
    create = DATASETS.get("synthetic").factory
    start = time.perf_counter()
    adapter = create(format=args.format, seed=args.seed, size=args.size,
                     categories=args.categories, root=args.out)  # fmt: skip
    seconds = time.perf_counter() - start
    table = adapter.describe()
    pivot = table.pivot_table(index="category", columns="split", values="count", aggfunc="sum",
                              fill_value=0)  # fmt: skip
    print(f"wrote {args.format} synthetic dataset (seed {args.seed}, size {args.size}) to "
          f"{args.out} in {seconds:.1f} s")  # fmt: skip
    print(pivot.to_string())
    print(f"read it with: DATASETS.create({args.format!r}, root={str(args.out)!r})")
    return 0
