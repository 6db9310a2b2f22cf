"""The kernel log's OOM kill lines (/dev/kmsg): the second source for kills, with the cgroup whose limit was hit."""

from __future__ import annotations

import errno
import os
import re
from dataclasses import dataclass

from ..text import from_kernel

_OOM_KILL = re.compile(r"oom-kill:(?P<fields>.*)$")


@dataclass(frozen=True)
class KernelOomRecord:
    """One `oom-kill:constraint=...` line."""

    monotonic_us: int  # the record's timestamp, microseconds since boot (CLOCK_MONOTONIC)
    constraint: str  # CONSTRAINT_MEMCG (a cgroup limit), CONSTRAINT_NONE (the whole machine), ...
    oom_memcg: str | None  # the cgroup whose limit was hit (memcg OOMs)
    task_memcg: str | None  # the victim's cgroup
    task: str
    pid: int
    uid: int | None


def parse_record(record: str) -> KernelOomRecord | None:
    """A /dev/kmsg record ("prio,seq,usec,flags;message") if it is an oom-kill line, else None."""
    header, _, message = record.partition(";")
    match = _OOM_KILL.search(message.strip())
    head = header.split(",")
    if not match or len(head) < 3 or not head[2].isdigit():
        return None
    fields = _fields(match.group("fields"))
    if "pid" not in fields or not fields["pid"].isdigit():
        return None
    return KernelOomRecord(
        monotonic_us=int(head[2]),
        constraint=fields.get("constraint", ""),
        oom_memcg=fields.get("oom_memcg"),
        task_memcg=fields.get("task_memcg"),
        task=fields.get("task", ""),
        pid=int(fields["pid"]),
        uid=int(fields["uid"]) if fields.get("uid", "").isdigit() else None,
    )


def _fields(text: str) -> dict[str, str]:
    """key=value pairs split on the commas before each known key (cgroup paths may hold commas)."""
    keys = ("constraint", "nodemask", "cpuset", "mems_allowed", "oom_memcg", "task_memcg", "task", "pid", "uid")
    pattern = re.compile(r"(?:^|,)(" + "|".join(keys) + r")=")
    marks = list(pattern.finditer(text))
    out = {}
    for this, following in zip(marks, [*marks[1:], None], strict=False):
        out[this.group(1)] = text[this.end(): following.start() if following else len(text)]
    return out


def records_in_log(path: str = "/dev/kmsg", limit: int = 100_000) -> list[KernelOomRecord]:
    """Every oom-kill line still in the kernel's log buffer (from its oldest record): after a restart, the
    kills that happened while the daemon was not reading. [] if the log cannot be read."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError:
        return []
    records: list[KernelOomRecord] = []
    try:
        for _ in range(limit):  # bounded: a log written faster than it is read never ends
            try:
                raw = os.read(fd, 8192)
            except BlockingIOError:
                break
            except OSError as exc:
                if exc.errno == errno.EPIPE:  # overwritten while reading: the next one follows
                    continue
                break
            if not raw:
                break
            record = parse_record(from_kernel(raw))
            if record:
                records.append(record)
    finally:
        os.close(fd)
    return records


class KmsgReader:
    """Non-blocking reader of /dev/kmsg from now on (history is skipped)."""

    def __init__(self, path: str = "/dev/kmsg"):
        self._fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        os.lseek(self._fd, 0, os.SEEK_END)

    def read(self) -> list[KernelOomRecord]:
        records: list[KernelOomRecord] = []
        while True:
            try:
                raw = os.read(self._fd, 8192)
            except BlockingIOError:
                return records
            except OSError as exc:
                if exc.errno == errno.EPIPE:  # records overwritten before we read them: go on
                    continue
                raise
            if not raw:
                return records
            record = parse_record(from_kernel(raw))
            if record:
                records.append(record)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
