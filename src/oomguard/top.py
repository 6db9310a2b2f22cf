"""`oomguard top`: a live table of the processes allocating most, with their cgroup, RSS and headroom."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from rich.console import Console
from rich.live import Live
from rich.table import Table

from .attribution import PodDirectory, owner_text
from .cgroup import Headroom, headroom, host_available_bytes
from .config import Config
from .daemon import Signals, Tick, Watchdog
from .loader import Tracer
from .procfs import ProcessDirectory
from .rates import Rates
from .report import sampling_line
from .units import format_bytes


@dataclass(frozen=True)
class TopRow:
    pid: int
    command: str
    cgroup: str
    owner: str  # container / pod / service, see attribution.owner_text
    kmalloc_per_s: float
    page_per_s: float
    rss: int
    rss_per_s: float
    error: float  # relative 1-sigma of the larger of the two rates
    room: Headroom | None


def top_rows(rates: Rates, count: int, directory: ProcessDirectory, pods: PodDirectory | None = None,
             read_headroom=headroom) -> list[TopRow]:
    """The `count` processes with the highest kmalloc + page rate (idle ones left out)."""
    page_dominant = rates.page_bytes_per_s >= rates.kmalloc_bytes_per_s
    samples = np.where(page_dominant, rates.page_samples, rates.kmalloc_samples)
    error = Rates.relative_error(samples)
    rows = []
    for i in rates.busiest(count):
        who = directory.identity(int(rates.pid[i]))
        attribution = who.attribution
        pod = pods.lookup(attribution.pod_uid, attribution.container_id) if pods and attribution else None
        rows.append(TopRow(
            pid=int(rates.pid[i]), command=who.command, cgroup=who.cgroup.path if who.cgroup else "-",
            owner=owner_text(attribution, pod),
            kmalloc_per_s=float(rates.kmalloc_bytes_per_s[i]), page_per_s=float(rates.page_bytes_per_s[i]),
            rss=int(rates.rss_bytes[i]), rss_per_s=float(rates.rss_bytes_per_s[i]), error=float(error[i]),
            room=read_headroom(who.cgroup) if who.cgroup else None,
        ))
    return rows


def _room_text(room: Headroom | None) -> str:
    if room is None:
        return "-"
    if room.limit_bytes is None:
        available = host_available_bytes()
        return f"no limit; host {format_bytes(available)} available" if available else "no limit"
    return f"{format_bytes(room.free_bytes)} of {format_bytes(room.limit_bytes)}"


def render(rows: list[TopRow], title: str) -> Table:
    table = Table(title=title, title_justify="left", expand=False)
    for name, justify in (("PID", "right"), ("COMMAND", "left"), ("OWNER", "left"), ("CGROUP", "left"),
                          ("KMALLOC/s", "right"),
                          ("PAGES/s", "right"), ("±", "right"), ("RSS", "right"), ("RSS/s", "right"),
                          ("HEADROOM", "right")):
        table.add_column(name, justify=justify, overflow="fold" if name in ("CGROUP", "OWNER") else "ellipsis")
    for row in rows:
        table.add_row(str(row.pid), row.command, row.owner, row.cgroup, format_bytes(row.kmalloc_per_s),
                      format_bytes(row.page_per_s), "-" if row.error == float("inf") else f"{row.error:.0%}",
                      format_bytes(row.rss), format_bytes(row.rss_per_s), _room_text(row.room))
    return table


def run_top(config: Config, iterations: int | None = None, count: int = 20, console: Console | None = None) -> int:
    """Refresh each interval until Ctrl-C, or for `iterations` ticks."""
    console = console or Console()
    signals = Signals()
    with Tracer(max_pids=config.sampling.max_pids) as tracer:
        watchdog = Watchdog(tracer, config)
        pods = PodDirectory(config.attribution.pods_log_dir, config.attribution.containers_log_dir)
        previous: Tick | None = None
        shown = 0
        with Live(console=console, auto_refresh=False, transient=False) as live:
            while not signals.stop and (iterations is None or shown < iterations):
                time.sleep(config.sampling.interval)
                tick = watchdog.tick()
                if tick.rates is not None:
                    title = sampling_line(tick.counters, previous.counters if previous else None,
                                          tick.rates.interval_s, tick.sample_rates)
                    live.update(render(top_rows(tick.rates, count, watchdog.directory, pods), title), refresh=True)
                    shown += 1
                previous = tick
    return 0
