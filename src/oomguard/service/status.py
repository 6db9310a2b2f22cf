"""The running daemon's state on disk ([state] dir/status.json), read by `oomguard status`.

Written atomically (temporary file, then rename) once per tick, so a reader
never sees half a file.
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any

from ..config import NO_RECEIVERS, NO_RECEIVERS_FIX
from ..errors import OomguardError
from ..files import atomic_write, directory_problem, read_own_file
from ..text import printable
from ..units import format_bytes
from ..views.table import ProcessRow, format_rows

STATUS_FILE = "status.json"
Status = dict[str, Any]


def write_status(state_dir: Path, status: Status) -> None:
    atomic_write(state_dir / STATUS_FILE, json.dumps(status, indent=1))


# What `status` reads of the file, with the type each must have. Anything else in it is ignored.
_NUMBER = (int, float)
FIELDS: dict[str, tuple[type, ...]] = {
    "pid": (int,), "started": _NUMBER, "updated": _NUMBER, "interval_s": _NUMBER, "policy": (str,),
    "sample_rates": (list,), "events_per_s": (list,), "ringbuf_drops": (int,), "processes": (int,),
    "kills_seen": (int,),
}
OPTIONAL: dict[str, tuple[type, ...]] = {
    "tallies": (dict,), "open_alerts": (list,), "undelivered": (int,), "self": (dict,), "top": (list,),
    "tick_s": _NUMBER, "receivers": (list,), "ticks": (dict,), "delivery": (dict,), "workloads": (dict,),
}
CLOCK_SKEW_S = 60.0  # a status stamped further in the future than this was not written by this host's daemon


def read_status(state_dir: Path) -> Status:
    """The daemon's status, checked: a state dir the daemon would refuse, a file it did not write, or one of
    the wrong shape is an OomguardError naming the cause and the fix, never a traceback."""
    check_state_dir(state_dir)
    path = state_dir / STATUS_FILE
    wrong: str
    try:
        data = json.loads(read_own_file(path), parse_constant=_refuse_constant)
    except FileNotFoundError:
        raise OomguardError(f"{path} not found: the daemon is not running or uses another [state] dir",
                            "start it (systemctl start oomguard) or pass the policy it runs with: -c FILE") from None
    except OSError as exc:
        raise OomguardError(f"{path} unreadable: {exc}", "run as root; if it persists, restart the daemon") from None
    except ValueError as exc:
        data, wrong = None, f"not JSON: {exc}"
    else:
        wrong = shape_problem(data, time.time()) or ""
    if wrong:
        raise OomguardError(f"{path} is not a status the daemon writes ({wrong})",
                            "restart the daemon (systemctl restart oomguard): it rewrites the file every tick")
    status: Status = data
    return status


def check_state_dir(state_dir: Path) -> None:
    """An OomguardError if the daemon would refuse this state dir: nothing read from it could be trusted (a
    missing one is left to the file's read)."""
    try:
        problem = directory_problem(os.lstat(state_dir))
    except FileNotFoundError:
        return
    except OSError as exc:
        problem = f"cannot be looked at ({exc.strerror})"
    if problem:
        raise OomguardError(f"[state] dir {state_dir} {problem}: its files are not trusted",
                            f"give it to root alone (chown root: {state_dir} && chmod 700 {state_dir}) and "
                            "restart the daemon")


def _refuse_constant(name: str) -> float:
    raise ValueError(f"{name} is not a number the daemon writes")


def _sane(value: Any) -> bool:
    return isinstance(value, _NUMBER) and not isinstance(value, bool) and math.isfinite(value) and value >= 0


def shape_problem(data: Any, now: float) -> str | None:
    """What is wrong with a parsed status file, or None: every field `status` reads, of its type, finite,
    non-negative, and times that a running daemon on this host could have written."""
    if not isinstance(data, dict):
        return f"a JSON {type(data).__name__}, not an object"
    for name, kinds in FIELDS.items():
        if name not in data:
            return f"no {name!r}"
        if not isinstance(data[name], kinds) or isinstance(data[name], bool):
            return f"{name!r} is {type(data[name]).__name__}, not {kinds[0].__name__}"
    for name, kinds in OPTIONAL.items():
        if name in data and not isinstance(data[name], kinds):
            return f"{name!r} is {type(data[name]).__name__}, not {kinds[0].__name__}"
    numbers = [data[n] for n in ("pid", "started", "updated", "interval_s", "ringbuf_drops", "processes",
                                 "kills_seen")]
    pairs = data["sample_rates"] + data["events_per_s"]
    if len(data["sample_rates"]) != 2 or len(data["events_per_s"]) != 2 or not all(map(_sane, numbers + pairs)):
        return "a count or time that is not a finite, non-negative number"
    if data["pid"] < 1 or data["interval_s"] <= 0 or data["updated"] < data["started"]:
        return "pid, interval or times out of range"
    if data["updated"] > now + CLOCK_SKEW_S:
        return f"written {data['updated'] - now:.0f}s in the future"
    return None


def running_daemon(state_dir: Path) -> Status | None:
    """The status of the daemon running on this state dir, None when none is (for `top` as its client)."""
    try:
        status = read_status(state_dir)
    except OomguardError:
        return None
    return status if is_alive(status) else None


def is_alive(status: Status, now: float | None = None) -> bool:
    """The daemon wrote within three intervals and its process exists."""
    now = time.time() if now is None else now
    fresh = -CLOCK_SKEW_S <= now - status["updated"] <= 3 * status["interval_s"] + 1
    try:
        os.kill(int(status["pid"]), 0)
        exists = True
    except (ProcessLookupError, ValueError, OverflowError):
        exists = False
    except PermissionError:
        exists = True
    return bool(fresh and exists and status["pid"] > 0)


def format_status(status: Status, now: float | None = None) -> str:
    """The status as a person reads it; a part of the file of the wrong shape is said, never a traceback."""
    now = time.time() if now is None else now
    alive = is_alive(status, now)
    lines = [
        (f"oomguard {'running' if alive else 'NOT running (stale state)'}: pid {status['pid']}, "
         f"up {now - status['started']:.0f}s, last tick {now - status['updated']:.1f}s ago, "
         f"policy {printable(status['policy'])}"),
        (f"sample rate: kmalloc 1-in-{status['sample_rates'][0]}, page 1-in-{status['sample_rates'][1]}; "
         f"events/s: kmalloc {status['events_per_s'][0]:,.0f}, page {status['events_per_s'][1]:,.0f}; "
         f"ring-buffer drops {status['ringbuf_drops']}"),
        f"processes tracked: {status['processes']}; OOM kills seen: {status['kills_seen']}",
    ]
    for name, part in (("receivers", _receivers_line), ("tallies", _alerts_line), ("delivery", _delivery_line),
                       ("ticks", _ticks_line), ("workloads", _workloads_line), ("self", _self_line),
                       ("open_alerts", _open_lines), ("top", _top_lines)):
        try:
            lines += part(status)
        except (KeyError, TypeError, ValueError, AttributeError, IndexError):
            lines.append(f"({name!r} in the status file is not of the shape the daemon writes: not shown)")
    return "\n".join(lines)


def _receivers_line(status: Status) -> list[str]:
    if "receivers" not in status:
        return []
    if not status["receivers"]:
        return [f"{NO_RECEIVERS}; fix: {NO_RECEIVERS_FIX}"]
    return [f"receivers: {', '.join(printable(str(r)) for r in status['receivers'])}"]


def _alerts_line(status: Status) -> list[str]:
    tallies = status.get("tallies", {})
    return [(f"alerts: {len(status.get('open_alerts', []))} open, {int(status.get('undelivered', 0))} undelivered; "
            f"kills foreseen {int(tallies.get('foreseen', 0))}, unforeseen {int(tallies.get('unforeseen', 0))}, "
            f"cleared as the climb stopped {int(tallies.get('stopped', 0))}, "
            f"false alarms {int(tallies.get('false_alarms', 0))}; "
            f"{printable(str(tallies.get('summary', 'no lead times yet')))}")]


def _delivery_line(status: Status) -> list[str]:
    delivery = status.get("delivery")
    if not delivery or not delivery.get("delivered"):
        return []
    return [(f"delivery: {int(delivery['delivered'])} messages delivered; from decision to receiver: latest "
             f"{float(delivery['latest_s']):.2f}s, slowest {float(delivery['slowest_s']):.2f}s")]


def _ticks_line(status: Status) -> list[str]:
    """Whether the loop kept its pace: between two ticks no cgroup is watched."""
    ticks = status.get("ticks")
    if not ticks:
        return []
    line = (f"ticks: {int(ticks['late'])} of {int(ticks['count'])} late (most {float(ticks['late_max_s']):.2f}s); "
            f"widest gap between two {float(ticks['gap_max_s']):.2f}s (interval {float(ticks['interval_s']):g}s)")
    last = ticks.get("last_late")
    if last:
        line += (f"\n  last late tick: {time.strftime('%H:%M:%S', time.localtime(float(last['at'])))}, "
                 f"{float(last['by_s']):.2f}s late: {printable(str(last['why']))}")
    return [line]


def _workloads_line(status: Status) -> list[str]:
    known = status.get("workloads")
    if not known:
        return []
    return [(f"workloads: {int(known['learnt'])} learnt from earlier instances, {int(known['live'])} instances "
             f"watched; {int(known['withheld'])} verdicts withheld as what earlier instances did")]


def _self_line(status: Status) -> list[str]:
    own = status.get("self")
    if not own:
        return []
    return [(f"daemon itself: RSS {format_bytes(own['rss_bytes'])} (anonymous "
            f"{format_bytes(own['rss_anon_bytes'])}, peak {format_bytes(own['peak_rss_bytes'])}), "
            f"{own['threads']:.0f} threads, CPU {own['cpu_s']:.1f}s since start; last tick "
            f"{status.get('tick_s', 0) * 1000:.1f} ms")]


def _open_lines(status: Status) -> list[str]:
    return [f"  open {printable(str(a['id']))} for {float(a['age_s']):.0f}s: {printable(str(a['title']))}"
            for a in status.get("open_alerts", [])]


def _top_lines(status: Status) -> list[str]:
    return format_rows([ProcessRow(**row) for row in status["top"]]) if status.get("top") else []
