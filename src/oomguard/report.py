"""Plain-text lines the foreground daemon prints: the per-PID rate table and OOM kills."""

from __future__ import annotations

from typing import Callable

from .events import Counters
from .attribution import owner_text
from .kills import KillReport
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


def rate_table(rates: Rates, top: int, describe: Callable[[int], tuple[str, str]]) -> list[str]:
    """The `top` processes by page + kmalloc bytes/s; describe(pid) gives (command, owner)."""
    lines = [f"{'PID':>8} {'COMMAND':<16} {'KMALLOC/s':>11} {'PAGES/s':>11} {'RSS':>10}  OWNER"]
    for i in rates.busiest(top):
        pid = int(rates.pid[i])
        command, owner = describe(pid)
        lines.append(f"{pid:>8} {command[:16]:<16} {format_bytes(rates.kmalloc_bytes_per_s[i]):>11} "
                     f"{format_bytes(rates.page_bytes_per_s[i]):>11} {format_bytes(rates.rss_bytes[i]):>10}  {owner}")
    return lines


def oom_line(report: KillReport) -> str:
    parts = [f"OOM KILL  pid {report.pid} ({report.comm}) of {owner_text(report.attribution, report.pod)}"]
    if report.attribution:
        parts.append(f"cgroup {report.attribution.cgroup_path or '/'}")
    if report.record is not None:
        where = report.record.oom_memcg
        limit = format_bytes(report.limit_bytes) if report.limit_bytes is not None else "unknown"
        parts.append(f"{report.record.constraint}" + (f", limit {limit} of {where}" if where else ""))
    elif report.limit_bytes is not None:
        parts.append(f"limit {format_bytes(report.limit_bytes)}")
    kill = report.kill
    if kill is not None:
        parts.append(f"rss {format_bytes(kill.rss_bytes)} (anon {format_bytes(kill.anon_rss_kb * 1024)}, "
                     f"file {format_bytes(kill.file_rss_kb * 1024)}, shmem {format_bytes(kill.shmem_rss_kb * 1024)}), "
                     f"vm {format_bytes(kill.total_vm_kb * 1024)}, uid {kill.victim_uid}, "
                     f"oom_score_adj {kill.oom_score_adj}; triggered by pid {kill.trigger_pid} ({kill.trigger_comm})")
    else:
        parts.append("seen in the kernel log only (ring-buffer event lost)")
    if report.kill is not None and report.record is None:
        parts.append("no kernel log line")
    if report.mismatch:
        parts.append(f"SOURCES DISAGREE: {report.mismatch}")
    return "; ".join(parts)
