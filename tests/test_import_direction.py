"""Import direction of the tree (DESIGN §1), checked by parsing every module's imports.

- ``metrics`` imports nothing of ours;
- the contracts and foundation modules at the top of ``benchmark/`` import only each other;
- the toolkit (``benchmark.components``) imports only the foundation and itself;
- ``methods`` and ``datasets`` import the foundation, the toolkit, ``metrics`` and themselves,
  never the run/report pipeline or the CLI;
- ``benchmark`` never imports a concrete method or dataset module (only registry discovery does,
  by name at run time).
Imports inside functions count too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
OURS = ("benchmark", "methods", "datasets", "metrics")
# Contracts (what a plugin implements) and the small utilities everything may use.
FOUNDATION = {f"benchmark.{m}" for m in (
    "sample", "detector", "dataset", "registry", "errors",  # contracts
    "cache", "weights", "seeding", "timing", "progress", "compat", "units")}
TOOLKIT = "benchmark.components"
PIPELINE = ("benchmark.run", "benchmark.report", "benchmark.commands", "benchmark.cli",
            "benchmark.perf")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(source: str, module: str, is_package: bool) -> set[str]:
    """Every module of ours that ``source`` imports (absolute or relative, at any depth)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                pkg = module.split(".") if is_package else module.split(".")[:-1]
                pkg = pkg[: len(pkg) - node.level + 1]
                base = ".".join(pkg + ([base] if base else []))
            # `from pkg import sub` may import a sub-module: count both spellings
            names = [base] + [f"{base}.{a.name}" for a in node.names]
        else:
            continue
        found.update(n for n in names if n.split(".")[0] in OURS)
    return found


def under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def is_foundation(name: str) -> bool:
    return name == "benchmark" or any(under(name, f) for f in FOUNDATION)


def violation(importer: str, imported: str) -> str | None:
    """Why ``importer`` must not import ``imported`` (None when allowed)."""
    top = importer.split(".")[0]
    if top == "metrics":
        return None if under(imported, "metrics") else "metrics imports nothing of ours"
    if top in ("methods", "datasets"):
        if under(imported, top) or under(imported, "metrics") or is_foundation(imported) \
                or under(imported, TOOLKIT):
            return None
        return f"{top} may import contracts, toolkit and metrics only"
    # benchmark.*
    if not under(imported, "benchmark"):
        if under(imported, "metrics") and not under(importer, TOOLKIT) \
                and not is_foundation(importer):
            return None  # the pipeline evaluates with metrics
        return "benchmark reaches methods/datasets only through the registry"
    if under(importer, TOOLKIT):
        return None if is_foundation(imported) or under(imported, TOOLKIT) else \
            "the toolkit imports only the contracts/foundation and itself"
    if is_foundation(importer) and importer != "benchmark":
        return None if is_foundation(imported) else \
            "contracts/foundation import only each other"
    return None


def all_modules() -> list[tuple[str, Path]]:
    out = []
    for top in OURS:
        for path in sorted((REPO / top).rglob("*.py")):
            out.append((module_name(path), path))
    return out


def test_every_import_goes_the_right_way():
    problems = []
    for name, path in all_modules():
        for imported in imported_modules(path.read_text(), name, path.name == "__init__.py"):
            why = violation(name, imported)
            if why:
                problems.append(f"{path.relative_to(REPO)} imports {imported}: {why}")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("importer, source", [
    ("benchmark.components.memory_bank", "from benchmark.run.store import RunStore"),
    ("benchmark.components.geometry.pointops", "def f():\n    import benchmark.cli\n"),
    ("benchmark.components.render.camera", "from benchmark.report import tables"),
    ("methods.btf", "from benchmark.run.runner import run"),
    ("datasets.real3d", "from benchmark.run import protocols"),
    ("metrics.image", "from benchmark.errors import ConfigError"),
    ("benchmark.run.runner", "from methods.btf import BTF"),
    ("benchmark.report.tables", "import datasets.real3d"),
    ("benchmark.sample", "from benchmark.components.blur import gaussian_blur"),
])
def test_a_wrong_way_import_is_caught(importer, source):
    imported = imported_modules(source, importer, False)
    assert imported and any(violation(importer, m) for m in imported)


@pytest.mark.parametrize("importer, source", [
    ("methods.btf", "from benchmark.components.memory_bank import greedy_coreset"),
    ("methods.pointad.detector", "from .data import prepare"),
    ("benchmark.components.backbones.pointmae", "from benchmark.weights import resolve_weights"),
    ("benchmark.run.evaluation", "import metrics"),
])
def test_a_right_way_import_passes(importer, source):
    assert not any(violation(importer, m) for m in imported_modules(source, importer, False))
