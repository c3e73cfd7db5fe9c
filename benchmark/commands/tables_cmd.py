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


#: job errors that mean "an input is missing" (weights, dataset files), not a broken method
MISSING_INPUT_ERRORS = ("WeightsError", "DatasetError")


def spec_parts(paper) -> list[Path]:
    """The table's run spec plus its sibling parts ``<table>.<part>.yaml`` (a part runs rows that
    need another protocol, e.g. the one-class rows of a zero-shot table), in name order."""
    if paper.spec_path is None:
        return []
    extra = sorted(p for p in paper.spec_path.parent.glob(f"{paper.table}.*.yaml")
                   if not p.name.endswith(".meta.yaml"))
    return [paper.spec_path, *extra]


def row_plan(paper, specs: list) -> tuple[list[list], list[tuple[str, str]]]:
    """Which rows of `paper` the specs can run: (per spec, its methods whose preset is
    registered), and (printed row, reason) for every row that will not run. Rows are named
    through the table's method map, so a preset added later runs without editing this code."""
    from benchmark.registry import METHODS

    METHODS.discover()
    runnable: list[list] = []
    labels: set[str] = set()
    unregistered: set[str] = set()
    for spec in specs:
        keep = []
        for ref in spec.methods:
            if ref.name in METHODS:
                keep.append(ref)
                labels.add(ref.label)
            else:
                unregistered.add(ref.name)
        runnable.append(keep)
    mapping = paper.meta.get("method_map") or {}
    skipped: list[tuple[str, str]] = []
    seen: set[str] = set()
    for printed in paper.frame["method"] if "method" in paper.frame else []:
        printed = str(printed)
        if printed in seen:
            continue
        seen.add(printed)
        preset = mapping.get(printed)
        if not preset:
            skipped.append((printed, "no preset: method without public code, or not built"))
        elif preset in labels or f"{preset}+rgb" in labels:
            continue
        elif preset.split("+")[0] not in METHODS or preset in unregistered:
            skipped.append((printed, f"preset '{preset}' is not registered in this checkout"))
        else:
            skipped.append((printed, f"preset '{preset}' is not in the table's run spec"))
    return runnable, skipped


def _failed_rows(paper, run_dir: Path) -> list[tuple[str, str, str]]:
    """(printed row, error type, message) of the rows whose jobs failed in `run_dir`."""
    from benchmark.run.store import RunStore

    by_label: dict[str, tuple[str, str]] = {}
    for _key, res in RunStore(run_dir).iter_results():
        if res.get("status") == "ok":
            continue
        err = res.get("error") or {}
        label = (res.get("job") or {}).get("method_label", "?")
        by_label.setdefault(label, (str(err.get("type")), str(err.get("message"))))
    rows = []
    for printed, preset in (paper.meta.get("method_map") or {}).items():
        for label in (preset, f"{preset}+rgb"):
            if preset and label in by_label:
                rows.append((printed, *by_label[label]))
                break
    return rows


def _regenerate(args: argparse.Namespace) -> tuple[int, Path | None]:
    from benchmark.report.tables import load_paper_table
    from benchmark.run import runner
    from benchmark.run.spec import load_spec

    paper = load_paper_table(args.paper)
    if paper.spec_path is None:
        raise ConfigError(f"{paper.ref} has no run spec ({paper.paper}/{paper.table}.yaml): "
                          f"its methods are not implemented in this benchmark")
    out = Path(args.out) if args.out else runner.runs_root() / f"{paper.paper}_{paper.table}"
    specs = []
    for path in spec_parts(paper):
        spec = load_spec(path)
        spec.name = spec.name or f"{paper.paper}_{paper.table}"
        if args.root:
            spec.root = parse_roots(args.root)
        if args.device:
            spec.device = args.device
        spec.plugins = list(spec.plugins) + list(args.plugin)
        specs.append(spec)
    if args.plugin:
        from benchmark.run.spec import import_plugins

        import_plugins(args.plugin)
    runnable, skipped = row_plan(paper, specs)
    for printed, reason in skipped:
        print(f"{paper.ref}: row '{printed}' not run: {reason}", file=sys.stderr)
    code = 0
    for spec, methods in zip(specs, runnable):
        if not methods:
            continue
        spec.methods = methods
        part_code, out = run_and_report(spec, args, out)
        code = max(code, part_code)
    if not any(runnable):
        print(f"{paper.ref}: no row of this table can run in this checkout", file=sys.stderr)
        return 0, None
    failed = _failed_rows(paper, out)
    for printed, kind, message in failed:
        print(f"{paper.ref}: row '{printed}' could not run: {kind}: {message}", file=sys.stderr)
    if code and failed and all(kind in MISSING_INPUT_ERRORS for _, kind, _ in failed):
        code = 0  # only missing inputs (weights, data files): listed above, not a failure
    return code, out


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
