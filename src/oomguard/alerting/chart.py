"""A picture of a cgroup's memory for an alert: working set, limit, forecast line, the kill.

The daemon only gathers the numbers (`chart_data`, pure, a few kilobytes of
JSON carried by the message). Drawing needs matplotlib (a child peaks at ~70
MiB here, a second of imports), so it runs in a short-lived child process
(`render_in_child`, from the sender thread, never the tick), and the
daemon's own footprint does not grow: `python -m oomguard.alerting.chart
OUT.png < DATA.json`. A chart is a luxury: it is skipped when the daemon's
own memory cgroup has less than CHART_ROOM free (alerting must never need
memory the steady daemon does not have), and the child volunteers as the
OOM killer's first choice (oom_score_adj 1000).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..files import own_directory
from ..identity.cgroup import own_free_bytes

log = logging.getLogger("oomguard")
MAX_POINTS = 400  # enough for a 1,000-pixel-wide line; keeps the spooled message small
RENDER_TIMEOUT_S = 20.0
CHART_ROOM = 160 << 20  # free memory the daemon's cgroup must have to draw: twice the child's ~70 MiB peak


def chart_data(times: np.ndarray, usage: np.ndarray, now: float, limit: float, who: str, cgroup: str, *,
               eta_s: float | None = None, eta_interval: tuple[float, float] | None = None, killed: bool = False,
               wall: float = 0.0) -> dict[str, Any]:
    """What the picture shows, as JSON-ready numbers: seconds relative to `now` (the alert or the kill),
    usage in bytes (at most MAX_POINTS, evenly picked, the last always kept)."""
    if len(times) > MAX_POINTS:
        pick = np.unique(np.linspace(0, len(times) - 1, MAX_POINTS).round().astype(int))
        times, usage = times[pick], usage[pick]
    return {"who": who, "cgroup": cgroup, "seconds": [round(float(t - now), 3) for t in times],
            "usage": [int(u) for u in usage], "limit": int(limit), "eta_s": eta_s,
            "eta_interval": list(eta_interval) if eta_interval else None,
            "killed": killed, "wall": wall}


def render(data: dict[str, Any], out: Path) -> None:
    """Draw `data` (chart_data's) into a PNG at `out`. Imports matplotlib: call it in a child process."""
    import matplotlib

    matplotlib.use("Agg")  # no display: files only
    import matplotlib.pyplot as plt

    mib = float(1 << 20)
    seconds, usage = np.asarray(data["seconds"], float), np.asarray(data["usage"], float) / mib
    limit = data["limit"] / mib
    figure, axes = plt.subplots(figsize=(8, 3.6), dpi=100)
    axes.plot(seconds, usage, color="#1f77b4", linewidth=1.8, label="working set")
    axes.axhline(limit, color="#d62728", linewidth=1.2, linestyle="--", label=f"limit {limit:.0f} MiB")
    right = 0.0
    if data.get("eta_s") is not None and len(seconds):
        eta = float(data["eta_s"])
        axes.plot([seconds[-1], seconds[-1] + eta], [usage[-1], limit], color="#ff7f0e", linewidth=1.5,
                  linestyle=":", label=f"forecast: limit in {eta:.0f}s")
        right = seconds[-1] + eta
        if data.get("eta_interval"):
            early, late = (float(v) for v in data["eta_interval"])
            axes.axvspan(seconds[-1] + early, seconds[-1] + late, color="#ff7f0e", alpha=0.12,
                         label=f"forecast interval {early:.0f}-{late:.0f}s")
            right = max(right, seconds[-1] + late)
    if data.get("killed"):
        axes.axvline(0.0, color="black", linewidth=1.5, label="OOM kill")
    left = float(seconds[0]) if len(seconds) else -60.0
    axes.set_xlim(left, max(right, 0.0) + max(1.0, 0.05 * (max(right, 0.0) - left)))
    axes.set_ylim(0, limit * 1.08)
    axes.set_xlabel("seconds (0 = the kill)" if data.get("killed") else "seconds (0 = this alert)")
    axes.set_ylabel("MiB")
    cgroup = str(data.get("cgroup", ""))
    axes.set_title(str(data["who"])[:100] + "\n" + ("…" + cgroup[-99:] if len(cgroup) > 100 else cgroup),
                   fontsize=9)
    axes.grid(alpha=0.3)
    axes.legend(loc="upper left", fontsize=8)
    figure.tight_layout()
    # the cgroup in the file's own text chunk: a reader (or a test) can tell which cgroup it shows
    figure.savefig(out, format="png", metadata={"Title": str(data["who"]), "Description": str(data["cgroup"])})
    plt.close(figure)



def render_in_child(data: dict[str, Any], out: Path, timeout_s: float = RENDER_TIMEOUT_S) -> bool:
    """Render in a child process; False (logged) if it failed or took too long: the message goes without."""
    try:
        done = subprocess.run([sys.executable, "-m", "oomguard.alerting.chart", str(out)], input=json.dumps(data),
                              check=False, capture_output=True, text=True, timeout=timeout_s,
                              # its font cache beside the charts: under the unit, $HOME is not writable
                              env={**os.environ, "MPLCONFIGDIR": str(out.parent / ".matplotlib")})
    except (OSError, subprocess.TimeoutExpired) as exc:
        log.warning("alert chart not drawn (%s): the message is sent without it", exc)
        return False
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
        log.warning("alert chart not drawn (%s): the message is sent without it; fix: install matplotlib "
                    "(`make install` does) and keep [state] dir writable, or set [alerts] chart = false", last)
        return False
    return out.exists()


class ChartFiles:
    """One PNG per message, drawn by whichever sender thread needs it first; files older than a day go."""

    MAX_AGE_S = 24 * 3600.0

    def __init__(self, directory: Path, free_bytes: Callable[[], int | None] = own_free_bytes):
        self.directory, self.free_bytes = directory, free_bytes
        self._lock = threading.Lock()

    def for_message(self, message: dict[str, Any]) -> Path | None:
        """The message's chart as a file, drawn now if it is not yet; None without chart or on failure."""
        data = message.get("chart")
        if not data:
            return None
        stamp = int(float(message.get("spooled_at", 0.0)) * 1000)
        path = self.directory / f"{message['alert_id']}-{message['kind']}-{stamp}.png"
        with self._lock:  # several receivers, one drawing
            if path.exists():
                return path
            free = self.free_bytes()
            if free is not None and free < CHART_ROOM:
                log.warning("alert chart not drawn: the daemon's memory cgroup has less than %d MiB free; the "
                            "message is sent without it", CHART_ROOM >> 20)
                return None
            try:
                own_directory(self.directory)
                self._prune()
            except OSError as exc:
                log.warning("alert chart not drawn: %s (%s): the message is sent without it", self.directory,
                            exc.strerror)
                return None
            return path if render_in_child(data, path) else None

    def _prune(self) -> None:
        cutoff = time.time() - self.MAX_AGE_S
        for old in self.directory.glob("*.png"):
            if old.stat().st_mtime < cutoff:
                old.unlink(missing_ok=True)


def main(out: str) -> None:
    """The child: first in line for the OOM killer, then draw what stdin holds."""
    with contextlib.suppress(OSError):  # not Linux, or /proc read-only: draw all the same
        Path("/proc/self/oom_score_adj").write_text("1000")
    render(json.loads(sys.stdin.read()), Path(out))


if __name__ == "__main__":
    main(sys.argv[1])
