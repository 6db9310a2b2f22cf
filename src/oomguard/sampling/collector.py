"""One tick of the kernel stage: read the maps, turn them into rates, adapt N, drop exited processes.

The collector is the only user of the Tracer on the per-tick path. It knows
nothing of containers or policy beyond the sampling section.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..bpf.events import SOURCE_KMALLOC, SOURCE_PAGE, SOURCES, AllocSnapshot, Counters, Departed
from ..bpf.tracer import Tracer
from ..config import SamplingConfig
from .controller import SampleRateController
from .rates import Rates, RateTracker

log = logging.getLogger("oomguard")
LISTING_S = 30.0  # how often /proc is listed to confirm which processes are alive


def live_pids(proc: Path = Path("/proc")) -> np.ndarray:
    """Every process (tgid) alive now, sorted. One directory listing, not one stat per PID."""
    return np.array(sorted(int(name) for name in os.listdir(proc) if name.isdigit()), dtype=np.uint32)


@dataclass(frozen=True)
class Tick:
    """What one tick learnt."""

    rates: Rates | None  # None on the first tick (no interval yet)
    counters: Counters
    sample_rates: tuple[int, int]  # N in force during the interval, per source
    seen_pids: np.ndarray  # every pid in the maps this tick, sorted
    exited_pids: np.ndarray  # processes pruned from the maps this tick
    live_pids: np.ndarray  # the processes alive at this tick as far as the maps tell (or /proc), sorted
    departed: dict[int, Departed] = field(default_factory=dict)  # exits since the last tick, as the kernel named them


class Collector:
    """Reads the maps once per tick; holds the sampling controllers that keep N on target."""

    def __init__(self, tracer: Tracer, policy: SamplingConfig):
        self.tracer = tracer
        self.controllers = [SampleRateController(policy.target_events_per_sec, initial_n=policy.initial_rate)
                            for _ in SOURCES]
        for source, controller in enumerate(self.controllers):
            tracer.set_sample_rate(source, controller.n)
        self.rates = RateTracker()
        self._previous: tuple[Counters, float] | None = None
        self._listed_at = float("-inf")  # when /proc was last listed
        self._warned_full = False

    def reconfigure(self, policy: SamplingConfig) -> None:
        """A new target applies from the next interval; max_pids and initial_rate need a restart."""
        for controller in self.controllers:
            controller.target_per_s = float(policy.target_events_per_sec)

    @property
    def sample_rates(self) -> tuple[int, int]:
        return self.controllers[SOURCE_KMALLOC].n, self.controllers[SOURCE_PAGE].n

    def tick(self) -> Tick:
        snapshot = self.tracer.snapshot()
        departed = self.tracer.departed()  # after the snapshot: every exit it marks has its name here
        counters = self.tracer.counters()
        in_force = self.sample_rates
        live = self._alive(snapshot)
        rates, exited = self.rates.update(snapshot, live)
        if len(exited):
            self.tracer.forget_pids(exited)
        if (len(snapshot) >= self.tracer.max_pids or counters.untracked) and not self._warned_full:
            log.warning("per-process table full (%d slots): new processes are not tracked until one exits; "
                        "raise [sampling] max_pids", self.tracer.max_pids)
            self._warned_full = True
        self._adapt(counters, snapshot.monotonic_s)
        return Tick(rates=rates, counters=counters, sample_rates=in_force, seen_pids=snapshot.pid,
                    exited_pids=exited, live_pids=live, departed=departed)

    def _alive(self, snapshot: AllocSnapshot) -> np.ndarray:
        """The live pids, sorted. The kernel marks each exit in the map, so the entries not marked are alive;
        /proc is listed only every LISTING_S, to catch what marks cannot (an entry re-made by a late
        allocation of an exiting task), since listing it costs ~20 ms at 10,000 processes."""
        now = snapshot.monotonic_s
        if snapshot.exited is None or now - self._listed_at >= LISTING_S:
            self._listed_at = now
            return live_pids()
        return snapshot.pid[~snapshot.exited]

    def events_per_s(self, interval_s: float) -> list[float]:
        """Events seen per source over the last interval."""
        return [float(c.last_seen) / interval_s if interval_s > 0 else 0.0 for c in self.controllers]

    def _adapt(self, counters: Counters, now: float) -> None:
        previous, self._previous = self._previous, (counters, now)
        if previous is None:
            return
        before, last = previous
        for source, (name, old, new) in enumerate(
                (("kmalloc", before.kmalloc, counters.kmalloc), ("page", before.page, counters.page))):
            decision = self.controllers[source].update(new.seen - old.seen, now - last)
            if decision.changed:
                self.tracer.set_sample_rate(source, decision.n)
                log.info("sample rate %s: %s", name, decision.reason)
