"""Checks made before any job starts: can each method read what each dataset provides?

A method declares the modalities it needs (registry ``modalities``; a ``modality="points+rgb"``
argument adds its parts); a dataset provides ``points`` always, ``xyz_grid`` when organized and
``rgb`` when its organized samples carry an image. A combination that cannot work (an
organized-only method on Real3D-AD, an RGB method on point clouds) is refused with one message
listing every such pair, instead of failing each of its jobs.
"""

from __future__ import annotations

from typing import Any

from benchmark.errors import BenchmarkError, ConfigError

MODALITY_NAMES = {"points": "a point cloud", "xyz_grid": "an organized xyz grid",
                  "rgb": "an RGB image"}  # fmt: skip


def required_modalities(entry: Any, args: dict[str, Any]) -> set[str]:
    need = set(entry.modalities or ())
    modality = {**entry.kwargs, **args}.get("modality")
    if isinstance(modality, str):
        need |= {m.strip() for m in modality.split("+") if m.strip()}
    return need


def check_combinations(spec: Any) -> None:
    """Raises ConfigError naming every (method, dataset) pair whose inputs do not match."""
    from benchmark.registry import METHODS
    from benchmark.run.spec import open_dataset

    datasets: dict[str, Any] = {}
    pairs = [(d, spec.root_of(d), spec.options_of(d)) for d in spec.datasets]
    if spec.train_dataset:
        pairs.append((spec.train_dataset, spec.train_root, dict(spec.train_dataset_options)))
    for name, root, options in pairs:
        try:
            datasets[name] = open_dataset(name, root, options)
        except (BenchmarkError, TypeError, OSError):
            continue  # a dataset that cannot be opened is reported by its jobs
    problems = []
    for ref in spec.methods:
        if ref.name not in METHODS:
            continue  # reported by the runner's own checks
        need = required_modalities(METHODS.get(ref.name), ref.args)
        for name, ds in datasets.items():
            have = getattr(ds, "modalities", None)
            if have is None or need <= set(have):
                continue
            missing = ", ".join(MODALITY_NAMES.get(m, m) for m in sorted(need - set(have)))
            problems.append(f"{ref.label} cannot run on {name}: it needs {missing}, which "
                            f"{name} does not provide (it provides: {', '.join(sorted(have))})")
    if problems:
        raise ConfigError("incompatible method/dataset combination(s), no job started:\n  "
                          + "\n  ".join(problems))
