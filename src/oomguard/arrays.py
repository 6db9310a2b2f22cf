"""Joins of sorted numpy key arrays: how per-PID arrays from different reads are lined up without a loop."""

from __future__ import annotations

from typing import Any

import numpy as np


def match(keys: np.ndarray, wanted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each w in `wanted`: (index i with keys[i] == w, whether there is one). `keys` sorted, unique."""
    if len(keys) == 0:
        return np.zeros(len(wanted), dtype=np.intp), np.zeros(len(wanted), dtype=bool)
    pos = np.minimum(np.searchsorted(keys, wanted), len(keys) - 1)
    return pos, keys[pos] == wanted


def carried(values: np.ndarray, matched: tuple[np.ndarray, np.ndarray], fill: np.ndarray | float) -> np.ndarray:
    """Per-process state carried over to this tick's pids: `values` (aligned with last tick's pids) where a
    pid was there last tick, `fill` for a new one. `matched` = match(last tick's pids, this tick's)."""
    pos, found = matched
    return np.where(found, values[pos] if len(values) else fill, fill)


def values_for(keys: np.ndarray, values: np.ndarray, wanted: np.ndarray, missing: Any = 0) -> np.ndarray:
    """values[i] for the i with keys[i] == w, for each w in `wanted`; `missing` where absent."""
    order = np.argsort(keys)  # keys are unique: stability buys nothing
    pos, found = match(keys[order], wanted)
    out = np.full(len(wanted), missing, dtype=values.dtype)
    out[found] = values[order[pos[found]]]
    return out
