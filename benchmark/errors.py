"""The project's exceptions: one base class, one subclass per kind of bad input."""

from __future__ import annotations


class BenchmarkError(Exception):
    """Base class of every error this project raises on purpose."""


class ContractError(BenchmarkError, ValueError):
    """A Sample or Prediction violates the data contract (names the offending field)."""


class NotFittedError(ContractError):
    """`predict` / `predict_many` was called on a detector before `fit` (names the method)."""


class DatasetError(BenchmarkError):
    """A dataset on disk is missing, malformed or inconsistent (names the file)."""


class ConfigError(BenchmarkError, ValueError):
    """A run spec, preset argument or registry lookup is invalid."""


class WeightsError(BenchmarkError):
    """Pretrained weights are unavailable (names the file and where to put it)."""
