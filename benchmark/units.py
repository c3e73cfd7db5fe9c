"""Physical units of point coordinates, and lengths that carry a unit.

A dataset declares the unit of its coordinates (``DatasetBase.unit``, copied to ``Sample.unit``):
``"mm"`` (Real3D-AD), ``"m"`` (MVTec 3D-AD), ``"dam"`` (Eyecandies after M3DM's conversion, which
multiplies metres by 0.1, so one coordinate unit is 10 m) or ``None`` for unit-less data
(Anomaly-ShapeNet's normalised shapes).

A method argument that is a physical length (a voxel size, a normal radius) may be given as
``"0.5mm"`` / ``"0.05m"``: it is converted to the data's unit at fit time, so a preset keeps its
official value on its official dataset and the same physical size elsewhere. A bare number is in
the data's own units (no conversion). On unit-less data a unit-bearing length cannot be converted;
the rule (documented in the README) is to fall back to the data-relative ``"auto"`` size of the
method (for the memory-bank presets: 2.5x the median point spacing).
"""

from __future__ import annotations

import re

from benchmark.errors import ConfigError

# metres per unit
UNITS: dict[str, float] = {"um": 1e-6, "mm": 1e-3, "cm": 1e-2, "dm": 0.1, "m": 1.0, "dam": 10.0}
UNIT_NAMES = {"um": "micrometres", "mm": "millimetres", "cm": "centimetres", "dm": "decimetres",
              "m": "metres", "dam": "decametres, 10 m"}  # fmt: skip
_LENGTH = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*([a-z]+)\s*$")


def check_unit(unit: str | None, what: str = "unit") -> str | None:
    """`unit` if it is None (unit-less) or a known unit name; ConfigError otherwise."""
    if unit is not None and unit not in UNITS:
        raise ConfigError(f"{what}: unknown unit {unit!r}; known: {', '.join(UNITS)} or None")
    return unit


def describe_unit(unit: str | None) -> str:
    return "unit-less" if unit is None else f"{unit} ({UNIT_NAMES[unit]})"


def parse_length(value: float | int | str) -> tuple[float, str | None]:
    """``"0.5mm"`` -> (0.5, "mm"); ``0.5`` or ``"0.5"`` -> (0.5, None) (data units)."""
    if isinstance(value, bool):
        raise ConfigError(f"expected a length, got {value!r}")
    if isinstance(value, (int, float)):
        return float(value), None
    text = str(value).strip()
    try:
        return float(text), None
    except ValueError:
        pass
    match = _LENGTH.match(text)
    if not match or match.group(2) not in UNITS:
        raise ConfigError(
            f"expected a length such as 0.5, '0.5mm' or '0.05m' (units: {', '.join(UNITS)}), "
            f"got {value!r}"
        )
    return float(match.group(1)), match.group(2)


def is_length(value: object) -> bool:
    """Whether `value` parses as a length (number or number+unit)."""
    try:
        parse_length(value)  # type: ignore[arg-type]
    except ConfigError:
        return False
    return True


def to_data_units(value: float | int | str, data_unit: str | None) -> float | None:
    """The length `value` in the data's unit; None when `value` carries a unit but the data is
    unit-less (the caller applies its documented fallback)."""
    number, unit = parse_length(value)
    if unit is None:
        return number
    if data_unit is None:
        return None
    return number * UNITS[unit] / UNITS[check_unit(data_unit)]
