"""The range of every numeric setting, kept in its dataclass field's metadata.

One place says what a setting may be: the dataclass checks it when it is built (from a flag, a
config file or library code), and the command line parses each flag against the same range, so
``--epochs -1`` fails at parse time with the flag's name, before anything is loaded.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any


def setting(default: Any, help: str, *, low: float | None = None, high: float | None = None,
            open_low: bool = False, open_high: bool = False, optional: bool = False) -> Any:
    """A dataclass field with its help text and, for a number, its range [low, high] (an
    ``open_`` end excludes the bound itself). ``None`` is allowed where the default is ``None``
    or ``optional`` is set (the setting then falls back to another)."""
    metadata: dict[str, Any] = {"help": help, "optional": optional or default is None}
    if low is not None or high is not None:
        metadata["bounds"] = (low, high, open_low, open_high)
    if isinstance(default, list):
        return dataclasses.field(default_factory=lambda: list(default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def flag_name(name: str) -> str:
    return "--" + name.replace("_", "-")


def span(bounds: tuple) -> str:
    """'>= 0', '> 0', 'in [0, 1]', 'in (0, 1]' for a field's bounds."""
    low, high, open_low, open_high = bounds
    if high is None:
        return f"{'>' if open_low else '>='} {low:g}"
    if low is None:
        return f"{'<' if open_high else '<='} {high:g}"
    return f"in {'(' if open_low else '['}{low:g}, {high:g}{')' if open_high else ']'}"


def within(value: Any, bounds: tuple) -> bool:
    low, high, open_low, open_high = bounds
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return False
    if low is not None and (value < low or (open_low and value == low)):
        return False
    return not (high is not None and (value > high or (open_high and value == high)))


def bounded_fields(cls: type) -> dict[str, tuple]:
    """{field name: bounds} for the fields of ``cls`` that have a range."""
    return {f.name: f.metadata["bounds"] for f in dataclasses.fields(cls)
            if "bounds" in f.metadata}


def check_bounds(instance: Any) -> None:
    """Raise ValueError naming the flag of the first field outside its range."""
    for f in dataclasses.fields(instance):
        bounds = f.metadata.get("bounds")
        value = getattr(instance, f.name)
        if bounds is None or (value is None and f.metadata.get("optional")):
            continue
        if not within(value, bounds):
            raise ValueError(f"{flag_name(f.name)} ({f.name}) must be a finite number "
                             f"{span(bounds)}, got {value!r}")
