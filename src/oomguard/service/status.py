"""The running daemon's state on disk ([state] dir/status.json), read by `oomguard status`.

Written atomically (temporary file, then rename) once per tick, so a reader
never sees half a file.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from ..errors import OomguardError
from ..files import atomic_write
from ..units import format_bytes
from ..views.table import ProcessRow, format_rows

STATUS_FILE = "status.json"
Status = dict[str, Any]


def write_status(state_dir: Path, status: Status) -> None:
    atomic_write(state_dir / STATUS_FILE, json.dumps(status, indent=1))


def read_status(state_dir: Path) -> Status:
    path = state_dir / STATUS_FILE
    try:
        status: Status = json.loads(path.read_text())
        return status
    except FileNotFoundError:
        raise OomguardError(f"{path} not found: the daemon is not running or uses another [state] dir",
                            "start it (systemctl start oomguard) or pass the policy it runs with: -c FILE") from None
    except (OSError, ValueError) as exc:
        raise OomguardError(f"{path} unreadable: {exc}", "run as root; if it persists, restart the daemon") from None


def is_alive(status: Status, now: float | None = None) -> bool:
    """The daemon wrote within three intervals and its process exists."""
    now = time.time() if now is None else now
    fresh = now - status.get("updated", 0) <= 3 * status.get("interval_s", 1) + 1
    try:
        os.kill(int(status.get("pid", 0)), 0)
        exists = True
    except (ProcessLookupError, ValueError):
        exists = False
    except PermissionError:
        exists = True
    return bool(fresh and exists and status.get("pid", 0) > 0)


def format_status(status: Status, now: float | None = None) -> str:
    now = time.time() if now is None else now
    alive = is_alive(status, now)
    lines = [
        (f"oomguard {'running' if alive else 'NOT running (stale state)'}: pid {status['pid']}, "
        f"up {now - status['started']:.0f}s, last tick {now - status['updated']:.1f}s ago, policy {status['policy']}"),
        (f"sample rate: kmalloc 1-in-{status['sample_rates'][0]}, page 1-in-{status['sample_rates'][1]}; "
        f"events/s: kmalloc {status['events_per_s'][0]:,.0f}, page {status['events_per_s'][1]:,.0f}; "
        f"ring-buffer drops {status['ringbuf_drops']}"),
        f"processes tracked: {status['processes']}; OOM kills seen: {status['kills_seen']}",
    ]
    tallies = status.get("tallies", {})
    lines.append(f"alerts: {len(status.get('open_alerts', []))} open, {status.get('undelivered', 0)} undelivered; "
                 f"kills foreseen {tallies.get('foreseen', 0)}, unforeseen {tallies.get('unforeseen', 0)}, "
                 f"false alarms {tallies.get('false_alarms', 0)}; {tallies.get('summary', 'no lead times yet')}")
    own = status.get("self")
    if own:
        lines.append(f"daemon itself: RSS {format_bytes(own['rss_bytes'])} (anonymous "
                     f"{format_bytes(own['rss_anon_bytes'])}, peak {format_bytes(own['peak_rss_bytes'])}), "
                     f"{own['threads']:.0f} threads, CPU {own['cpu_s']:.1f}s since start; last tick "
                     f"{status.get('tick_s', 0) * 1000:.1f} ms")
    for alert in status.get("open_alerts", []):
        lines.append(f"  open {alert['id']} for {alert['age_s']:.0f}s: {alert['title']}")
    if status.get("top"):
        lines += format_rows([ProcessRow(**row) for row in status["top"]])
    return "\n".join(lines)
