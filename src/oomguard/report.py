"""Plain-text lines the foreground daemon prints: the per-PID rate table and OOM kills."""

from __future__ import annotations

from .events import Counters, OomKill
from .procfs import process_name
from .rates import Rates
from .units import format_bytes, format_count


def sampling_line(counters: Counters, previous: Counters | None, interval_s: float, rates: tuple[int, int]) -> str:
    def per_second(now: int, before: int | None) -> str:
        return format_count((now - (before or 0)) / interval_s) if previous else "-"

    parts = []
    for name, now, before, n in (
        ("kmalloc", counters.kmalloc, previous.kmalloc if previous else None, rates[0]),
        ("page", counters.page, previous.page if previous else None, rates[1]),
    ):
        parts.append(f"{name} 1-in-{n}: {per_second(now.seen, before and before.seen)} events/s, "
                     f"{per_second(now.sampled, before and before.sampled)} sampled/s")
    return "sampling  " + " | ".join(parts) + f" | ring-buffer drops {counters.ringbuf_drops}"


def rate_table(rates: Rates, top: int, name_of=process_name) -> list[str]:
    """The `top` processes by page + kmalloc bytes/s."""
    lines = [f"{'PID':>8} {'COMMAND':<16} {'KMALLOC/s':>11} {'PAGES/s':>11} {'RSS':>10}"]
    total = rates.kmalloc_bytes_per_s + rates.page_bytes_per_s
    for i in (-total).argsort(kind="stable")[:top]:
        if total[i] <= 0:
            break
        pid = int(rates.pid[i])
        lines.append(f"{pid:>8} {name_of(pid)[:16]:<16} {format_bytes(rates.kmalloc_bytes_per_s[i]):>11} "
                     f"{format_bytes(rates.page_bytes_per_s[i]):>11} {format_bytes(rates.rss_bytes[i]):>10}")
    return lines


def oom_line(kill: OomKill) -> str:
    return (f"OOM KILL  pid {kill.victim_pid} ({kill.victim_comm}) uid {kill.victim_uid}: "
            f"rss {format_bytes(kill.rss_bytes)} (anon {format_bytes(kill.anon_rss_kb * 1024)}, "
            f"file {format_bytes(kill.file_rss_kb * 1024)}, shmem {format_bytes(kill.shmem_rss_kb * 1024)}), "
            f"vm {format_bytes(kill.total_vm_kb * 1024)}, oom_score_adj {kill.oom_score_adj}; "
            f"triggered by pid {kill.trigger_pid} ({kill.trigger_comm}) in cgroup id {kill.cgroup_id}")
