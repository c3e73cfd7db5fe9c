"""Data contracts: what a dataset hands out (`Sample`) and what a detector returns (`Prediction`).

Both validate themselves on construction; a violation raises `ContractError` naming the field.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from benchmark.errors import ContractError
from benchmark.units import UNITS

SPLITS = ("train", "validation", "test")


def _where(sample_id: str | None) -> str:
    return f" (sample {sample_id!r})" if sample_id else ""


def _check_array(
    name: str,
    value: Any,
    dtype: np.dtype | type,
    shape: tuple[int | None, ...],
    sample_id: str | None = None,
    finite: bool = False,
) -> np.ndarray:
    """Checks dtype, rank/shape (None = any size) and optionally finiteness; returns the array."""
    if not isinstance(value, np.ndarray):
        raise ContractError(
            f"field '{name}'{_where(sample_id)}: expected a numpy array, got {type(value).__name__}"
        )
    if value.dtype != np.dtype(dtype):
        raise ContractError(
            f"field '{name}'{_where(sample_id)}: expected dtype {np.dtype(dtype)}, "
            f"got {value.dtype}"
        )
    if value.ndim != len(shape) or any(
        want is not None and got != want for got, want in zip(value.shape, shape)
    ):
        want_txt = "(" + ",".join("*" if s is None else str(s) for s in shape) + ")"
        raise ContractError(
            f"field '{name}'{_where(sample_id)}: expected shape {want_txt}, got {value.shape}"
        )
    if finite and value.size and not np.isfinite(value).all():
        bad = int(np.size(value) - np.isfinite(value).sum())
        raise ContractError(
            f"field '{name}'{_where(sample_id)}: {bad} non-finite value(s) (NaN or inf)"
        )
    return value


@dataclass
class Sample:
    """One train or test item. Arrays are numpy; organized fields only for organized datasets."""

    id: str
    dataset: str
    category: str
    split: str
    defect: str
    points: np.ndarray
    label: int
    point_mask: np.ndarray | None = None
    xyz_grid: np.ndarray | None = None
    grid_index: np.ndarray | None = None
    rgb: np.ndarray | None = None
    pixel_mask: np.ndarray | None = None
    source: dict[str, str] = field(default_factory=dict)
    unit: str | None = None  # physical unit of the coordinates (benchmark.units); None: unit-less

    def __post_init__(self) -> None:
        self.validate()

    @property
    def organized(self) -> bool:
        return self.xyz_grid is not None

    @property
    def grid_shape(self) -> tuple[int, int] | None:
        return None if self.xyz_grid is None else tuple(self.xyz_grid.shape[:2])

    def validate(self) -> None:
        sid = self.id
        for name in ("id", "dataset", "category", "split", "defect"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise ContractError(f"field '{name}'{_where(sid)}: expected a non-empty string")
        if self.split not in SPLITS:
            raise ContractError(
                f"field 'split'{_where(sid)}: expected one of {SPLITS}, got {self.split!r}"
            )
        if self.label not in (0, 1) or isinstance(self.label, bool):
            raise ContractError(f"field 'label'{_where(sid)}: expected 0 or 1, got {self.label!r}")
        self.label = int(self.label)
        if self.unit is not None and self.unit not in UNITS:
            raise ContractError(
                f"field 'unit'{_where(sid)}: expected one of {sorted(UNITS)} or None, "
                f"got {self.unit!r}"
            )
        pts = _check_array("points", self.points, np.float32, (None, 3), sid, finite=True)
        if len(pts) == 0:
            raise ContractError(f"field 'points'{_where(sid)}: empty cloud (0 points)")
        n = len(pts)
        if self.point_mask is not None:
            _check_array("point_mask", self.point_mask, np.uint8, (n,), sid)
            if self.label == 0 and self.point_mask.any():
                raise ContractError(
                    f"field 'point_mask'{_where(sid)}: a normal sample (label 0) "
                    "has anomalous points"
                )
        if self.xyz_grid is None:
            for name in ("grid_index", "rgb", "pixel_mask"):
                if getattr(self, name) is not None:
                    raise ContractError(
                        f"field '{name}'{_where(sid)}: only organized samples "
                        "(with xyz_grid) have it"
                    )
            return
        grid = _check_array(
            "xyz_grid", self.xyz_grid, np.float32, (None, None, 3), sid, finite=True
        )
        h, w = grid.shape[:2]
        if self.grid_index is None:
            raise ContractError(f"field 'grid_index'{_where(sid)}: required when xyz_grid is set")
        idx = _check_array("grid_index", self.grid_index, np.int64, (n,), sid)
        if n and (idx.min() < 0 or idx.max() >= h * w):
            raise ContractError(
                f"field 'grid_index'{_where(sid)}: cell indices must lie in [0, {h * w}), "
                f"got [{idx.min()}, {idx.max()}]"
            )
        if self.rgb is not None:
            _check_array("rgb", self.rgb, np.uint8, (h, w, 3), sid)
        if self.pixel_mask is not None:
            _check_array("pixel_mask", self.pixel_mask, np.uint8, (h, w), sid)
            if self.label == 0 and self.pixel_mask.any():
                raise ContractError(
                    f"field 'pixel_mask'{_where(sid)}: a normal sample (label 0) "
                    "has anomalous pixels"
                )


@dataclass
class Prediction:
    """A detector's output for one sample: an object score and at least one dense map for
    localization metrics (`point_scores` aligned with sample.points, or `pixel_scores` on the
    organized grid at the method's own resolution)."""

    score: float
    point_scores: np.ndarray | None = None
    pixel_scores: np.ndarray | None = None

    def __post_init__(self) -> None:
        try:
            self.score = float(self.score)
        except (TypeError, ValueError) as err:
            raise ContractError(f"field 'score': expected a float, got {self.score!r}") from err
        if not np.isfinite(self.score):
            raise ContractError(f"field 'score': non-finite value {self.score}")
        if self.point_scores is not None:
            if isinstance(self.point_scores, np.ndarray) and self.point_scores.dtype != np.float32:
                if np.issubdtype(self.point_scores.dtype, np.floating):
                    self.point_scores = self.point_scores.astype(np.float32)
            _check_array("point_scores", self.point_scores, np.float32, (None,), finite=True)
        if self.pixel_scores is not None:
            if isinstance(self.pixel_scores, np.ndarray) and self.pixel_scores.dtype != np.float32:
                if np.issubdtype(self.pixel_scores.dtype, np.floating):
                    self.pixel_scores = self.pixel_scores.astype(np.float32)
            _check_array("pixel_scores", self.pixel_scores, np.float32, (None, None), finite=True)

    def check_against(self, sample: Sample) -> Prediction:
        """Checks that the dense outputs fit `sample`; returns self."""
        if self.point_scores is not None and len(self.point_scores) != len(sample.points):
            raise ContractError(
                f"field 'point_scores'{_where(sample.id)}: expected {len(sample.points)} values "
                f"(one per point), got {len(self.point_scores)}"
            )
        if self.pixel_scores is not None and not sample.organized:
            raise ContractError(
                f"field 'pixel_scores'{_where(sample.id)}: the sample has no organized grid"
            )
        return self
