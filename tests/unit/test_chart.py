"""Alert charts: the numbers gathered in the daemon, the picture drawn by matplotlib in a child process."""

from __future__ import annotations

import io
import json
import os
import sys
import time

import numpy as np
from PIL import Image

from oomguard.alerting.chart import CHART_ROOM, DECORATE_WITHIN_S, MAX_POINTS, ChartFiles, Renderer, chart_data

MIB = 1 << 20


def leak_data(**kwargs):
    times = np.arange(0.0, 600.0, 0.5) + 5000.0  # ten minutes at 2 samples/s
    usage = 20 * MIB + 0.15 * MIB * (times - 5000.0)
    return chart_data(times, usage, times[-1], 128 * MIB, "pre-OOM critical on n1: OOM in ~28s: cgroup /a/b",
                      "/a/b", **kwargs)


def test_the_numbers_are_few_relative_and_end_at_the_alert():
    data = leak_data(eta_s=28.0, eta_interval=(22.0, 35.0))
    assert len(data["seconds"]) == len(data["usage"]) <= MAX_POINTS
    assert data["seconds"][-1] == 0.0 and data["seconds"][0] == -599.5  # first and last samples kept
    assert data["usage"][-1] == int(20 * MIB + 0.15 * MIB * 599.5)
    assert data["limit"] == 128 * MIB and data["eta_interval"] == [22.0, 35.0] and not data["killed"]
    assert len(json.dumps(data)) < 12_000  # it travels in the spooled message


def test_a_chart_is_drawn_once_in_a_child_as_a_png_naming_its_cgroup(tmp_path):
    charts = ChartFiles(tmp_path / "charts", clock=lambda: 0.0)  # every deadline far ahead
    message = {"alert_id": "a1", "kind": "pre-OOM", "decided_at": 101.5,
               "chart": leak_data(eta_s=28.0, eta_interval=(22.0, 35.0))}
    (path,) = charts.for_message(message)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    image = Image.open(io.BytesIO(path.read_bytes()))
    assert image.size == (800, 360) and image.info["Description"] == "/a/b"
    assert image.info["Title"].startswith("pre-OOM critical on n1")
    pixels = np.asarray(image.convert("RGB"))
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 20  # lines and text, not a blank image
    drawn_at = os.stat(path).st_mtime_ns
    assert charts.for_message(message) == [path] and os.stat(path).st_mtime_ns == drawn_at  # not redrawn
    charts.stop()


def test_a_kill_chart_and_no_chart_and_a_failed_drawing(tmp_path, caplog):
    charts = ChartFiles(tmp_path / "charts", clock=lambda: 0.0)
    killed = {"alert_id": "a1", "kind": "confirmed", "decided_at": 102.0, "chart": leak_data(killed=True)}
    assert len(charts.for_message(killed)) == 1
    assert charts.for_message({"alert_id": "a2", "kind": "cleared", "chart": None}) == []
    broken = {"alert_id": "a3", "kind": "pre-OOM", "decided_at": 103.0, "chart": {"who": "x"}}  # no numbers
    assert charts.for_message(broken) == []
    assert "alert chart not drawn" in caplog.text and "[alerts] chart = false" in caplog.text
    charts.stop()


def test_no_chart_when_the_daemons_cgroup_lacks_room(tmp_path, caplog):
    message = {"alert_id": "a1", "kind": "pre-OOM", "decided_at": 101.0, "chart": leak_data()}
    assert charts_with_room(tmp_path, CHART_ROOM - 1).for_message(message) == []
    assert "less than 160 MiB free" in caplog.text and not list(tmp_path.glob("*.png"))
    roomy = charts_with_room(tmp_path, CHART_ROOM)
    assert len(roomy.for_message(message)) == 1
    roomy.stop()


def charts_with_room(directory, free):
    return ChartFiles(directory, Renderer(free_bytes=lambda: free), clock=lambda: 0.0)


def test_a_message_waits_for_its_chart_only_until_its_deadline_and_the_chart_follows(tmp_path):
    # a renderer that takes 3 s to start (a starved node): the message goes without it at the deadline
    slow = [sys.executable, "-c", ("import time, runpy; time.sleep(3); "
                                   "runpy.run_module('oomguard.alerting.chart', run_name='__main__')")]
    charts = ChartFiles(tmp_path, Renderer(command=slow))
    message = {"alert_id": "a1", "kind": "pre-OOM", "decided_at": time.time(), "chart": leak_data()}
    assert charts.for_message(message) == []
    assert time.time() - message["decided_at"] < DECORATE_WITHIN_S + 0.3
    future = charts.draw(message)  # the same drawing, still going: not a second one
    assert future is not None and future.result(timeout=30) == charts.path_for(message)
    assert charts.path_for(message).read_bytes()[:4] == b"\x89PNG"
    # the alert's next message (its confirmation) carries the chart that missed the warning, and its own
    confirmed = {"alert_id": "a1", "kind": "confirmed", "decided_at": time.time() + 30, "chart": leak_data()}
    assert charts.for_message(confirmed) == [charts.path_for(message), charts.path_for(confirmed)]
    assert charts.for_message({"alert_id": "a2", "kind": "pre-OOM", "decided_at": 0.0, "chart": None}) == []
    charts.stop()


def test_a_warm_renderer_draws_within_the_deadline_and_goes_a_while_after_the_last_climb(tmp_path):
    charts = ChartFiles(tmp_path)
    charts.warm(True, 0.0)  # something climbs: matplotlib is imported before any alert
    deadline = time.monotonic() + 30
    while not charts.renderer.helper.running and time.monotonic() < deadline:
        time.sleep(0.05)
    charts.draw({"alert_id": "w0", "kind": "pre-OOM", "decided_at": 1.0, "chart": leak_data()}).result(30)
    message = {"alert_id": "a1", "kind": "pre-OOM", "decided_at": time.time(), "chart": leak_data()}
    assert charts.for_message(message) == [charts.path_for(message)]  # drawn within DECORATE_WITHIN_S
    charts.warm(False, 100.0)
    charts.warm(False, 130.0)
    assert charts.renderer.helper.running  # kept warm for a kill's chart
    charts.warm(False, 161.0)
    deadline = time.monotonic() + 10
    while charts.renderer.helper.running and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not charts.renderer.helper.running
    charts.stop()
