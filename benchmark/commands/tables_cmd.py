"""`python -m benchmark tables`: render a run (optionally in a paper's layout), print a paper
table, or regenerate a paper table from its run spec (`make tables PAPER=P:T`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from benchmark.commands.run_cmd import add_execution_options, parse_roots, run_and_report
from benchmark.errors import ConfigError

HELP = "render a run's tables (md/latex/csv), a paper table, or regenerate a paper table"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run", help="run folder")
    parser.add_argument("--paper", metavar="PAPER:TABLE", help="e.g. pointad_plus:table1")
    parser.add_argument("--format", choices=("md", "latex", "csv"), default="md")
    parser.add_argument("--evaluation", help="evaluation id to show (default: the run's own)")
    e = parser.add_argument_group("evaluation to show (instead of --evaluation)")
    e.add_argument("--grid", choices=("native", "224", "336"), default=None)
    e.add_argument("--domain", choices=("all", "valid"), default=None)
    e.add_argument("--aupro-mode", choices=("exact", "mvtec3d_sampled", "cflow200"), default=None)
    e.add_argument("--aupro-limit", type=float, default=None)
    e.add_argument("--aupr-variant", choices=("ap", "trapezoid"), default=None)
    parser.add_argument("--metrics", nargs="+", help="only these metrics")
    parser.add_argument("--decimals", type=int, default=1)
    parser.add_argument("--list", action="store_true", help="list the transcribed paper tables")
    parser.add_argument("--regenerate", action="store_true",
                        help="run the paper table's spec into results/runs/<paper>_<table>, "
                             "then render it in the paper's layout and compare")
    parser.add_argument("--root", action="append", metavar="[DATASET=]PATH",
                        help="dataset root(s) for --regenerate (the specs leave them null)")
    parser.add_argument("--out", help="run folder for --regenerate")
    parser.add_argument("--allow-partial", action="store_true",
                        help="compare our partial means (n/N categories) with the paper's too")
    add_execution_options(parser)


def _regenerate(args: argparse.Namespace) -> tuple[int, Path]:
    from benchmark.report.tables import load_paper_table
    from benchmark.run import runner
    from benchmark.run.spec import load_spec

    paper = load_paper_table(args.paper)
    if paper.spec_path is None:
        raise ConfigError(f"{paper.ref} has no run spec ({paper.paper}/{paper.table}.yaml): "
                          f"its methods are not implemented in this benchmark")
    spec = load_spec(paper.spec_path)
    spec.name = spec.name or f"{paper.paper}_{paper.table}"
    if args.root:
        spec.root = parse_roots(args.root)
    if args.device:
        spec.device = args.device
    spec.plugins = list(spec.plugins) + list(args.plugin)
    out = Path(args.out) if args.out else runner.runs_root() / f"{paper.paper}_{paper.table}"
    return run_and_report(spec, args, out)


def evaluation_id(args: argparse.Namespace, run_dir: str | Path) -> str | None:
    """--evaluation, or the run's evaluation with the --grid/--domain/... overrides applied."""
    from benchmark.commands.run_cmd import eval_overrides
    from benchmark.run.spec import EvalConfig
    from benchmark.run.store import RunStore

    overrides = eval_overrides(args)
    if args.evaluation or not overrides:
        return args.evaluation
    base = (RunStore(run_dir).read_manifest().get("config") or {}).get("evaluation") or {}
    return EvalConfig.from_dict({**base, **overrides}).id


def execute(args: argparse.Namespace) -> int:
    from benchmark.report.tables import (
        compare_text,
        load_paper_table,
        ours_in_paper_layout,
        paper_tables,
        render_frame,
        render_run,
    )

    if args.list:
        for ref in paper_tables():
            print(ref)
        return 0
    code = 0
    run_dir = args.run
    if args.regenerate:
        if not args.paper:
            raise ConfigError("--regenerate needs --paper PAPER:TABLE")
        code, run_dir = _regenerate(args)
    if run_dir is None and args.paper is None:
        raise ConfigError("give --run DIR and/or --paper PAPER:TABLE (or --list)")
    evaluation = evaluation_id(args, run_dir) if run_dir is not None else None
    if args.paper is None:
        print(render_run(run_dir, fmt=args.format, evaluation=evaluation,
                         metrics=args.metrics, decimals=args.decimals))
        return code
    paper = load_paper_table(args.paper)
    caption = paper.meta.get("caption", "")
    if run_dir is None:
        print(render_frame(paper.frame, args.format, f"{paper.ref} (paper) {caption}".strip()))
        return code
    ours = ours_in_paper_layout(run_dir, paper, evaluation)
    print(render_frame(ours, args.format, f"{paper.ref} (ours, paper layout) {caption}".strip()))
    if args.format == "md":
        print(render_frame(paper.frame, "md", f"{paper.ref} (paper)"))
        print(compare_text(run_dir, paper, "md", evaluation, allow_partial=args.allow_partial))
    print(f"run folder: {run_dir}", file=sys.stderr)
    return code
