"""The top-N process table, one definition for `run`, `status` and `top`: rows from rates, text with units."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..identity.owners import Owner
from ..sampling.rates import Rates
from ..text import printable
from ..units import format_bytes


@dataclass(frozen=True)
class ProcessRow:
    pid: int
    command: str
    owner: str  # container / pod / service, see owners.owner_text
    cgroup: str  # memory cgroup path, "-" when unknown
    kmalloc_bytes_per_s: float
    page_bytes_per_s: float
    rss_bytes: int
    rss_bytes_per_s: float
    error: float  # relative 1-sigma of the larger of the two rates (inf: nothing sampled)


def busiest_rows(rates: Rates, count: int, owner_of: Callable[[int], Owner]) -> list[ProcessRow]:
    """The `count` processes with the highest kmalloc + page rate (idle ones left out), busiest first."""
    page_dominant = rates.page_bytes_per_s >= rates.kmalloc_bytes_per_s
    error = Rates.relative_error(np.where(page_dominant, rates.page_samples, rates.kmalloc_samples))
    rows = []
    for i in rates.busiest(count):
        pid = int(rates.pid[i])
        who = owner_of(pid)
        rows.append(ProcessRow(
            pid=pid, command=who.command, owner=who.text(), cgroup=who.cgroup.path if who.cgroup else "-",
            kmalloc_bytes_per_s=float(rates.kmalloc_bytes_per_s[i]), page_bytes_per_s=float(rates.page_bytes_per_s[i]),
            rss_bytes=int(rates.rss_bytes[i]), rss_bytes_per_s=float(rates.rss_bytes_per_s[i]), error=float(error[i])))
    return rows


def format_rows(rows: list[ProcessRow]) -> list[str]:
    """A plain-text table: header, then one line per row."""
    lines = [f"{'PID':>8} {'COMMAND':<16} {'KMALLOC/s':>11} {'PAGES/s':>11} {'RSS':>10}  OWNER"]
    for row in rows:  # names as processes and cgroups chose them: control characters escaped, one line each
        lines.append(f"{row.pid:>8} {printable(row.command)[:16]:<16} {format_bytes(row.kmalloc_bytes_per_s):>11} "
                     f"{format_bytes(row.page_bytes_per_s):>11} {format_bytes(row.rss_bytes):>10}  "
                     f"{printable(row.owner)}")
    return lines
