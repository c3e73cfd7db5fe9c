"""`python -m benchmark run`: run methods on a dataset under a protocol, print the table."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from benchmark.errors import ConfigError

HELP = "run methods x datasets x protocol x categories x seeds (resumable) and print the table"


def add_execution_options(parser: argparse.ArgumentParser) -> None:
    """Options shared by `run` and `tables --regenerate`."""
    g = parser.add_argument_group("execution")
    g.add_argument("--executor", choices=("local", "processes", "slurm"), default="local",
                   help="where jobs run (default: local, in this process)")
    g.add_argument("--workers", type=int, default=2, help="processes for --executor processes")
    g.add_argument("--device", default=None, help="cpu (default) or cuda[:N]")
    g.add_argument("--force", action="store_true", help="recompute jobs that already have results")
    g.add_argument("--plugin", action="append", default=[], metavar="MODULE|FILE.py",
                   help="import a module or a .py file first (it registers extra "
                        "methods/datasets); repeatable")
    s = parser.add_argument_group("slurm (submitit)")
    s.add_argument("--slurm-partition", default=None)
    s.add_argument("--slurm-time", type=int, default=240, help="time limit per job in minutes")
    s.add_argument("--slurm-gpus", type=int, default=0, help="GPUs per job")
    s.add_argument("--slurm-cpus", type=int, default=None, help="CPUs per job")
    s.add_argument("--slurm-mem-gb", type=float, default=None)
    s.add_argument("--slurm-cluster", default=None, choices=("slurm", "local", "debug"),
                   help="submitit cluster (default: Slurm when available; 'local' = subprocesses)")
    s.add_argument("--slurm-set", action="append", default=[], metavar="KEY=VALUE",
                   help="extra submitit parameter, e.g. slurm_account=abc; repeatable")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--spec", help="run spec YAML (command-line options override its fields)")
    parser.add_argument("--method", "--methods", dest="methods", nargs="+", action="extend",
                        metavar="PRESET", help="method preset(s) (see `benchmark list`)")
    parser.add_argument("--dataset", "--datasets", dest="datasets", nargs="+", action="extend",
                        help="dataset(s) (default: synthetic)")
    parser.add_argument("--root", action="append", metavar="[DATASET=]PATH",
                        help="dataset root folder; DATASET=PATH (repeatable) when a run uses "
                             "several datasets")
    parser.add_argument("--protocol", "--protocols", dest="protocols", nargs="+",
                        action="extend",
                        help="one_class (default), zero_shot, cross_dataset, zero_shot_pairs")
    parser.add_argument("--categories", nargs="+", help="categories to test (default: all)")
    parser.add_argument("--aux", nargs="+", help="auxiliary (training) categories of zero_shot / "
                        "cross_dataset (default: the paper's), or the training classes of "
                        "zero_shot_pairs (default: every tested class)")
    parser.add_argument("--train-dataset", help="dataset A of cross_dataset")
    parser.add_argument("--train-root", help="root of dataset A")
    parser.add_argument("--seeds", nargs="+", type=int, help="seeds (default: 0)")
    parser.add_argument("--set", dest="sets", action="append", default=[], nargs="+",
                        metavar="KEY=VALUE", help="method argument override(s)")
    parser.add_argument("--dataset-option", action="append", default=[], nargs="+",
                        metavar="KEY=VALUE", help="dataset constructor option(s)")
    parser.add_argument("--train-dataset-option", action="append", default=[], nargs="+",
                        metavar="KEY=VALUE")
    parser.add_argument("--out", help="run folder (default: results/runs/<method>_<dataset>_"
                        "<protocol>_<hash>)")
    e = parser.add_argument_group("evaluation")
    e.add_argument("--grid", choices=("native", "224", "336"), default=None)
    e.add_argument("--domain", choices=("all", "valid"), default=None)
    e.add_argument("--aupro-mode", choices=("exact", "mvtec3d_sampled", "cflow200"), default=None)
    e.add_argument("--aupro-limit", type=float, default=None)
    e.add_argument("--aupr-variant", choices=("ap", "trapezoid"), default=None)
    parser.add_argument("--format", choices=("md", "latex", "csv"), default="md",
                        help="format of the table printed at the end")
    parser.add_argument("--no-table", action="store_true", help="do not print the table")
    add_execution_options(parser)


def _flatten(groups: list) -> list[str]:
    return [x for g in groups for x in (g if isinstance(g, list) else [g])]


def eval_overrides(args: argparse.Namespace) -> dict:
    out = {}
    for name in ("grid", "domain", "aupro_mode", "aupro_limit", "aupr_variant"):
        value = getattr(args, name, None)
        if value is not None:
            out[name] = value
    return out


def build_spec(args: argparse.Namespace):
    from benchmark.run.spec import load_spec, parse_assignments, spec_from_dict

    data: dict = {}
    if args.spec:
        import yaml

        path = Path(args.spec)
        if not path.is_file():
            raise ConfigError(f"run spec {path} does not exist")
        load_spec(path)  # validates with the file name in messages
        data = yaml.safe_load(path.read_text()) or {}
        data.pop("method", None)
    sets = parse_assignments(_flatten(args.sets), "--set")
    if args.methods:
        data["methods"] = [{"name": m, "args": dict(sets)} for m in args.methods]
        data.pop("method", None)
    elif sets:
        if not data.get("methods"):
            raise ConfigError("--set needs --method (or a spec with methods)")
        methods = []
        for m in data["methods"] if isinstance(data["methods"], list) else [data["methods"]]:
            m = {"name": m} if isinstance(m, str) else dict(m)
            m["args"] = {**(m.get("args") or {}), **sets}
            methods.append(m)
        data["methods"] = methods
    if not data.get("methods"):
        raise ConfigError("no method given: use --method PRESET (see `python -m benchmark list`)")
    for field, value in (("datasets", args.datasets), ("protocols", args.protocols),
                         ("categories", args.categories), ("aux_categories", args.aux),
                         ("seeds", args.seeds), ("root", parse_roots(args.root)),
                         ("train_dataset", args.train_dataset), ("train_root", args.train_root),
                         ("device", args.device)):
        if value is not None:
            if field in ("datasets", "protocols", "seeds"):
                data.pop(field[:-1], None)  # the singular spelling of the same field
            data[field] = value
    opts = parse_assignments(_flatten(args.dataset_option), "--dataset-option")
    if opts:
        data["dataset_options"] = {**(data.get("dataset_options") or {}), **opts}
    topts = parse_assignments(_flatten(args.train_dataset_option), "--train-dataset-option")
    if topts:
        data["train_dataset_options"] = {**(data.get("train_dataset_options") or {}), **topts}
    if eval_overrides(args):
        data["evaluation"] = {**(data.get("evaluation") or {}), **eval_overrides(args)}
    if args.plugin:
        data["plugins"] = list(data.get("plugins") or []) + list(args.plugin)
    spec = spec_from_dict(data, source=args.spec or "command line")
    check_device(spec.device)
    return spec


def parse_roots(items: list[str] | None) -> str | dict[str, str] | None:
    """``--root PATH`` -> PATH; ``--root mvtec3d=P1 --root eyecandies=P2`` -> a mapping."""
    if not items:
        return None
    named = [i for i in items if "=" in i and not i.startswith(("/", "."))]
    if not named:
        if len(items) > 1:
            raise ConfigError("several --root values need the DATASET=PATH form")
        return items[0]
    if len(named) != len(items):
        raise ConfigError("mix of --root PATH and --root DATASET=PATH; use DATASET=PATH for all")
    return dict(i.split("=", 1) for i in items)


def check_device(device: str) -> None:
    if device == "cpu":
        return
    if not device.startswith("cuda"):
        raise ConfigError(f"--device: expected cpu or cuda[:N], got {device!r}")
    import torch

    if not torch.cuda.is_available():
        raise ConfigError("--device cuda: no CUDA device is available (torch.cuda.is_available() "
                          "is False); use --device cpu")


def make_executor(args: argparse.Namespace, run_dir: Path | None):
    from benchmark.run.executors import make_executor as _make
    from benchmark.run.spec import parse_assignments

    if args.executor != "slurm":
        return _make(args.executor, workers=args.workers)
    folder = (run_dir or Path("results/runs")) / "slurm_logs"
    return _make("slurm", folder=folder, cluster=args.slurm_cluster,
                 partition=args.slurm_partition, time_min=args.slurm_time, gpus=args.slurm_gpus,
                 cpus=args.slurm_cpus, mem_gb=args.slurm_mem_gb,
                 extra=parse_assignments(args.slurm_set, "--slurm-set"))


def run_and_report(spec, args: argparse.Namespace, out: Path | None) -> tuple[int, Path]:
    from benchmark.run import runner

    if args.plugin:
        from benchmark.run.spec import import_plugins

        import_plugins(args.plugin)
    from benchmark.run.preflight import check_combinations

    check_combinations(spec)
    run_dir = Path(out) if out else runner.default_run_dir(spec)
    executor = make_executor(args, run_dir)
    summary = runner.run(spec, out=run_dir, executor=executor, force=args.force,
                         command=["python", "-m", "benchmark", *sys.argv[1:]])
    print(summary.report(), file=sys.stderr)
    return (1 if summary.failed_in_store() else 0), summary.run_dir


def execute(args: argparse.Namespace) -> int:
    from benchmark.report.tables import render_run

    spec = build_spec(args)
    code, run_dir = run_and_report(spec, args, Path(args.out) if args.out else None)
    if not args.no_table:
        print(render_run(run_dir, fmt=args.format))
    print(f"browsable report: python -m benchmark report --run {run_dir}  "
          f"(or: make report RUN={run_dir})", file=sys.stderr)
    return code
