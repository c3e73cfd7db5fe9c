"""Run specs (YAML file or command line) and their expansion into jobs (DESIGN §6).

A spec names method presets, datasets, a protocol, categories and seeds; any of these may be a
list, and the expansion is their cartesian product times the protocol's trials. Method arguments
may also carry a ``grid:`` of lists that expands into one method variant per combination.

YAML format (the fields of `RunSpec`)::

    name: pointad_plus_table1          # run folder name (optional)
    methods: [btf_fpfh, {name: patchcore_fpfh, args: {k: 3}, grid: {coreset: [0.1, 0.25]}}]
    dataset: mvtec3d                   # or a list
    root: /data/mvtec3d                # or {dataset: root}; null for the synthetic dataset
    dataset_options: {}                # or {dataset: {...}} when several datasets differ
    protocol: one_class                # or a list (default: zero_shot for zero-shot methods)
    categories: all                    # or [bagel, cookie]
    aux_categories: [carrot]           # zero_shot / cross_dataset (default: the paper's)
    train_dataset: mvtec3d             # cross_dataset only (dataset A)
    train_root: null
    train_dataset_options: {}
    seeds: [0]
    evaluation: {grid: native, domain: all, aupro_mode: exact, aupro_limit: 0.3, aupr_variant: ap}
    plugins: []                        # extra modules to import (they register methods/datasets)
"""

from __future__ import annotations

import ast
import hashlib
import importlib
import itertools
import json
import subprocess
from dataclasses import asdict, dataclass, field, fields
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

import benchmark
from benchmark.cache import recipe_hash
from benchmark.errors import ConfigError
from benchmark.run import protocols

GRIDS = ("native", "224", "336")
DOMAINS = ("all", "valid")
AUPRO_MODES = ("exact", "mvtec3d_sampled", "cflow200")
AUPR_VARIANTS = ("ap", "trapezoid")


@dataclass(frozen=True)
class EvalConfig:
    """How stored scores become metrics (never part of a job key: re-evaluation is offline)."""

    grid: str = "native"
    domain: str = "all"
    aupro_mode: str = "exact"
    aupro_limit: float = 0.3
    aupr_variant: str = "ap"
    num_thresholds: int = 100

    def __post_init__(self) -> None:
        object.__setattr__(self, "grid", str(self.grid))
        for name, value, allowed in (("grid", self.grid, GRIDS), ("domain", self.domain, DOMAINS),
                                     ("aupro_mode", self.aupro_mode, AUPRO_MODES),
                                     ("aupr_variant", self.aupr_variant, AUPR_VARIANTS)):
            if value not in allowed:
                raise ConfigError(
                    f"evaluation.{name}: expected one of {list(allowed)}, got {value!r}")
        if not 0 < float(self.aupro_limit) <= 1:
            raise ConfigError(f"evaluation.aupro_limit: expected (0, 1], got {self.aupro_limit}")
        object.__setattr__(self, "aupro_limit", float(self.aupro_limit))
        object.__setattr__(self, "num_thresholds", int(self.num_thresholds))

    @property
    def id(self) -> str:
        """Canonical name of this evaluation, stored in every metrics row."""
        return (f"grid={self.grid};domain={self.domain}"
                f";aupro={self.aupro_mode}@{self.aupro_limit:g}"
                f";aupr={self.aupr_variant};thresholds={self.num_thresholds}")

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> EvalConfig:
        data = dict(data or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"evaluation: unknown field(s) {unknown}; known: {sorted(known)}")
        return cls(**data)


@dataclass(frozen=True)
class MethodRef:
    """A method preset plus argument overrides; `label` is how it appears in tables."""

    name: str
    args: dict[str, Any] = field(default_factory=dict)
    label: str = ""

    def __post_init__(self) -> None:
        if not self.label:
            object.__setattr__(self, "label", self.name)


@dataclass
class RunSpec:
    methods: list[MethodRef]
    datasets: list[str] = field(default_factory=lambda: ["synthetic"])
    root: str | dict[str, str | None] | None = None
    dataset_options: dict[str, Any] = field(default_factory=dict)
    protocols: list[str] = field(default_factory=lambda: ["one_class"])
    categories: list[str] | str = "all"
    aux_categories: list[str] | None = None
    train_dataset: str | None = None
    train_root: str | None = None
    train_dataset_options: dict[str, Any] = field(default_factory=dict)
    seeds: list[int] = field(default_factory=lambda: [0])
    evaluation: EvalConfig = field(default_factory=EvalConfig)
    device: str = "cpu"
    plugins: list[str] = field(default_factory=list)
    name: str | None = None

    def root_of(self, dataset: str) -> str | None:
        if isinstance(self.root, dict):
            return self.root.get(dataset)
        return self.root

    def options_of(self, dataset: str) -> dict[str, Any]:
        """Options of `dataset`: ``dataset_options`` itself, or its entry when it is keyed by
        the spec's dataset names (``{mvtec3d: {preprocess: btf}, eyecandies: {}}``)."""
        opts = self.dataset_options
        if opts and all(k in self.datasets and isinstance(v, dict) for k, v in opts.items()):
            return dict(opts.get(dataset) or {})
        return dict(opts)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["methods"] = [asdict(m) for m in self.methods]
        d["evaluation"] = asdict(self.evaluation)
        return d


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def parse_value(text: str) -> Any:
    """`--set k=v` values: YAML scalars/lists (``3``, ``true``, ``[1,2]``), else a string."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def parse_assignments(items: list[str] | None, what: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items or []:
        if "=" not in item:
            raise ConfigError(f"{what}: expected key=value, got {item!r}")
        key, value = item.split("=", 1)
        if not key.strip():
            raise ConfigError(f"{what}: empty key in {item!r}")
        out[key.strip()] = parse_value(value)
    return out


def _method_refs(entry: Any, where: str) -> list[MethodRef]:
    if isinstance(entry, str):
        return [MethodRef(entry)]
    if not isinstance(entry, dict) or "name" not in entry:
        raise ConfigError(
            f"{where}: expected a preset name or {{name:, args:, grid:}}, got {entry!r}")
    unknown = sorted(set(entry) - {"name", "args", "grid", "label"})
    if unknown:
        raise ConfigError(f"{where}: unknown field(s) {unknown}")
    args = dict(entry.get("args") or {})
    grid = dict(entry.get("grid") or {})
    if not grid:
        return [MethodRef(entry["name"], args, entry.get("label", ""))]
    keys = sorted(grid)
    refs = []
    for combo in itertools.product(*(_as_list(grid[k]) for k in keys)):
        extra = dict(zip(keys, combo))
        label = entry.get("label") or entry["name"]
        label += "(" + ",".join(f"{k}={v}" for k, v in extra.items()) + ")"
        refs.append(MethodRef(entry["name"], {**args, **extra}, label))
    return refs


def _arg_text(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str) if isinstance(value, (dict, list)) \
        else str(value)


def distinguishing_labels(items: list[tuple[str, str, dict[str, Any]]]) -> list[str]:
    """Labels for (label, preset, args) items: a label shared by items with different presets or
    arguments gets the arguments that differ among them, ``preset(k=v,...)`` (or ``label[preset]``
    when only the presets differ); other labels are kept."""
    out = [label for label, _, _ in items]
    groups: dict[str, list[int]] = {}
    for i, (label, _, _) in enumerate(items):
        groups.setdefault(label, []).append(i)
    for label, idx in groups.items():
        variants = {json.dumps([items[i][1], items[i][2]], sort_keys=True, default=str)
                    for i in idx}
        if len(variants) < 2:
            continue
        keys = sorted({k for i in idx for k in items[i][2]})
        differing = [k for k in keys
                     if len({_arg_text(items[i][2].get(k, "<default>")) for i in idx}) > 1]
        for i in idx:
            preset, args = items[i][1], items[i][2]
            shown = [f"{k}={_arg_text(args[k])}" for k in differing if k in args]
            if shown:
                out[i] = f"{label}({','.join(shown)})"
            elif len({items[j][1] for j in idx}) > 1:
                out[i] = f"{label}[{preset}]"
            else:
                out[i] = f"{label}(defaults)"
    return out


def auto_labels(methods: list[MethodRef]) -> list[MethodRef]:
    """The same preset listed twice with different arguments and no label gets a label from
    the arguments that differ, so each is its own table row."""
    auto = [m for m in methods if m.label == m.name]
    labels = distinguishing_labels([(m.label, m.name, m.args) for m in auto])
    renamed = {id(m): label for m, label in zip(auto, labels)}
    return [MethodRef(m.name, m.args, renamed[id(m)]) if id(m) in renamed else m
            for m in methods]


SPEC_FIELDS = {"name", "methods", "method", "dataset", "datasets", "root", "dataset_options",
               "protocol", "protocols", "categories", "aux_categories", "train_dataset",
               "train_root", "train_dataset_options", "seeds", "seed", "evaluation", "device",
               "plugins"}


def _natural_protocol(methods: list[Any]) -> str:
    """The protocol used when none is given: zero_shot when every method learns zero-shot
    (PointAD & co. are meant to be run one-vs-rest), one_class otherwise."""
    from benchmark.registry import METHODS

    learning = set()
    for ref in methods:
        name = getattr(ref, "name", ref)
        learning.add(METHODS.get(name).learning if name in METHODS else "one_class")
    return "zero_shot" if learning == {"zero_shot"} else "one_class"


def spec_from_dict(data: dict[str, Any], source: str = "spec") -> RunSpec:
    """Builds a RunSpec from the YAML layout (see the module docstring)."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level")
    unknown = sorted(set(data) - SPEC_FIELDS)
    if unknown:
        raise ConfigError(f"{source}: unknown field(s) {unknown}; known: {sorted(SPEC_FIELDS)}")
    methods = []
    for i, entry in enumerate(_as_list(data.get("methods", data.get("method")))):
        methods.extend(_method_refs(entry, f"{source}: methods[{i}]"))
    if not methods:
        raise ConfigError(f"{source}: no method given (field 'methods')")
    methods = auto_labels(methods)
    datasets = [str(d) for d in _as_list(data.get("datasets", data.get("dataset")))]
    datasets = datasets or ["synthetic"]
    protos = [str(p) for p in _as_list(data.get("protocols", data.get("protocol")))]
    protos = protos or [_natural_protocol(methods)]
    for p in protos:
        if p not in protocols.PROTOCOLS:
            raise ConfigError(
                f"{source}: unknown protocol '{p}'; known: {list(protocols.PROTOCOLS)}")
    seeds = _as_list(data.get("seeds", data.get("seed"))) or [0]
    try:
        seeds = [int(s) for s in seeds]
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{source}: seeds must be integers, got {seeds!r}") from err
    cats = data.get("categories", "all")
    cats = "all" if cats in (None, "all") else [str(c) for c in _as_list(cats)]
    aux = data.get("aux_categories")
    return RunSpec(
        methods=methods,
        datasets=datasets,
        root=data.get("root"),
        dataset_options=dict(data.get("dataset_options") or {}),
        protocols=protos,
        categories=cats,
        aux_categories=None if aux is None else [str(a) for a in _as_list(aux)],
        train_dataset=data.get("train_dataset"),
        train_root=data.get("train_root"),
        train_dataset_options=dict(data.get("train_dataset_options") or {}),
        seeds=seeds,
        evaluation=EvalConfig.from_dict(data.get("evaluation")),
        device=str(data.get("device") or "cpu"),
        plugins=[str(p) for p in _as_list(data.get("plugins"))],
        name=data.get("name"),
    )


def load_spec(path: str | Path) -> RunSpec:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"run spec {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"run spec {path}: invalid YAML: {err}") from err
    return spec_from_dict(data or {}, source=str(path))


# --------------------------------------------------------------------------------------------
# jobs


@dataclass(frozen=True)
class Job:
    """One fit plus the predictions on its test categories; `key` names its result folder."""

    method: str
    method_args: dict[str, Any]
    method_label: str
    dataset: str
    root: str | None
    dataset_options: dict[str, Any]
    protocol: str
    train_dataset: str
    train_root: str | None
    train_dataset_options: dict[str, Any]
    train_category: str
    test_categories: tuple[str, ...]
    seed: int
    fingerprints: dict[str, str]
    code_version: str
    evaluation: EvalConfig = field(default_factory=EvalConfig)
    device: str = "cpu"
    plugins: tuple[str, ...] = ()
    #: hash of the source of every module the job runs (method, dataset adapter, the toolkit and
    #: contracts they import; plugins included) and the plugin distributions' versions
    code: dict[str, str] = field(default_factory=dict)
    #: categories on the table's category axis when the protocol runs on every category (the N
    #: of an "n/N" partial mean); not part of the key
    category_total: int = 0

    def _recipe(self) -> dict[str, Any]:
        return {
            "method": self.method, "method_args": self.method_args,
            "dataset": self.dataset, "dataset_options": self.dataset_options,
            "protocol": self.protocol,
            "train_dataset": self.train_dataset,
            "train_dataset_options": self.train_dataset_options,
            "train_category": self.train_category, "test_categories": list(self.test_categories),
            "seed": self.seed,
        }

    @property
    def identity(self) -> str:
        """What the job computes, whatever the data and code versions: a newer result of the same
        identity supersedes an older one in the run folder's tables."""
        return recipe_hash(self._recipe())

    @property
    def key(self) -> str:
        """Hash of everything that changes the job's scores: the identity plus the dataset files'
        content fingerprints and the job's code (not the evaluation, not the device)."""
        recipe = self._recipe()
        recipe["fingerprints"] = self.fingerprints
        if self.code:
            recipe["code"] = self.code
        else:  # jobs made before code hashing
            recipe["code_version"] = self.code_version
        return recipe_hash(recipe)

    @property
    def same_dataset(self) -> bool:
        """Whether the fit data comes from the tested dataset itself."""
        return (self.train_dataset, self.train_root, self.train_dataset_options) == (
            self.dataset, self.root, self.dataset_options)

    @property
    def title(self) -> str:
        tests = ",".join(self.test_categories)
        if len(tests) > 40:
            tests = f"{len(self.test_categories)} categories"
        return (f"{self.method_label} {self.dataset}/{self.protocol} "
                f"fit={self.train_category} test={tests} seed={self.seed}")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["test_categories"] = list(self.test_categories)
        d["plugins"] = list(self.plugins)
        d["evaluation"] = asdict(self.evaluation)
        d["key"] = self.key
        d["identity"] = self.identity
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Job:
        known = {f.name for f in fields(cls)}
        d = {k: v for k, v in d.items() if k in known}
        d["test_categories"] = tuple(d["test_categories"])
        d["plugins"] = tuple(d.get("plugins") or ())
        d["evaluation"] = EvalConfig.from_dict(d.get("evaluation"))
        return cls(**d)


@lru_cache(maxsize=1)
def code_version() -> str:
    """Package version plus the git commit of the checkout when there is one (recorded; the job
    key uses the hashed sources instead, see `job_code`)."""
    import os

    override = os.environ.get("BENCHMARK_CODE_VERSION")
    if override:
        return override
    repo = Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=repo,
                                capture_output=True, text=True, timeout=10)
        sha = commit.stdout.strip() if commit.returncode == 0 else ""
    except (OSError, subprocess.SubprocessError):
        sha = ""
    return f"{benchmark.__version__}+{sha}" if sha else benchmark.__version__


#: top-level packages of this repository whose sources count as a job's code
IN_TREE = ("benchmark", "methods", "datasets", "metrics")
#: the pipeline itself: never part of a job's code (it does not change scores, except the
#: protocol's choice of fit data, which is added explicitly)
NOT_JOB_CODE = ("benchmark.run", "benchmark.report", "benchmark.commands", "benchmark.perf",
                "benchmark.cli", "benchmark.__main__")
_SOURCE_HASH: dict[str, str | None] = {}
_CLOSURE: dict[str, dict[str, str]] = {}


def forget_code_hashes() -> None:
    """Drops the per-process cache of source hashes (a new process starts without it)."""
    _SOURCE_HASH.clear()
    _CLOSURE.clear()
    _plugin_versions.cache_clear()


def _module_path(name: str) -> Path | None:
    import importlib.util
    import sys

    module = sys.modules.get(name)
    origin = getattr(module, "__file__", None) if module is not None else None
    if origin is None:
        try:
            found = importlib.util.find_spec(name)
        except (ImportError, ValueError, AttributeError):
            return None
        origin = found.origin if found is not None and found.has_location else None
    if not origin or not str(origin).endswith(".py"):
        return None
    return Path(origin)


def _source_hash(name: str) -> str | None:
    """sha256 of a module's source file, read once per process (None: no Python source)."""
    if name not in _SOURCE_HASH:
        path = _module_path(name)
        try:
            _SOURCE_HASH[name] = (hashlib.sha256(path.read_bytes()).hexdigest()[:16]
                                  if path is not None else None)
        except OSError:
            _SOURCE_HASH[name] = None
    return _SOURCE_HASH[name]


def _imported_names(name: str, path: Path) -> set[str]:
    """Modules named by the import statements of a source file (also inside functions)."""
    try:
        tree = ast.parse(path.read_text(encoding="utf-8", errors="replace"))
    except (OSError, SyntaxError):
        return set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base_parts = parts[: len(parts) - node.level + 1] if node.level > 1 else parts
                base = ".".join(p for p in [*base_parts, node.module or ""] if p)
            else:
                base = node.module or ""
            if not base:
                continue
            out.add(base)
            out.update(f"{base}.{alias.name}" for alias in node.names if alias.name != "*")
    return out


def _followed(name: str, roots: set[str]) -> bool:
    if name.split(".")[0] not in roots:
        return False
    return not any(name == p or name.startswith(p + ".") for p in NOT_JOB_CODE)


def module_closure(start: str) -> dict[str, str]:
    """``{module: source hash}`` of `start` and every module it imports, transitively, within
    this repository's packages and `start`'s own top-level package (a plugin)."""
    if start in _CLOSURE:
        return _CLOSURE[start]
    roots = {*IN_TREE, start.split(".")[0]}
    seen: dict[str, str] = {}
    todo = [start]
    while todo:
        name = todo.pop()
        if name in seen or not _followed(name, roots):
            continue
        parts = name.split(".")
        todo.extend(".".join(parts[:i]) for i in range(1, len(parts)))  # parent packages run too
        digest = _source_hash(name)
        if digest is None:
            continue
        seen[name] = digest
        todo.extend(_imported_names(name, _module_path(name)))
    _CLOSURE[start] = dict(sorted(seen.items()))
    return _CLOSURE[start]


@lru_cache(maxsize=1)
def _plugin_versions() -> dict[str, list[str]]:
    from importlib import metadata

    try:
        return dict(metadata.packages_distributions())
    except Exception:  # noqa: BLE001 - broken metadata only loses the version
        return {}


def job_code(method: str, datasets: list[str]) -> dict[str, str]:
    """The code a job runs, for its key: source hashes of the method's module closure, the
    dataset adapters' closures and the protocol module, plus the version of every installed
    distribution (a plugin) providing a top-level package outside this repository."""
    from importlib import metadata

    from benchmark.registry import DATASETS, METHODS

    def module_of(factory: Any) -> str | None:
        name = getattr(factory, "__module__", None) or getattr(
            getattr(factory, "func", None), "__module__", None)  # functools.partial
        return name if isinstance(name, str) else None

    starts = [module_of(METHODS.get(method).factory), "benchmark.run.protocols"]
    starts += [module_of(DATASETS.get(d).factory) for d in datasets]
    code: dict[str, str] = {"version:benchmark": benchmark.__version__}
    for start in starts:
        if start is None:
            continue
        if start == "benchmark.run.protocols":
            digest = _source_hash(start)
            if digest:
                code[start] = digest
            continue
        code.update(module_closure(start))
    for top in sorted({name.split(".")[0] for name in code} - {*IN_TREE}):
        for dist in _plugin_versions().get(top, []):
            try:
                code[f"dist:{dist}"] = metadata.version(dist)
            except metadata.PackageNotFoundError:
                continue
    return code


def code_changes(old: dict[str, str], new: dict[str, str]) -> list[str]:
    """Names of the modules (and distributions) whose hash or version differs."""
    return sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))


def import_plugins(modules: list[str] | tuple[str, ...]) -> None:
    """Imports modules that register extra methods/datasets (also done inside workers)."""
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError as err:
            raise ConfigError(f"plugin module '{name}' cannot be imported: {err}") from err


_DATASETS: dict[str, Any] = {}


def open_dataset(name: str, root: str | None, options: dict[str, Any]) -> Any:
    """The dataset adapter for (name, root, options), created once per process."""
    from benchmark.registry import DATASETS

    key = json.dumps([name, root, options], sort_keys=True, default=str)
    if key not in _DATASETS:
        kwargs = dict(options)
        if root is not None:
            kwargs["root"] = root
        _DATASETS[key] = DATASETS.create(name, **kwargs)
    return _DATASETS[key]


def category_axis_size(trial_list: list[protocols.Trial], protocol: str) -> int:
    """How many categories a table's category axis has for these trials (training classes for
    zero_shot_pairs, test categories otherwise)."""
    if protocol == "zero_shot_pairs":
        return len({t.train_category for t in trial_list})
    return len({c for t in trial_list for c in t.test_categories})


def expand(spec: RunSpec) -> list[Job]:
    """All jobs of `spec`, in a stable order (method, dataset, protocol, seed, trial)."""
    from benchmark.registry import METHODS

    import_plugins(spec.plugins)
    for ref in spec.methods:
        METHODS.get(ref.name)  # unknown names fail here, with the known ones listed
    version = code_version()
    jobs: list[Job] = []
    codes: dict[tuple[str, ...], dict[str, str]] = {}
    for ref, dataset, protocol in itertools.product(spec.methods, spec.datasets, spec.protocols):
        root = spec.root_of(dataset)
        options = spec.options_of(dataset)
        test_ds = open_dataset(dataset, root, options)
        prints = {"test": test_ds.fingerprint()}
        if protocol == "cross_dataset":
            if not spec.train_dataset:
                raise ConfigError("protocol cross_dataset needs train_dataset (--train-dataset)")
            train_name = spec.train_dataset
            train_root = spec.train_root
            if train_root is None and isinstance(spec.root, dict):
                train_root = spec.root.get(train_name)  # --root mvtec3d=... covers dataset A
            train_opts = dict(spec.train_dataset_options)
            train_ds = open_dataset(train_name, train_root, train_opts)
            prints["train"] = train_ds.fingerprint()
        else:
            train_name, train_root, train_opts, train_ds = dataset, root, options, test_ds
        trial_list = protocols.trials(
            protocol, dataset, list(test_ds.categories), selected=spec.categories,
            aux=spec.aux_categories, train_dataset=train_name,
            train_categories=list(train_ds.categories), same_dataset=train_ds is test_ds,
        )
        total = category_axis_size(protocols.trials(
            protocol, dataset, list(test_ds.categories), selected="all",
            aux=spec.aux_categories, train_dataset=train_name,
            train_categories=list(train_ds.categories), same_dataset=train_ds is test_ds,
        ), protocol)
        used = (ref.name, *sorted({dataset, train_name}))
        if used not in codes:
            codes[used] = job_code(ref.name, list(used[1:]))
        for seed in spec.seeds:
            for trial in trial_list:
                jobs.append(Job(
                    method=ref.name, method_args=dict(ref.args), method_label=ref.label,
                    dataset=dataset, root=root, dataset_options=dict(options),
                    protocol=protocol, train_dataset=train_name, train_root=train_root,
                    train_dataset_options=train_opts, train_category=trial.train_category,
                    test_categories=trial.test_categories, seed=seed, fingerprints=prints,
                    code_version=version, evaluation=spec.evaluation, device=spec.device,
                    plugins=tuple(spec.plugins), code=codes[used], category_total=total,
                ))
    keys = [j.key for j in jobs]
    if len(set(keys)) != len(keys):
        raise ConfigError("the spec expands into duplicate jobs (a method or seed listed twice?)")
    return jobs
