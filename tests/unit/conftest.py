"""Unit fixtures: a Daemon on a fake kernel side, for what the daemon does with each tick's data."""

from __future__ import annotations

import signal

import pytest

from oomguard.config import load
from oomguard.sampling.collector import Collector
from oomguard.service.daemon import Daemon


class FakeTracer:
    """The kernel side as the daemon's reload sees it: sample rates and the cgroup filter."""

    max_pids = 16384

    def __init__(self) -> None:
        self.rates: dict[int, int] = {}
        self.filters: list[tuple[int, list]] = []

    def set_sample_rate(self, source: int, n: int) -> None:
        self.rates[source] = n

    def set_cgroup_filter(self, mode: int, directories: list) -> None:
        self.filters.append((mode, directories))


@pytest.fixture
def daemon(tmp_path):
    saved = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    policy = tmp_path / "policy.toml"
    policy.write_text(f'[state]\ndir = "{tmp_path / "state"}"\n[metrics]\nlisten = ""\n')
    policy.chmod(0o600)
    made = Daemon(load(policy))
    made.tracer = FakeTracer()  # type: ignore[assignment]
    made.collector = Collector(made.tracer, made.config.sampling)  # type: ignore[arg-type]
    yield made
    for number, handler in saved.items():
        signal.signal(number, handler)
