"""`oomguard top`: a live table of the processes allocating most, with their cgroup, RSS and headroom."""

from __future__ import annotations

import time
from collections.abc import Callable

from rich.console import Console
from rich.live import Live
from rich.markup import escape
from rich.table import Table

from ..bpf.events import Counters
from ..bpf.tracer import Tracer
from ..config import Config
from ..identity.cgroup import Headroom, headroom
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


def run_top(config: Config, iterations: int | None = None, count: int = 20, console: Console | None = None) -> int:
    """Refresh each interval until Ctrl-C, or for `iterations` ticks."""
    console = console or Console()
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
                    title = sampling_line(tick.counters, previous, rates.interval_s, tick.sample_rates)
                    live.update(render(busiest_rows(rates, count, owners.owner_of), title, room_of), refresh=True)
                    shown += 1
                previous = tick.counters
    return 0
