"""Plain-text lines the foreground daemon prints: sampling figures, the top processes, alerts and OOM kills."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TextIO

from ..alerting.messages import Message
from ..bpf.events import Counters
from ..identity.owners import Owner, owner_text
from ..kills.report import KillReport
from ..sampling.collector import Tick
from ..text import printable
from ..units import format_bytes, format_count
from .table import busiest_rows, format_rows


def sampling_line(counters: Counters, previous: Counters | None, interval_s: float, rates: tuple[int, int]) -> str:
    def per_second(now: int, before: int | None) -> str:
        return format_count((now - (before or 0)) / interval_s) if previous else "-"

    parts = []
    for name, now, before, n in (
        ("kmalloc", counters.kmalloc, previous.kmalloc if previous else None, rates[0]),
        ("page", counters.page, previous.page if previous else None, rates[1]),
    ):
        parts.append(f"{name} 1-in-{n}: {per_second(now.seen, before.seen if before else None)} events/s, "
                     f"{per_second(now.sampled, before.sampled if before else None)} sampled/s")
    return "sampling  " + " | ".join(parts) + f" | ring-buffer drops {counters.ringbuf_drops}"


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
    return printable("; ".join(parts))  # one line, whatever the victim named itself


def print_tick(tick: Tick, previous: Counters | None, top: int, owner_of: Callable[[int], Owner], out: TextIO) -> None:
    if tick.rates is None:
        return
    lines = [time.strftime("%H:%M:%S ") + sampling_line(tick.counters, previous, tick.rates.interval_s,
                                                       tick.sample_rates)]
    if top:
        lines += format_rows(busiest_rows(tick.rates, top, owner_of))
    print("\n".join(lines) + "\n", file=out, flush=True)


def print_kill(report: KillReport, out: TextIO) -> None:
    print(oom_line(report), file=out, flush=True)


def alert_line(message: Message) -> str:
    """The one line an alert is shown as, on a terminal or in the journal."""
    return printable(f"ALERT {message.kind} {message.alert_id}: {message.title}")


def print_message(message: Message, out: TextIO) -> None:
    print(alert_line(message), file=out, flush=True)
