"""`python -m benchmark describe NAME`: one method preset or dataset in full.

A method: its metadata and every constructor argument with its value and where that value comes
from (the preset's fixed arguments or the constructor's default), plus the `smoke` arguments.
A dataset: unit, organization, modalities, splits and, when it can be opened (the synthetic
default, or with ``--root``), its categories with sample counts per split.
"""

from __future__ import annotations

import argparse
import inspect
import json
from typing import Any

from benchmark.errors import BenchmarkError, ConfigError
from benchmark.registry import DATASETS, METHODS, Entry
from benchmark.units import describe_unit

HELP = "describe a method preset (arguments, defaults, provenance) or a dataset (unit, splits)"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", help="a method preset or a dataset (see `list`)")
    parser.add_argument("--root", default=None, help="dataset root, to list its categories")
    parser.add_argument("--dataset-option", dest="options", action="append", default=[],
                        nargs="+", metavar="KEY=VALUE", help="dataset constructor option(s)")
    parser.add_argument("--plugin", action="append", default=[], metavar="MODULE|FILE.py",
                        help="import a plugin first (repeatable)")
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def method_arguments(entry: Entry) -> list[dict[str, Any]]:
    """[{name, value, source, annotation}] for every constructor argument of a preset."""
    try:
        params = inspect.signature(entry.factory).parameters.values()
    except (TypeError, ValueError):
        params = []
    rows = []
    seen = set()
    for p in params:
        if p.kind not in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY):
            continue
        seen.add(p.name)
        if p.name in entry.kwargs:
            value, source = entry.kwargs[p.name], "preset"
        elif p.default is not p.empty:
            value, source = p.default, "default"
        else:
            value, source = None, "required"
        ann = p.annotation if isinstance(p.annotation, str) else getattr(
            p.annotation, "__name__", "" if p.annotation is p.empty else str(p.annotation))
        rows.append({"name": p.name, "value": value, "source": source, "annotation": ann})
    for name, value in entry.kwargs.items():
        if name not in seen:
            rows.append({"name": name, "value": value, "source": "preset", "annotation": ""})
    return rows


def dataset_units(entry: Entry) -> dict[str, str | None]:
    """{"": unit} for an adapter class; {format: unit} for a factory with `formats`."""
    factory = entry.factory
    formats = getattr(factory, "formats", None)
    if formats:
        out = {}
        for fmt in formats:
            sub = DATASETS.get(fmt).factory if fmt in DATASETS else None
            out[fmt] = getattr(sub, "unit", None)
        return out
    return {"": getattr(factory, "unit", None)}


def unit_text(entry: Entry) -> str:
    units = dataset_units(entry)
    if list(units) == [""]:
        return describe_unit(units[""])
    return "as its format: " + ", ".join(f"{f} {describe_unit(u)}" for f, u in units.items())


def _method(entry: Entry) -> dict[str, Any]:
    info = entry.describe()
    factory = entry.factory
    module, qual = getattr(factory, "__module__", "?"), getattr(factory, "__qualname__", "")
    info["factory"] = f"{module}.{qual}"
    info["arguments"] = method_arguments(entry)
    info["smoke"] = dict(entry.smoke)
    return info


def _dataset(entry: Entry, root: str | None, options: dict[str, Any]) -> dict[str, Any]:
    info = entry.describe()
    info["unit"] = unit_text(entry)
    factory = entry.factory
    if isinstance(factory, type):
        info["organized"] = bool(getattr(factory, "organized", False))
        info["splits"] = list(getattr(factory, "splits", ()))
    info["options"] = [{"name": r["name"], "value": r["value"]}
                       for r in method_arguments(entry) if r["name"] != "root"]
    needs_root = any(r["name"] == "root" and r["source"] == "required"
                     for r in method_arguments(entry))
    if needs_root and root is None:
        info["categories"] = f"(pass --root to list them; {entry.name} needs its root folder)"
        return info
    kwargs = dict(options)
    if root is not None:
        kwargs["root"] = root
    try:
        ds = DATASETS.create(entry.name, **kwargs)
    except BenchmarkError as err:
        info["categories"] = f"(cannot open: {err})"
        return info
    info["unit"] = describe_unit(getattr(ds, "unit", None)) + (
        f" (format {ds.synthetic_format})" if getattr(ds, "synthetic_format", None) else "")
    info["organized"] = bool(getattr(ds, "organized", False))
    info["modalities"] = ",".join(sorted(getattr(ds, "modalities", ())))
    info["splits"] = list(getattr(ds, "splits", ()))
    cats = {}
    for cat in ds.categories:
        counts = {}
        for split in info["splits"]:
            recs = ds.records(cat, split)
            counts[split] = f"{len(recs)} ({sum(r.label for r in recs)} anomalous)"
        cats[cat] = counts
    info["categories"] = cats
    return info


def describe(name: str, root: str | None = None, options: dict[str, Any] | None = None
             ) -> dict[str, Any]:
    if name in METHODS:
        return {"kind": "method", **_method(METHODS.get(name))}
    if name in DATASETS:
        return {"kind": "dataset", **_dataset(DATASETS.get(name), root, options or {})}
    raise ConfigError(f"'{name}' is neither a method nor a dataset; known methods: "
                      f"{', '.join(METHODS.names())}; datasets: {', '.join(DATASETS.names())}")


def parse_length_unit(text: str) -> str | None:
    from benchmark.units import parse_length

    try:
        return parse_length(text)[1]
    except BenchmarkError:
        return None


def render(info: dict[str, Any]) -> str:
    lines = [f"{info['kind']} {info['name']}: {info['summary']}"]
    skip = {"kind", "name", "summary", "arguments", "smoke", "categories", "options"}
    for key, value in info.items():
        if key not in skip and value not in ("", None, []):
            text = ", ".join(map(str, value)) if isinstance(value, list) else value
            lines.append(f"  {key}: {text}")
    if info["kind"] == "method":
        lines.append("  arguments (source: preset = fixed by this preset, default = constructor "
                     "default; override with --set NAME=VALUE):")
        width = max((len(a["name"]) for a in info["arguments"]), default=4)
        for a in info["arguments"]:
            ann = f"  [{a['annotation']}]" if a["annotation"] else ""
            lines.append(f"    {a['name']:<{width}} = {a['value']!r:<24} {a['source']}{ann}")
        if any(isinstance(a["value"], str) and parse_length_unit(a["value"])
               for a in info["arguments"]):
            lines.append("  lengths with a unit ('0.5mm') are converted to the unit the data "
                         "declares at fit time (unit-less data: the method's documented rule); "
                         "a bare number is in the data's units")
        if info["smoke"]:
            lines.append(f"  smoke (tiny test) arguments: {info['smoke']}")
    else:
        if info.get("options"):
            opts = ", ".join(f"{o['name']}={o['value']!r}" for o in info["options"])
            lines.append(f"  options (--dataset-option KEY=VALUE): {opts}")
        cats = info.get("categories")
        if isinstance(cats, dict):
            lines.append(f"  categories ({len(cats)}), samples per split:")
            for cat, counts in cats.items():
                lines.append(f"    {cat}: " + "; ".join(f"{s} {c}" for s, c in counts.items()))
        elif cats:
            lines.append(f"  categories: {cats}")
    return "\n".join(lines)


def execute(args: argparse.Namespace) -> int:
    from benchmark.run.spec import import_plugins, parse_assignments

    if args.plugin:
        import_plugins(args.plugin)
    options = parse_assignments([x for g in args.options for x in g], "--dataset-option")
    info = describe(args.name, args.root, options)
    if args.json:
        print(json.dumps(info, indent=2, default=repr))
    else:
        print(render(info))
    return 0
