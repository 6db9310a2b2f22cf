"""The daemon's main loop: one tick per interval, OOM kills as they arrive, clean exit on signals."""

from __future__ import annotations

import logging
import signal
import sys
import time
from typing import TextIO

from .config import Config
from .events import SOURCE_KMALLOC, SOURCE_PAGE
from .loader import Tracer
from .rates import interval_rates
from .report import oom_line, rate_table, sampling_line

log = logging.getLogger("oomguard")
POLL_SLICE_MS = 200  # longest wait in the ring buffer, so signals are seen promptly


class Stop:
    """Set by SIGTERM/SIGINT; the loop checks it between waits."""

    def __init__(self) -> None:
        self.requested = False

    def __call__(self, signum, _frame) -> None:
        log.info("received %s, stopping", signal.Signals(signum).name)
        self.requested = True


def run(config: Config, out: TextIO = sys.stdout) -> int:
    stop = Stop()
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    n = config.sampling.initial_rate
    with Tracer(max_pids=config.sampling.max_pids, sample_rates=(n, n)) as tracer:
        log.info("tracing kmalloc, page allocations, RSS and OOM kills (policy: %s)", config.source)
        previous_snapshot = previous_counters = None
        next_tick = time.monotonic() + config.sampling.interval
        while not stop.requested:
            wait_ms = int(max(0.0, min(next_tick - time.monotonic(), POLL_SLICE_MS / 1000)) * 1000)
            for kill in tracer.poll_oom_kills(wait_ms):
                print(oom_line(kill), file=out, flush=True)
            if time.monotonic() < next_tick:
                continue
            snapshot, counters = tracer.snapshot(), tracer.counters()
            rates = interval_rates(previous_snapshot, snapshot)
            if rates is not None:
                in_force = (tracer.sample_rate(SOURCE_KMALLOC), tracer.sample_rate(SOURCE_PAGE))
                lines = [time.strftime("%H:%M:%S ") + sampling_line(counters, previous_counters, rates.interval_s, in_force)]
                lines += rate_table(rates, config.output.top_pids) if config.output.top_pids else []
                print("\n".join(lines) + "\n", file=out, flush=True)
            previous_snapshot, previous_counters = snapshot, counters
            # A late tick (a stalled machine) starts a fresh schedule rather than firing a burst.
            next_tick = max(next_tick + config.sampling.interval, time.monotonic())
    log.info("stopped; BPF programs detached")
    return 0
