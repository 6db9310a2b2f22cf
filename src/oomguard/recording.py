"""`oomguard record` and `oomguard replay`: what the guard saw, kept compactly, and run again offline.

A recording is gzip'd JSON lines: a header, then one line per tick (the
observations of every limited cgroup) and one per OOM kill, each stamped
with the daemon's monotonic clock. Replay feeds them to the same
PreOomGuard with that clock and counter-made alert ids, so it prints the
same alerts every time.
"""

from __future__ import annotations

import gzip
import itertools
import json
from dataclasses import asdict
from pathlib import Path
from typing import IO, Iterator, TextIO

from .alerts import Message, Subject
from .attribution import Attribution, PodNames
from .config import Config
from .errors import OomguardError
from .events import OomKill
from .guard import Observation, PreOomGuard
from .kills import KillReport
from .kmsg import KernelOomRecord

FORMAT = "oomguard-record"
VERSION = 1


def _optional(cls, value):
    return cls(**value) if value is not None else None


def observation_to_json(seen: Observation) -> dict:
    return asdict(seen)


def observation_from_json(data: dict) -> Observation:
    subject = dict(data["subject"])
    subject["attribution"] = _optional(Attribution, subject["attribution"])
    subject["pod"] = _optional(PodNames, subject["pod"])
    subject["pids"] = tuple(subject["pids"])
    subject["sample_rates"] = tuple(subject["sample_rates"])
    return Observation(data["cgroup"], data["usage"], data["limit"], Subject(**subject))


def kill_to_json(report: KillReport) -> dict:
    return asdict(report)


def kill_from_json(data: dict) -> KillReport:
    return KillReport(kill=_optional(OomKill, data["kill"]), record=_optional(KernelOomRecord, data["record"]),
                      attribution=_optional(Attribution, data["attribution"]), pod=_optional(PodNames, data["pod"]),
                      limit_bytes=data["limit_bytes"], mismatch=data["mismatch"])


class Recorder:
    def __init__(self, path: Path, host: str, interval_s: float):
        self._file: IO[str] = gzip.open(path, "wt", encoding="utf-8")
        self._write({"format": FORMAT, "version": VERSION, "host": host, "interval_s": interval_s})

    def _write(self, line: dict) -> None:
        self._file.write(json.dumps(line, separators=(",", ":")) + "\n")

    def tick(self, now: float, observations: list[Observation]) -> None:
        self._write({"t": now, "observations": [observation_to_json(o) for o in observations]})

    def kill(self, now: float, report: KillReport) -> None:
        self._write({"t": now, "kill": kill_to_json(report)})

    def close(self) -> None:
        self._file.close()


def read_recording(path: Path) -> tuple[dict, Iterator[dict]]:
    """(header, the following lines)."""
    try:
        stream = gzip.open(path, "rt", encoding="utf-8")
        header = json.loads(stream.readline())
    except FileNotFoundError:
        raise OomguardError(f"{path}: no such file", "give a file written by `oomguard record -o FILE`") from None
    except (OSError, ValueError) as exc:
        raise OomguardError(f"{path}: not an oomguard recording ({exc})",
                            "give a file written by `oomguard record -o FILE`") from None
    if header.get("format") != FORMAT or header.get("version") != VERSION:
        raise OomguardError(f"{path}: not an oomguard recording (version {VERSION})",
                            "record it again with this version of oomguard")
    return header, (json.loads(line) for line in stream)


def replay(path: Path, config: Config, out: TextIO) -> PreOomGuard:
    """Run the guard over a recording with its own clock; print each message as it would be sent."""
    header, lines = read_recording(path)
    counter = itertools.count(1)
    guard = PreOomGuard(config, host=header["host"], new_id=lambda: f"replay-{next(counter):04d}")
    start = None
    for line in lines:
        now = line["t"]
        start = now if start is None else start
        if "kill" in line:
            messages: list[Message] = [guard.kill(kill_from_json(line["kill"]), now)]
        else:
            messages = guard.observe([observation_from_json(o) for o in line["observations"]], now)
        for message in messages:
            print(f"+{now - start:7.1f}s ALERT {message.kind} {message.alert_id}: {message.title}", file=out)
    tallies = guard.book.tallies
    print(f"kills foreseen {tallies.foreseen}, unforeseen {tallies.unforeseen}, false alarms {tallies.false_alarms}; "
          f"{tallies.lead_time_summary()}", file=out)
    return guard
