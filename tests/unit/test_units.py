"""Durations and sizes with units: examples and properties."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from oomguard.units import format_bytes, format_count, parse_duration, parse_size


@pytest.mark.parametrize("text, seconds", [
    ("30s", 30.0), ("250ms", 0.25), ("5m", 300.0), ("1h", 3600.0), ("1.5s", 1.5), (" 2 s ", 2.0), ("7", 7.0),
    (3, 3.0), (0.5, 0.5),
])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["", "s", "5 parsecs", "-1s", "1e3s", "nan", True, -2, float("inf")])
def test_bad_durations(bad):
    with pytest.raises(ValueError):
        parse_duration(bad)


@pytest.mark.parametrize("text, size", [
    ("512MiB", 512 << 20), ("2G", 2_000_000_000), ("64 kB", 64_000), ("1GiB", 1 << 30), ("10", 10), (4096, 4096),
    ("1.5KiB", 1536),
])
def test_sizes(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize("bad", ["MiB", "12 parsecs", "-5MiB", -1, 1.5, True])
def test_bad_sizes(bad):
    with pytest.raises(ValueError):
        parse_size(bad)


@given(st.integers(min_value=0, max_value=10**6), st.sampled_from(["ms", "s", "m", "h"]))
def test_duration_scales_with_its_unit(number, unit):
    scale = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[unit]
    assert parse_duration(f"{number}{unit}") == pytest.approx(number * scale)


@given(st.integers(min_value=0, max_value=2**40), st.sampled_from(["B", "KiB", "MiB", "GiB"]))
def test_binary_sizes_are_exact(number, unit):
    scale = {"B": 1, "KiB": 1024, "MiB": 1024**2, "GiB": 1024**3}[unit]
    assert parse_size(f"{number}{unit}") == number * scale


@given(st.text(max_size=12))
def test_parsers_never_crash_on_arbitrary_text(text):
    for parse in (parse_duration, parse_size):
        try:
            value = parse(text)
        except ValueError:
            continue
        assert value >= 0


def test_formatting():
    assert format_bytes(512) == "512B"
    assert format_bytes(536870912) == "512.0MiB"
    assert format_bytes(-2048) == "-2.0KiB"
    assert format_count(12345) == "12.3k"
    assert format_count(7) == "7"
