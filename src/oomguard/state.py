"""The running daemon's state on disk ([state] dir/status.json), read by `oomguard status`.

Written atomically (temporary file, then rename) once per tick, so a reader
never sees half a file.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

from .errors import OomguardError

STATUS_FILE = "status.json"


def write_status(state_dir: Path, status: dict) -> None:
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, temporary = tempfile.mkstemp(dir=state_dir, prefix=".status-", suffix=".json")
    try:
        with os.fdopen(fd, "w") as out:
            json.dump(status, out, indent=1)
        os.replace(temporary, state_dir / STATUS_FILE)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def read_status(state_dir: Path) -> dict:
    path = state_dir / STATUS_FILE
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise OomguardError(f"{path} not found: the daemon is not running or uses another [state] dir",
                            "start it (systemctl start oomguard) or pass the policy it runs with: -c FILE") from None
    except (OSError, ValueError) as exc:
        raise OomguardError(f"{path} unreadable: {exc}", "run as root; if it persists, restart the daemon") from None


def is_alive(status: dict, now: float | None = None) -> bool:
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
    return fresh and exists and status.get("pid", 0) > 0


def format_status(status: dict, now: float | None = None) -> str:
    now = time.time() if now is None else now
    alive = is_alive(status, now)
    lines = [
        f"oomguard {'running' if alive else 'NOT running (stale state)'}: pid {status['pid']}, "
        f"up {now - status['started']:.0f}s, last tick {now - status['updated']:.1f}s ago, policy {status['policy']}",
        f"sample rate: kmalloc 1-in-{status['sample_rates'][0]}, page 1-in-{status['sample_rates'][1]}; "
        f"events/s: kmalloc {status['events_per_s'][0]:,.0f}, page {status['events_per_s'][1]:,.0f}; "
        f"ring-buffer drops {status['ringbuf_drops']}",
        f"processes tracked: {status['processes']}; OOM kills seen: {status['kills_seen']}",
    ]
    tallies = status.get("tallies", {})
    lines.append(f"alerts: {len(status.get('open_alerts', []))} open, {status.get('undelivered', 0)} undelivered; "
                 f"kills foreseen {tallies.get('foreseen', 0)}, unforeseen {tallies.get('unforeseen', 0)}, "
                 f"false alarms {tallies.get('false_alarms', 0)}; {tallies.get('summary', 'no lead times yet')}")
    for alert in status.get("open_alerts", []):
        lines.append(f"  open {alert['id']} for {alert['age_s']:.0f}s: {alert['title']}")
    if status.get("top"):
        lines.append(f"{'PID':>8} {'COMMAND':<16} {'KMALLOC/s':>12} {'PAGES/s':>12} {'RSS':>12}  OWNER")
        for row in status["top"]:
            lines.append(f"{row['pid']:>8} {row['command'][:16]:<16} {row['kmalloc_bytes_per_s']:>12,.0f} "
                         f"{row['page_bytes_per_s']:>12,.0f} {row['rss_bytes']:>12,}  {row['owner']}")
    return "\n".join(lines)
