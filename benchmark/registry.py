"""Registries of methods and datasets.

Built-in entries register themselves with a decorator when their package is imported; third-party
packages expose entry points in the groups ``benchmark.methods`` / ``benchmark.datasets`` whose
object is either a callable that registers into the registry, or a module whose import does so.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

from benchmark.errors import ConfigError

ENTRY_POINT_GROUPS = {"methods": "benchmark.methods", "datasets": "benchmark.datasets"}


@dataclass(frozen=True)
class Entry:
    """One registered name: a factory (class or function) plus fixed arguments and metadata."""

    name: str
    factory: Callable[..., Any]
    kwargs: dict[str, Any] = field(default_factory=dict)
    summary: str = ""
    modalities: tuple[str, ...] = ()
    learning: str = ""
    outputs: tuple[str, ...] = ()
    provenance: str = ""
    datasets: tuple[str, ...] = ()
    smoke: dict[str, Any] = field(default_factory=dict)
    status: str = "implemented"
    origin: str = "built-in"

    def create(self, **overrides: Any) -> Any:
        args = {**self.kwargs, **overrides}
        self._check_arguments(args)
        obj = self.factory(**args)
        if hasattr(obj, "name") and not isinstance(type(obj).__dict__.get("name"), property):
            try:
                obj.name = self.name
            except AttributeError:
                pass
        return obj

    def _check_arguments(self, args: dict[str, Any]) -> None:
        """Unknown or missing constructor arguments -> ConfigError naming them (not a TypeError)."""
        try:
            signature = inspect.signature(self.factory)
        except (TypeError, ValueError):  # builtins / C factories: let the call speak
            return
        try:
            signature.bind(**args)
        except TypeError as err:
            accepted = [
                p.name for p in signature.parameters.values()
                if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
            ]
            hint = " (a dataset needs --root NAME=PATH)" if "'root'" in str(err) else ""
            raise ConfigError(
                f"'{self.name}': {err}{hint}; accepted arguments: {', '.join(accepted)}"
            ) from None

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "summary": self.summary,
            "modalities": ",".join(self.modalities),
            "learning": self.learning,
            "outputs": ",".join(self.outputs),
            "datasets": ",".join(self.datasets),
            "provenance": self.provenance,
            "status": self.status,
            "origin": self.origin,
        }


class Registry:
    """A name -> Entry mapping with decorator registration and lazy discovery."""

    def __init__(self, kind: str, builtin_package: str) -> None:
        self.kind = kind
        self.builtin_package = builtin_package
        self._entries: dict[str, Entry] = {}
        self._discovered = False
        self._discovering = False
        self.discovery_errors: dict[str, str] = {}

    def register(self, name: str, factory: Callable[..., Any] | None = None, **meta: Any):
        """Registers `factory` under `name`; usable as ``@REG.register("name", summary=...)``.

        ``kwargs=`` binds fixed constructor arguments (a preset). Returns the factory unchanged.
        """

        def add(obj: Callable[..., Any]) -> Callable[..., Any]:
            if not name or not isinstance(name, str):
                raise ConfigError(f"{self.kind} name must be a non-empty string, got {name!r}")
            if name in self._entries:
                raise ConfigError(
                    f"{self.kind} '{name}' is already registered "
                    f"(by {self._entries[name].origin}: {self._entries[name].factory!r})"
                )
            fields = dict(meta)
            for key in ("modalities", "outputs", "datasets"):
                if key in fields:
                    fields[key] = tuple(fields[key])
            if "modalities" not in fields and hasattr(obj, "modalities"):
                fields["modalities"] = tuple(sorted(obj.modalities))
            if "learning" not in fields and isinstance(getattr(obj, "learning", None), str):
                fields["learning"] = obj.learning
            self._entries[name] = Entry(name=name, factory=obj, **fields)
            return obj

        return add if factory is None else add(factory)

    def unregister(self, name: str) -> None:
        self._entries.pop(name, None)

    def discover(self) -> None:
        """Imports the built-in package's modules and loads third-party entry points, once."""
        if self._discovered or self._discovering:
            return
        self._discovering = True
        try:
            package = importlib.import_module(self.builtin_package)
            for info in pkgutil.iter_modules(package.__path__, package.__name__ + "."):
                if info.name.rsplit(".", 1)[-1].startswith("_"):
                    continue
                importlib.import_module(info.name)
            for ep in metadata.entry_points(group=ENTRY_POINT_GROUPS[self.kind]):
                before = set(self._entries)
                try:
                    obj = ep.load()
                    if callable(obj) and not isinstance(obj, type):
                        obj(self)
                except Exception as err:  # a broken plugin must not break the benchmark
                    self.discovery_errors[ep.name] = f"{type(err).__name__}: {err}"
                    continue
                for added in set(self._entries) - before:
                    entry = self._entries[added]
                    origin = f"plugin {ep.value}"
                    self._entries[added] = Entry(**{**entry.__dict__, "origin": origin})
            self._discovered = True
        finally:
            self._discovering = False

    def get(self, name: str) -> Entry:
        self.discover()
        if name not in self._entries:
            known = ", ".join(sorted(self._entries)) or "(none)"
            if name in self.discovery_errors:
                raise ConfigError(
                    f"{self.kind[:-1]} '{name}' comes from a plugin (entry point '{name}' of group "
                    f"{ENTRY_POINT_GROUPS[self.kind]}) that failed to import: "
                    f"{self.discovery_errors[name]}")
            broken = "".join(f"; plugin entry point '{ep}' failed to import ({err}), it may "
                             f"provide it" for ep, err in sorted(self.discovery_errors.items()))
            raise ConfigError(
                f"unknown {self.kind[:-1]} '{name}'; known {self.kind}: {known}{broken}")
        return self._entries[name]

    def create(self, name: str, **kwargs: Any) -> Any:
        return self.get(name).create(**kwargs)

    def names(self) -> list[str]:
        self.discover()
        return sorted(self._entries)

    def entries(self) -> list[Entry]:
        return [self._entries[n] for n in self.names()]

    def __contains__(self, name: object) -> bool:
        self.discover()
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self.names())


METHODS = Registry("methods", "methods")
DATASETS = Registry("datasets", "datasets")
