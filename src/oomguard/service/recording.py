"""`oomguard record` and `oomguard replay`: what the guard saw, kept compactly, and run again offline.

A recording is gzip'd JSON lines: a header, then one line per tick (the
observations of every limited cgroup) and one per OOM kill, each stamped
with the daemon's monotonic clock. Replay feeds them to the same
detector, workload memory (learnt afresh from the recording's own instances)
and AlertEngine with that clock and counter-made alert ids, so it prints the
same alerts every time.
"""

from __future__ import annotations

import gzip
import itertools
import json
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import IO, Any, TextIO

from ..alerting.engine import AlertEngine
from ..alerting.messages import Message
from ..bpf.events import OomKill
from ..config import Config
from ..detection.detector import CgroupDetector
from ..detection.groups import Subject
from ..detection.workloads import WorkloadMemory, judged
from ..errors import OomguardError
from ..identity.attribution import Attribution
from ..identity.pods import PodNames
from ..kills.kmsg import KernelOomRecord
from ..kills.report import KillReport

FORMAT = "oomguard-record"
VERSION = 2  # 2: flat subjects (1 nested them in observations; still read)
READABLE_VERSIONS = (1, 2)


Json = dict[str, Any]


def _optional(cls: Any, value: Json | None) -> Any:
    return cls(**value) if value is not None else None


def subject_to_json(subject: Subject) -> Json:
    return asdict(subject)


def subject_from_json(data: Json) -> Subject:
    if "subject" in data:  # version 1 wrote {cgroup, usage, limit, subject: {...}}: the same fields, nested
        data = {**data["subject"], "cgroup": data["cgroup"], "usage": data["usage"], "limit": data["limit"]}
    fields = dict(data)
    fields["attribution"] = _optional(Attribution, fields["attribution"])
    fields["pod"] = _optional(PodNames, fields["pod"])
    fields["pids"] = tuple(fields["pids"])
    fields["sample_rates"] = tuple(fields["sample_rates"])
    return Subject(**fields)


def kill_to_json(report: KillReport) -> Json:
    return asdict(report)


def kill_from_json(data: Json) -> KillReport:
    return KillReport(kill=_optional(OomKill, data["kill"]), record=_optional(KernelOomRecord, data["record"]),
                      attribution=_optional(Attribution, data["attribution"]), pod=_optional(PodNames, data["pod"]),
                      limit_bytes=data["limit_bytes"], mismatch=data["mismatch"])


class Recorder:
    def __init__(self, path: Path, host: str, interval_s: float):
        self._file: IO[str] = gzip.open(path, "wt", encoding="utf-8")  # noqa: SIM115  # open until close()
        self._write({"format": FORMAT, "version": VERSION, "host": host, "interval_s": interval_s})

    def _write(self, line: Json) -> None:
        self._file.write(json.dumps(line, separators=(",", ":")) + "\n")

    def tick(self, now: float, subjects: list[Subject]) -> None:
        self._write({"t": now, "subjects": [subject_to_json(s) for s in subjects]})

    def kill(self, now: float, report: KillReport) -> None:
        self._write({"t": now, "kill": kill_to_json(report)})

    def close(self) -> None:
        self._file.close()


def read_recording(path: Path) -> tuple[Json, Iterator[Json]]:
    """(header, the following lines)."""
    try:
        stream = gzip.open(path, "rt", encoding="utf-8")  # noqa: SIM115  # read lazily by the caller
        header = json.loads(stream.readline())
    except FileNotFoundError:
        raise OomguardError(f"{path}: no such file", "give a file written by `oomguard record -o FILE`") from None
    except (OSError, ValueError) as exc:
        raise OomguardError(f"{path}: not an oomguard recording ({exc})",
                            "give a file written by `oomguard record -o FILE`") from None
    if header.get("format") != FORMAT or header.get("version") not in READABLE_VERSIONS:
        raise OomguardError(f"{path}: not an oomguard recording (versions {READABLE_VERSIONS})",
                            "record it again with this version of oomguard")
    return header, (json.loads(line) for line in stream)


def replay(path: Path, config: Config, out: TextIO) -> AlertEngine:
    """Run the alert engine over a recording with its own clock; print each message as it would be sent."""
    header, lines = read_recording(path)
    counter = itertools.count(1)
    engine = AlertEngine(config, host=header["host"], new_id=lambda: f"replay-{next(counter):04d}",
                         wall_clock=lambda: 0.0)
    detector = CgroupDetector.for_policy(config)
    workloads = WorkloadMemory()  # learnt afresh from the recording's own instances
    start = None
    for line in lines:
        now = line["t"]
        start = now if start is None else start
        if "kill" in line:
            outcome = engine.kill(kill_from_json(line["kill"]), now)
            detector.restart(outcome.killed_in)
            workloads.killed(outcome.killed_in)
            messages: list[Message] = [outcome.message]
        else:
            subjects = line.get("subjects") or line.get("observations") or []
            seen = [subject_from_json(s) for s in subjects]
            verdicts, _ = judged(workloads, detector, seen, config.alerts.headroom_floor, now, wall=now)
            messages = engine.observe(seen, verdicts, now)
        for message in messages:
            print(f"+{now - start:7.1f}s ALERT {message.kind} {message.alert_id}: {message.title}", file=out)
    tallies = engine.book.tallies
    print(f"kills foreseen {tallies.foreseen}, unforeseen {tallies.unforeseen}, cleared as the climb stopped "
          f"{tallies.stopped}, false alarms {tallies.false_alarms}; {tallies.lead_time_summary()}", file=out)
    return engine
