"""Durations and sizes with units, both ways ("30s" <-> 30.0, "512MiB" <-> 536870912)."""

from __future__ import annotations

import re

_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_SIZE_UNITS = {
    "": 1, "b": 1,
    "k": 1000, "kb": 1000, "m": 1000**2, "mb": 1000**2, "g": 1000**3, "gb": 1000**3, "t": 1000**4, "tb": 1000**4,
    "kib": 1024, "mib": 1024**2, "gib": 1024**3, "tib": 1024**4,
}
_NUMBER_UNIT = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([a-zA-Z]*)\s*$")


def parse_duration(value: str | int | float) -> float:
    """Seconds from a number (seconds) or a string such as "250ms", "30s", "5m", "1h"."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 30s, got a boolean")
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        match = _NUMBER_UNIT.match(value)
        unit = match.group(2).lower() if match else None
        if not match or (unit not in _DURATION_UNITS and unit != ""):
            raise ValueError(f"{value!r} is not a duration: use a number with ms, s, m or h, e.g. \"30s\"")
        seconds = float(match.group(1)) * _DURATION_UNITS.get(unit, 1.0)
    if seconds != seconds or seconds < 0 or seconds == float("inf"):
        raise ValueError(f"{value!r} is not a finite, non-negative duration")
    return seconds


def parse_size(value: str | int) -> int:
    """Bytes from an integer (bytes) or a string such as "512MiB", "2G", "64 kB"."""
    if isinstance(value, (bool, float)):
        raise ValueError(f"expected a size such as 512MiB, got {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"size must not be negative, got {value}")
        return value
    match = _NUMBER_UNIT.match(value)
    unit = match.group(2).lower() if match else None
    if not match or unit not in _SIZE_UNITS:
        raise ValueError(f"{value!r} is not a size: use a number with B, KiB, MiB, GiB, kB, MB or GB, e.g. \"512MiB\"")
    return int(float(match.group(1)) * _SIZE_UNITS[unit])


def format_bytes(n: float) -> str:
    """536870912 -> '512.0MiB'; negative values keep their sign."""
    sign = "-" if n < 0 else ""
    n = abs(float(n))
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{sign}{n:.0f}{unit}" if unit == "B" else f"{sign}{n:.1f}{unit}"
        n /= 1024
    raise AssertionError("unreachable")


def format_count(n: float) -> str:
    """12345 -> '12.3k'."""
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.1f}{unit}"
    return f"{n:.0f}"
