"""Per tick: group processes by the memory cgroup whose limit binds them, forecast, and run the alert lifecycle."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, TextIO

import numpy as np

from .alerts import AlertBook, Message, Subject
from .attribution import PodDirectory
from .cgroup import Headroom, MemoryCgroup, headroom
from .config import Config
from .forecast import CgroupForecaster
from .kills import KillReport
from .procfs import ProcessDirectory
from .rates import Rates

log = logging.getLogger("oomguard")
ALERTS_FILE = "alerts.json"


@dataclass(frozen=True)
class Group:
    """The processes one memory limit binds."""

    cgroup: MemoryCgroup  # where the limit is set
    room: Headroom
    rows: list[int]  # indices into the tick's Rates


def limiting_cgroup(cgroup: MemoryCgroup, read=headroom) -> tuple[MemoryCgroup, Headroom] | None:
    """The cgroup that sets the effective limit over `cgroup`, with its own usage; None without a limit."""
    room = read(cgroup)
    if room is None or room.limit_bytes is None:
        return None
    if room.limited_at != cgroup.path:
        cgroup = MemoryCgroup(cgroup.version, room.limited_at)
        room = read(cgroup)
        if room is None or room.limit_bytes is None:
            return None
    return cgroup, room


def group_by_limit(rates: Rates, directory: ProcessDirectory, read=headroom) -> list[Group]:
    """Each process with a memory limit, grouped under the cgroup that sets it; one read per cgroup per tick."""
    by_leaf: dict[MemoryCgroup, list[int]] = {}
    for i, pid in enumerate(rates.pid.tolist()):
        identity = directory.known(pid)
        if identity is not None and identity.cgroup is not None:
            by_leaf.setdefault(identity.cgroup, []).append(i)
    groups: dict[str, Group] = {}
    for leaf, rows in by_leaf.items():
        found = limiting_cgroup(leaf, read)
        if found is None:
            continue
        cgroup, room = found
        if cgroup.path in groups:
            groups[cgroup.path].rows.extend(rows)
        else:
            groups[cgroup.path] = Group(cgroup, room, list(rows))
    return list(groups.values())


class PreOomGuard:
    def __init__(self, config: Config, directory: ProcessDirectory, pods: PodDirectory,
                 deliver: Callable[[Message], None], clock=time.monotonic):
        self.directory, self.pods, self.deliver, self.clock = directory, pods, deliver, clock
        self.state_file = config.state.dir / ALERTS_FILE
        self.apply_policy(config)
        self.book.load(self.state_file)

    def apply_policy(self, config: Config) -> None:
        alerts = config.alerts
        previous = getattr(self, "book", None)
        self.forecaster = CgroupForecaster(alerts.horizon, alerts.headroom_floor)
        self.book = AlertBook(alerts.horizon, alerts.cooldown, alerts.max_per_hour)
        if previous is not None:  # keep what is open and counted
            self.book.open, self.book.tallies = previous.open, previous.tallies

    def tick(self, rates: Rates | None, sample_rates: tuple[int, int]) -> None:
        if rates is None:
            return
        now = self.clock()
        groups = group_by_limit(rates, self.directory)
        for group in groups:
            forecast = self.forecaster.update(group.cgroup.path, now, group.room.usage_bytes, group.room.limit_bytes)
            if forecast.warn:
                self._send(self.book.warn(forecast, self._subject(group, rates, sample_rates), now))
        for message in self.book.expire(now, {g.cgroup.path for g in groups}):
            self._send(message)

    def kill(self, report: KillReport) -> None:
        self._send(self.book.kill(report, self.clock()))

    def _send(self, message: Message | None) -> None:
        if message is None:
            return
        self.deliver(message)
        self.book.save(self.state_file)

    def _subject(self, group: Group, rates: Rates, sample_rates: tuple[int, int]) -> Subject:
        rows = np.array(group.rows)
        total = rates.kmalloc_bytes_per_s[rows] + rates.page_bytes_per_s[rows]
        busiest = int(rates.pid[rows[int(np.argmax(total))]])
        identity = self.directory.identity(busiest)
        attribution = identity.attribution
        pod = self.pods.lookup(attribution.pod_uid, attribution.container_id) if attribution else None
        return Subject(
            cgroup=group.cgroup.path, pids=tuple(int(p) for p in rates.pid[rows]), command=identity.command,
            attribution=attribution, pod=pod,
            kmalloc_bytes_per_s=float(rates.kmalloc_bytes_per_s[rows].sum()),
            page_bytes_per_s=float(rates.page_bytes_per_s[rows].sum()),
            rss_bytes=int(rates.rss_bytes[rows].sum()), sample_rates=sample_rates)


def print_message(message: Message, out: TextIO) -> None:
    print(f"ALERT {message.kind} {message.alert_id}: {message.title}", file=out, flush=True)
