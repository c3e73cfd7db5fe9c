"""`python -m benchmark evaluate`: re-evaluate a stored run with other metric variants, from its
scores.npz files (no model runs)."""

from __future__ import annotations

import argparse
import sys

HELP = "re-evaluate a stored run (other grid / domain / AUPRO mode) without rerunning models"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run", required=True, help="run folder")
    parser.add_argument("--grid", choices=("native", "224", "336"), default=None)
    parser.add_argument("--domain", choices=("all", "valid"), default=None)
    parser.add_argument("--aupro-mode", choices=("exact", "mvtec3d_sampled", "cflow200"),
                        default=None)
    parser.add_argument("--aupro-limit", type=float, default=None)
    parser.add_argument("--aupr-variant", choices=("ap", "trapezoid"), default=None)
    parser.add_argument("--num-thresholds", type=int, default=None,
                        help="thresholds of the mvtec3d_sampled AUPRO (default 100)")
    parser.add_argument("--format", choices=("md", "latex", "csv"), default="md")
    parser.add_argument("--no-table", action="store_true")


def execute(args: argparse.Namespace) -> int:
    from benchmark.report.tables import render_run
    from benchmark.run.runner import reevaluate
    from benchmark.run.spec import EvalConfig
    from benchmark.run.store import RunStore

    manifest = RunStore(args.run).read_manifest()
    base = dict((manifest.get("config") or {}).get("evaluation") or {})
    for name in ("grid", "domain", "aupro_mode", "aupro_limit", "aupr_variant", "num_thresholds"):
        value = getattr(args, name)
        if value is not None:
            base[name] = value
    cfg = EvalConfig.from_dict(base)
    n = reevaluate(args.run, cfg)
    print(f"evaluated {n} job(s) with {cfg.id}; metrics.csv updated", file=sys.stderr)
    if not args.no_table:
        print(render_run(args.run, fmt=args.format, evaluation=cfg.id))
    return 0
