"""A picture of a cgroup's memory for an alert: working set, limit, forecast line, the kill.

The daemon only gathers the numbers (`chart_data`, pure, a few kilobytes of
JSON carried by the message). Drawing needs matplotlib (a child peaks at ~70
MiB here, a second of imports), so it runs in a helper child (`Renderer`,
`python -m oomguard.alerting.chart`), started when something climbs
and stopped a minute after nothing does, so the daemon's own footprint does
not grow and a chart is ready within its message's deadline. A chart is a
luxury: the message never waits for it past DECORATE_WITHIN_S; it is skipped
when the daemon's own memory cgroup has less than CHART_ROOM free (alerting
must never need memory the steady daemon does not have); the child runs at
nice 19 and volunteers as the OOM killer's first choice.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import CancelledError, Future, TimeoutError
from pathlib import Path
from typing import IO, Any

import numpy as np

from ..files import own_directory
from ..helper import Helper, HelperFailed, Worker, lower_priority
from ..identity.cgroup import own_free_bytes

log = logging.getLogger("oomguard")
MAX_POINTS = 400  # enough for a 1,000-pixel-wide line; keeps the spooled message small
RENDER_TIMEOUT_S = 20.0  # a drawing (or the renderer's start) abandoned after this: the child is killed
# A message waits for its chart this long after the tick (or kill) that decided it, then goes without: the
# warning first. A warm renderer draws in ~0.1-0.2 s here; a cold start imports matplotlib (~1 s).
DECORATE_WITHIN_S = 0.5
KEEP_WARM_S = 60.0  # the renderer stays this long after the last climb or open alert (a kill's chart comes later)
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



def not_drawn(exc: Exception) -> None:
    log.warning("alert chart not drawn (%s): the message is sent without it; fix: install matplotlib (`make "
                "install` does) and keep [state] dir writable, or set [alerts] chart = false", exc)


class Renderer:
    """The drawing child, kept warm (matplotlib imported) while something climbs, so a chart is ready within
    an alert's decoration deadline; blocking: called from ChartFiles' worker thread only."""

    def __init__(self, free_bytes: Callable[[], int | None] = own_free_bytes, timeout_s: float = RENDER_TIMEOUT_S,
                 command: list[str] | None = None):
        self.free_bytes = free_bytes
        self.helper = Helper(command or [sys.executable, "-m", "oomguard.alerting.chart"], timeout_s,
                             "chart renderer")

    def start(self) -> bool:
        """The child running and warm; False (logged) without room for it or if it would not start."""
        if self.helper.running:
            return True
        free = self.free_bytes()
        if free is not None and free < CHART_ROOM:
            log.warning("alert chart not drawn: the daemon's memory cgroup has less than %d MiB free; the "
                        "message is sent without it", CHART_ROOM >> 20)
            return False
        try:
            self.helper.ask({"warm": True})
        except HelperFailed as exc:
            not_drawn(exc)
            return False
        return True

    def draw(self, data: dict[str, Any], out: Path) -> Path | None:
        """Draw `data` into `out`; None (logged) on failure."""
        if not self.start():
            return None
        try:
            self.helper.ask({"data": data, "out": str(out)})
        except HelperFailed as exc:
            not_drawn(exc)
            return None
        return out if out.exists() else None

    def close(self) -> None:
        self.helper.close()


class ChartFiles:
    """One PNG per message, drawn in a worker thread as soon as the message is made; a sender waits for it
    only until the message's decoration deadline (DECORATE_WITHIN_S after its decision), then sends without
    it: the text never waits for its picture, and a chart that missed its message follows with the next
    message of the same alert. Files older than a day go."""

    MAX_AGE_S = 24 * 3600.0

    def __init__(self, directory: Path, renderer: Renderer | None = None, clock: Callable[[], float] = time.time):
        self.directory, self.clock = directory, clock
        self.renderer = renderer or Renderer()
        self._worker = Worker("charts")
        self._lock = threading.Lock()
        self._drawing: dict[Path, Future[Path | None]] = {}
        self._cold_since: float | None = None
        self._warm = False  # a start asked for since the last close
        self._missed: dict[str, set[Path]] = {}  # alert id -> charts that missed their message

    def path_for(self, message: dict[str, Any]) -> Path:
        stamp = int(float(message.get("decided_at") or message.get("spooled_at", 0.0)) * 1000)
        return self.directory / f"{message['alert_id']}-{message['kind']}-{stamp}.png"

    def draw(self, message: dict[str, Any]) -> Future[Path | None] | None:
        """Start drawing the message's chart (once, however many receivers ask); None without one."""
        data = message.get("chart")
        if not data:
            return None
        path = self.path_for(message)
        with self._lock:
            future = self._drawing.get(path)
            if future is None:
                if len(self._drawing) > 64:  # only the drawings of messages still being sent matter
                    self._drawing = {p: f for p, f in self._drawing.items() if not f.done()}
                future = self._drawing[path] = self._worker.submit(self._draw, data, path)
        return future

    def for_message(self, message: dict[str, Any]) -> list[Path]:
        """The charts the message carries: its own if drawn by its decoration deadline (else it is still
        drawn, and follows), and those of this alert's earlier messages that missed theirs and are drawn now."""
        alert_id = str(message.get("alert_id"))
        with self._lock:
            earlier = sorted(p for p in self._missed.get(alert_id, ()) if p.exists())
        future = self.draw(message)
        if future is None:
            return earlier
        decided = float(message.get("decided_at") or message.get("spooled_at") or 0.0)
        try:
            own = future.result(timeout=max(0.0, decided + DECORATE_WITHIN_S - self.clock()))
        except TimeoutError:
            log.info("alert %s: its chart was not drawn within %.1fs of the decision: the message goes without "
                     "it, the chart follows with the alert's next message", alert_id, DECORATE_WITHIN_S)
            with self._lock:
                if len(self._missed) > 256:
                    self._missed.clear()
                self._missed.setdefault(alert_id, set()).add(self.path_for(message))
            return earlier
        except CancelledError:
            return earlier
        return [*earlier, own] if own and own not in earlier else earlier

    def warm(self, wanted: bool, now: float) -> None:
        """From the tick: keep the renderer warm while something climbs; let it go KEEP_WARM_S after."""
        if wanted:
            self._cold_since = None
            if not self._warm:  # once: a start that fails (no room) is not retried, nor logged, every tick
                self._warm = True
                self._worker.submit(self.renderer.start)
        elif self._cold_since is None:
            self._cold_since = now
        elif self._warm and now - self._cold_since >= KEEP_WARM_S:
            self._warm = False
            self._worker.submit(self.renderer.close)

    def stop(self) -> None:
        """At exit: end a drawing in flight now, drop the queued ones."""
        self.renderer.helper.interrupt()
        self._worker.stop()

    def _draw(self, data: dict[str, Any], path: Path) -> Path | None:
        if path.exists():
            return path
        try:
            own_directory(self.directory)
            self._prune()
        except OSError as exc:
            log.warning("alert chart not drawn: %s (%s): the message is sent without it", self.directory,
                        exc.strerror)
            return None
        return self.renderer.draw(data, path)

    def _prune(self) -> None:
        cutoff = time.time() - self.MAX_AGE_S
        for old in self.directory.glob("*.png"):
            if old.stat().st_mtime < cutoff:
                old.unlink(missing_ok=True)


def serve(requests: IO[str], answers: IO[str]) -> None:
    """The child: matplotlib imported once, then one chart per request line until stdin closes."""
    import matplotlib

    matplotlib.use("Agg")  # no display: files only
    import matplotlib.pyplot  # the slow import, done before the first alert needs it

    for line in requests:
        try:
            request = json.loads(line)
            if "data" in request:
                render(request["data"], Path(request["out"]))
            answer: dict[str, Any] = {"ok": True}
        except Exception as exc:  # one bad chart must not end the child: say what, go on  # noqa: BLE001
            answer = {"error": f"{type(exc).__name__}: {exc}"}
        answers.write(json.dumps(answer) + "\n")
        answers.flush()


def main() -> None:
    """The child: last in line for the CPU, first for the OOM killer; answers on a copy of stdout, while
    anything a library prints goes to the daemon's log (fd 1 now points at stderr)."""
    lower_priority(19)  # a luxury: whatever CPU the rest leaves
    answers = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    serve(sys.stdin, answers)


if __name__ == "__main__":
    main()
