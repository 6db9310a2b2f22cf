"""Per tick: group processes by the memory cgroup whose limit binds them, forecast, and run the alert lifecycle."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, TextIO

import numpy as np

from .alerts import AlertBook, Message, Subject
from .attribution import PodDirectory, under_cgroup
from .cgroup import Headroom, MemoryCgroup, headroom
from .config import Config
from .detect import CgroupDetector, DetectConfig, PidScreen
from .kills import KillReport
from .procfs import ProcessDirectory
from .rates import Rates
from .units import format_bytes

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


HOST = MemoryCgroup(0, "/")  # the whole machine, for processes no cgroup limits


def host_group(rates: Rates, groups: list[Group], meminfo: Path = Path("/proc/meminfo")) -> Group | None:
    """The processes under no memory limit, against the host's memory (MemTotal, MemAvailable)."""
    limited = {i for g in groups for i in g.rows}
    rows = [i for i in range(len(rates.pid)) if i not in limited]
    try:
        fields = {line.split(":")[0]: int(line.split()[1]) * 1024 for line in meminfo.read_text().splitlines()
                  if line.split(":")[0] in ("MemTotal", "MemAvailable")}
    except (OSError, ValueError, IndexError):
        return None
    if not rows or len(fields) != 2:
        return None
    total = fields["MemTotal"]
    return Group(HOST, Headroom(total - fields["MemAvailable"], total, "/"), rows)


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


@dataclass(frozen=True)
class Observation:
    """One limiting cgroup at one tick: what the rule and the lifecycle need (and what `record` keeps)."""

    cgroup: str
    usage: int
    limit: int
    subject: Subject


def last_seen(report: KillReport, observations) -> tuple[Subject, int, int] | None:
    """The observation of the cgroup the victim lived in (or whose limit it hit), if the last tick had it."""
    paths = [p for p in (report.record.oom_memcg if report.record else None,
                         report.attribution.cgroup_path if report.attribution else None) if p]
    for seen in observations:
        if report.pid in seen.subject.pids or any(under_cgroup(p, seen.cgroup) for p in paths if seen.cgroup != "/"):
            return seen.subject, seen.usage, seen.limit
    return None


class PreOomGuard:
    """The forecast rule and the alert lifecycle over observations: the same live and in replay."""

    def __init__(self, config: Config, host: str | None = None, new_id=None):
        self.host, self.new_id = host, new_id
        self.last_forecasts: dict = {}
        self.apply_policy(config)

    def apply_policy(self, config: Config) -> None:
        alerts = config.alerts
        previous = getattr(self, "book", None)
        self.forecaster = CgroupDetector(DetectConfig(**{k: getattr(config.detect, k) for k in (
            "window", "blocks", "envelope_fit", "short_window", "warmup", "anomaly_factor", "min_growth")},
            peak_half_life_s=config.detect.peak_half_life, learn_after_s=config.detect.learn_after),
            alerts.horizon, alerts.headroom_floor)
        self.book = AlertBook(alerts.horizon, alerts.cooldown, alerts.max_per_hour, host=self.host, new_id=self.new_id)
        if previous is not None:  # keep what is open and counted
            self.book.open, self.book.tallies = previous.open, previous.tallies

    def observe(self, observations: list[Observation], now: float) -> list[Message]:
        messages = []
        forecasts = self.forecaster.update_all(  # every cgroup in one vectorised pass
            [seen.cgroup for seen in observations], now,
            np.array([seen.usage for seen in observations], dtype=np.float64),
            np.array([seen.limit for seen in observations], dtype=np.float64))
        gone = set(self.last_forecasts) - {f.cgroup for f in forecasts}
        self.forecaster.forget(gone)  # a cgroup with no process left: its history goes too
        self.last_forecasts = {f.cgroup: f for f in forecasts}
        for seen, forecast in zip(observations, forecasts):
            if forecast.warn:
                messages.append(self.book.warn(forecast, seen.subject, now))
        messages += self.book.expire(now, {seen.cgroup for seen in observations})
        return [m for m in messages if m is not None]

    def kill(self, report: KillReport, now: float, observations: list[Observation] = ()) -> Message:
        return self.book.kill(report, now, last_seen(report, observations))


class LiveGuard:
    """The guard on the running system: observations from the tick, messages delivered, state saved."""

    def __init__(self, config: Config, directory: ProcessDirectory, pods: PodDirectory,
                 deliver: Callable[[Message], None], clock=time.monotonic):
        self.directory, self.pods, self.deliver, self.clock = directory, pods, deliver, clock
        self.state_file = config.state.dir / ALERTS_FILE
        self.guard = PreOomGuard(config)
        self.guard.book.load(self.state_file)
        self.screen = PidScreen(sigma=config.detect.screen_sigma)  # RSS growth
        self.page_screen = PidScreen(sigma=config.detect.screen_sigma)  # page-allocation rate
        self.kmalloc_screen = PidScreen(sigma=config.detect.screen_sigma)  # kernel allocations on its behalf
        self.last_observations: list[Observation] = []

    @property
    def book(self) -> AlertBook:
        return self.guard.book

    def apply_policy(self, config: Config) -> None:
        self.guard.apply_policy(config)

    def tick(self, rates: Rates | None, sample_rates: tuple[int, int]) -> None:
        if rates is None:
            return
        flagged = {  # every process, one numpy pass per signal
            "RSS": self.screen.update(rates.pid, rates.rss_bytes_per_s),
            "page allocations": self.page_screen.update(rates.pid, rates.page_bytes_per_s),
            "kmalloc": self.kmalloc_screen.update(rates.pid, rates.kmalloc_bytes_per_s),
        }
        groups = group_by_limit(rates, self.directory)
        host = host_group(rates, groups)
        self.last_observations = [
            Observation(g.cgroup.path, g.room.usage_bytes, g.room.limit_bytes,
                        self._subject(g, rates, sample_rates, flagged))
            for g in groups + ([host] if host else [])]
        for message in self.guard.observe(self.last_observations, self.clock()):
            self._send(message)

    def kill(self, report: KillReport) -> None:
        self._send(self.guard.kill(report, self.clock(), self.last_observations))

    def _send(self, message: Message) -> None:
        self.deliver(message)
        self.book.save(self.state_file)

    def _subject(self, group: Group, rates: Rates, sample_rates: tuple[int, int], flagged: dict) -> Subject:
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
            rss_bytes=int(rates.rss_bytes[rows].sum()), sample_rates=sample_rates,
            notes=self._screen_notes(rates, rows, flagged))

    def _screen_notes(self, rates: Rates, rows: np.ndarray, flagged: dict) -> str:
        values = {"RSS": rates.rss_bytes_per_s, "page allocations": rates.page_bytes_per_s,
                  "kmalloc": rates.kmalloc_bytes_per_s}
        notes = []
        for i in rows:
            signals = [f"{name} +{format_bytes(values[name][i])}/s" for name, mask in flagged.items() if mask[i]]
            if signals:
                pid = int(rates.pid[i])
                notes.append(f"pid {pid} ({self.directory.identity(pid).command}) {', '.join(signals)}, "
                             "far above its own norm")
        return "; ".join(notes[:5])


def print_message(message: Message, out: TextIO) -> None:
    print(f"ALERT {message.kind} {message.alert_id}: {message.title}", file=out, flush=True)
