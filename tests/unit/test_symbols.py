"""The symbolizer's daemon end against real child processes that answer, die, hang or talk nonsense."""

import logging
import sys
import time

from oomguard.evidence.symbols import Symbolizer
from oomguard.helper import exchange

# A stand-in child speaking the protocol: names every address `f<address>`, the kernel's `k<address>`.
ECHO = """
import json, sys
for line in sys.stdin:
    request = json.loads(line)
    if "forget" in request:
        print(json.dumps({"forgot": len(request["forget"])}), flush=True)
        continue
    print(json.dumps({"names": [[[f"f{a}" for a in u], [f"k{a}" for a in k]] for _, u, k in request["stacks"]]}),
          flush=True)
"""


def child(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def test_names_come_back_in_order_and_the_child_goes_on_close():
    names = Symbolizer(command=child(ECHO))
    assert not names.running and names.name([]) == []  # nothing to name: no child started
    assert names.name([(7, (1, 2), (30,)), (8, (), (31, 32))]) == [(["f1", "f2"], ["k30"]), ([], ["k31", "k32"])]
    process = names.helper._child
    assert names.running and process is not None
    names.forget({7})
    assert names.running  # forgetting some processes keeps the child
    names.close()
    assert not names.running and process.returncode == 0


def test_a_child_that_dies_once_is_started_again_and_the_names_come(tmp_path):
    marker = tmp_path / "died"
    dies_once = f"""
import pathlib, sys
marker = pathlib.Path({str(marker)!r})
if not marker.exists():
    marker.write_text("x")
    sys.stdin.readline()
    sys.exit(3)
""" + ECHO
    names = Symbolizer(command=child(dies_once))
    assert names.name([(7, (1,), ())]) == [(["f1"], [])]
    assert marker.exists() and names.failure == ""
    names.close()


def test_a_child_that_keeps_dying_gives_addresses_and_says_why_once(caplog):
    names = Symbolizer(command=child("import sys; sys.stdin.readline(); sys.exit(3)"), retry_after_s=0.0)
    with caplog.at_level(logging.INFO, logger="oomguard"):
        assert names.name([(7, (0x401000, 0x10), (0xFFFF0000,))]) == [(["0x401000", "0x10"], ["0xffff0000"])]
        assert names.name([(7, (0x1,), ())]) == [(["0x1"], [])]
    assert "the symbolizer exited (3)" in names.failure
    assert caplog.text.count("stacks not named") == 1  # said once, not every tick
    assert "fix: check that" in caplog.text
    names.helper.command = child(ECHO)  # the fault cleared: names again, and the log says so
    with caplog.at_level(logging.INFO, logger="oomguard"):
        assert names.name([(7, (1,), ())]) == [(["f1"], [])]
    assert names.failure == "" and "stacks are named again" in caplog.text
    names.close()


def test_a_hung_child_is_given_up_on_after_the_timeout_and_not_retried():
    names = Symbolizer(timeout_s=0.5, command=child("import time; time.sleep(60)"))
    started = time.monotonic()
    assert names.name([(7, (1,), ())]) == [(["0x1"], [])]
    took = time.monotonic() - started
    assert 0.5 <= took < 0.95, took  # one timeout, no second attempt
    assert "did not answer in 0s" in names.failure or "did not answer in 1s" in names.failure
    assert not names.running  # the hung child was stopped


def test_after_a_hang_stacks_get_addresses_at_once_until_the_retry_time_has_passed():
    names = Symbolizer(timeout_s=0.3, command=child("import time; time.sleep(60)"), retry_after_s=1.0)
    assert names.name([(7, (1,), ())]) == [(["0x1"], [])]  # waited 0.3 s once
    names.helper.command = child(ECHO)  # the cause cleared, but it is not asked before the retry time
    started = time.monotonic()
    assert names.name([(7, (2,), ())]) == [(["0x2"], [])]
    assert time.monotonic() - started < 0.1 and not names.running  # no wait, no child started
    time.sleep(1.0)
    assert names.name([(7, (2,), ())]) == [(["f2"], [])] and names.failure == ""
    names.close()


def test_a_child_that_never_reads_cannot_block_a_large_request():
    names = Symbolizer(timeout_s=0.5, command=child("import time; time.sleep(60)"))
    huge = [(pid, tuple(range(24)), tuple(range(24))) for pid in range(4000)]  # ~1 MB: far past a pipe's buffer
    started = time.monotonic()
    assert len(names.name(huge)) == 4000
    assert time.monotonic() - started < 0.95


def test_garbage_and_errors_from_the_child_are_failures_not_names():
    garbage = Symbolizer(command=child("import sys\nfor l in sys.stdin: print('not json', flush=True)"))
    assert garbage.name([(7, (1,), ())]) == [(["0x1"], [])] and "garbage" in garbage.failure
    garbage.close()
    short = Symbolizer(command=child("import sys\nfor l in sys.stdin: print('{\"names\": []}', flush=True)"))
    assert short.name([(7, (1,), ())]) == [(["0x1"], [])] and "0 answers to 1 stacks" in short.failure
    short.close()
    failing = Symbolizer(command=child("import sys\nfor l in sys.stdin: print('{\"error\": \"boom\"}', flush=True)"))
    assert failing.name([(7, (1,), ())]) == [(["0x1"], [])] and "boom" in failing.failure
    failing.close()


def test_exchange_reads_a_line_split_over_many_writes(tmp_path):
    import os
    import subprocess

    slow = subprocess.Popen(child("import sys, time\nsys.stdin.readline()\n"
                                  "for c in 'hello world': sys.stdout.write(c); sys.stdout.flush(); time.sleep(0.01)\n"
                                  "print(flush=True)"), stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert slow.stdin is not None and slow.stdout is not None
    os.set_blocking(slow.stdin.fileno(), False)
    os.set_blocking(slow.stdout.fileno(), False)
    try:
        assert exchange(slow.stdin.fileno(), slow.stdout.fileno(), b"go\n", time.monotonic() + 5) == b"hello world"
    finally:
        slow.kill()
        slow.wait()


def test_a_stop_ends_a_naming_in_flight_at_once_and_starts_no_other_child():
    import threading
    import time

    names = Symbolizer(timeout_s=30, command=child("import time; time.sleep(60)"))
    answers: list = []
    worker = threading.Thread(target=lambda: answers.append(names.name([(7, (1,), ())])))
    worker.start()
    time.sleep(0.5)  # the request is in flight, its child asleep
    started = time.monotonic()
    names.interrupt()
    worker.join(5)
    assert not worker.is_alive() and time.monotonic() - started < 2  # not the 30 s deadline
    assert answers == [[(["0x1"], [])]] and not names.running  # addresses; no second child was started
