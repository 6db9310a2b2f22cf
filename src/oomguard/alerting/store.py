"""The alert book on disk ([state] dir/alerts.json): open alerts and tallies survive a restart."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from ..files import atomic_write, read_own_file, set_aside
from .lifecycle import AlertBook, Closed

log = logging.getLogger("oomguard")
ALERTS_FILE = "alerts.json"


def save(book: AlertBook, path: Path) -> None:
    atomic_write(path, json.dumps(book.state()))


def boot_id(path: Path = Path("/proc/sys/kernel/random/boot_id")) -> str:
    """This boot's id: alert times are on the monotonic clock, which restarts at each boot."""
    try:
        return path.read_text().strip()
    except OSError:
        return ""


def load(book: AlertBook, path: Path) -> list[Closed]:
    """Resume tallies and open alerts; a missing file is a first start, a corrupt one is moved aside.

    Returns the alerts that were open on an earlier boot, now closed.
    """
    try:
        return book.restore(json.loads(read_own_file(path)))
    except FileNotFoundError:
        return []
    except (OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
        moved = set_aside(path, f"corrupt-{time.strftime('%Y%m%dT%H%M%S')}")
        log.error("%s unreadable (%s): %s; starting with no open alerts and zero tallies; fix: nothing needed, "
                  "inspect the moved file if the tallies matter", path, exc, moved)
        return []
