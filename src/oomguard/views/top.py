"""`oomguard top`: a live table of the processes allocating most, with their cgroup, RSS and headroom.

With the daemon running, `top` is its client: it shows the table the daemon
writes each tick into its status file, loading no BPF program of its own (a
second set would double the tracing cost on the kernel's hottest path).
With none running, it traces by itself, and its title says which.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.markup import escape
from rich.table import Table

from ..bpf.events import Counters
from ..bpf.tracer import Tracer
from ..config import Config
from ..identity.cgroup import Headroom, MemoryCgroup, default_memory_version, headroom
from ..identity.owners import Owners
from ..identity.pods import PodDirectory
from ..identity.procfs import ProcessDirectory, meminfo
from ..identity.selection import Selection, kernel_filter_for
from ..sampling.collector import Collector
from ..signals import Signals
from ..text import printable
from ..units import format_bytes
from .console import sampling_line
from .table import ProcessRow, busiest_rows

COLUMNS = (("PID", "right"), ("COMMAND", "left"), ("OWNER", "left"), ("CGROUP", "left"), ("KMALLOC/s", "right"),
           ("PAGES/s", "right"), ("±", "right"), ("RSS", "right"), ("RSS/s", "right"), ("HEADROOM", "right"))


def room_text(room: Headroom | None) -> str:
    if room is None:
        return "-"
    if room.limit_bytes is None:
        available = meminfo().get("MemAvailable")
        return f"no limit; host {format_bytes(available)} available" if available else "no limit"
    return f"{format_bytes(room.limit_bytes - room.usage_bytes)} of {format_bytes(room.limit_bytes)}"


def safe(name: str) -> str:
    """A name as rich should show it: control characters escaped, markup ([/], [bold]) literal."""
    return escape(printable(name))


def render(rows: list[ProcessRow], title: str, room_of: Callable[[ProcessRow], Headroom | None]) -> Table:
    table = Table(title=escape(title), title_justify="left", expand=False)
    for name, justify in COLUMNS:
        table.add_column(name, justify=justify,  # type: ignore[arg-type]  # rich's Literal; ours are valid
                         overflow="fold" if name in ("CGROUP", "OWNER") else "ellipsis")
    for row in rows:
        # Names come from processes and cgroups anyone can create: never let rich read them as markup.
        table.add_row(str(row.pid), safe(row.command), safe(row.owner), safe(row.cgroup),
                      format_bytes(row.kmalloc_bytes_per_s), format_bytes(row.page_bytes_per_s),
                      "-" if row.error == float("inf") else f"{row.error:.0%}",
                      format_bytes(row.rss_bytes), format_bytes(row.rss_bytes_per_s), room_text(room_of(row)))
    return table


Status = dict[str, Any]  # the daemon's status file (service/status.py), already checked


def daemon_title(status: Status, count: int, now: float) -> str:
    """What the table from the daemon says of where it comes from."""
    kept = len(status.get("top", []))
    return (f"from the running daemon (pid {status['pid']}, tick {now - status['updated']:.1f}s ago): "
            f"kmalloc 1-in-{status['sample_rates'][0]}, page 1-in-{status['sample_rates'][1]}; events/s kmalloc "
            f"{status['events_per_s'][0]:,.0f}, page {status['events_per_s'][1]:,.0f}"
            + (f" (it keeps its top {kept})" if count > kept else ""))


def run_from_daemon(status_of: Callable[[], Status | None], interval_s: float, iterations: int | None, count: int,
                    console: Console) -> int:
    """The daemon's own table, re-read each interval; 1 if the daemon stops answering."""
    version = default_memory_version()

    def room_of(row: ProcessRow) -> Headroom | None:
        return headroom(MemoryCgroup(version, row.cgroup)) if row.cgroup.startswith("/") else None

    signals, shown = Signals(), 0
    with Live(console=console, auto_refresh=False, transient=False) as live:
        while not signals.stop and (iterations is None or shown < iterations):
            status = status_of()
            if status is None:
                console.print("the daemon stopped answering (its status file is stale or gone): run `oomguard top` "
                              "again to trace by itself, or `oomguard status` to see why")
                return 1
            rows = [ProcessRow(**row) for row in status.get("top", [])][:count]
            live.update(render(rows, daemon_title(status, count, time.time()), room_of), refresh=True)
            shown += 1
            if iterations is None or shown < iterations:
                time.sleep(interval_s)
    return 0


def run_top(config: Config, iterations: int | None = None, count: int = 20, console: Console | None = None,
            daemon: Callable[[], Status | None] | None = None) -> int:
    """Refresh each interval until Ctrl-C, or for `iterations` ticks: from the running daemon when `daemon()`
    finds one, else by tracing here."""
    console = console or Console()
    if daemon is not None and daemon() is not None:
        return run_from_daemon(daemon, config.sampling.interval, iterations, count, console)
    signals = Signals()
    directory = ProcessDirectory()
    owners = Owners(directory, PodDirectory(config.attribution.pods_log_dir, config.attribution.containers_log_dir))
    selection = Selection(directory, config.selection)

    def room_of(row: ProcessRow) -> Headroom | None:
        cgroup = owners.owner_of(row.pid).cgroup
        return headroom(cgroup) if cgroup else None

    with Tracer(max_pids=config.sampling.max_pids) as tracer:
        collector = Collector(tracer, config.sampling)
        tracer.set_cgroup_filter(*kernel_filter_for(selection.rules))
        previous: Counters | None = None
        shown = 0
        with Live(console=console, auto_refresh=False, transient=False) as live:
            while not signals.stop and (iterations is None or shown < iterations):
                time.sleep(config.sampling.interval)
                tick = collector.tick()
                rates = selection.admit(tick.rates, tick.seen_pids, tick.live_pids, tick.departed)
                if rates is not None:
                    title = "traced here (no daemon running): " + sampling_line(
                        tick.counters, previous, rates.interval_s, tick.sample_rates)
                    live.update(render(busiest_rows(rates, count, owners.owner_of), title, room_of), refresh=True)
                    shown += 1
                previous = tick.counters
    return 0
