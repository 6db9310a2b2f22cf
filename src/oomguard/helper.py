"""A helper child process: one JSON line per request on its stdin, one per answer on its stdout, each
exchange against a deadline.

Work that is slow, heavy or risky for the daemon (naming stacks with bcc, drawing charts with matplotlib)
runs in such a child: its memory goes with it, a crash or a hang costs the child, never the daemon, and it
runs at a lower priority (`lower_priority`), so on a CPU-starved node or under the daemon's CPU quota the
watching loop gets the CPU first. The daemon only ever talks to it from a worker thread (see `Worker`), so
a slow answer never holds the tick.
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import subprocess
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any


class HelperFailed(Exception):
    """The child died, did not start, or answered garbage."""


class HelperHung(HelperFailed):
    """The child did not answer in time."""


class Helper:
    """The daemon's end of one helper child, started on the first request."""

    def __init__(self, command: list[str], timeout_s: float, what: str):
        self.command, self.timeout_s, self.what = command, timeout_s, what
        self._child: subprocess.Popen[bytes] | None = None
        self._stopping = False

    @property
    def running(self) -> bool:
        return self._child is not None and self._child.poll() is None

    def ask(self, request: dict[str, Any], timeout_s: float | None = None) -> dict[str, Any]:
        """Its answer to `request`; HelperHung after the deadline, HelperFailed if it died or answered garbage
        (the child is then stopped: the next request starts a new one)."""
        try:
            return self._ask(request, self.timeout_s if timeout_s is None else timeout_s)
        except HelperFailed:
            self.close(kill=True)
            raise

    def _ask(self, request: dict[str, Any], timeout_s: float) -> dict[str, Any]:
        child = self.start()
        assert child.stdin is not None and child.stdout is not None
        line = exchange(child.stdin.fileno(), child.stdout.fileno(), json.dumps(request).encode() + b"\n",
                        time.monotonic() + timeout_s)
        if line is None:
            raise HelperHung(f"the {self.what} did not answer in {timeout_s:.0f}s")
        if not line:  # it closed its stdout: it is exiting
            try:
                code: int | str = child.wait(timeout=1.0)
            except subprocess.TimeoutExpired:
                code = "its answer pipe closed"
            raise HelperFailed(f"the {self.what} exited ({code})")
        try:
            answer = json.loads(line)
        except ValueError as exc:
            raise HelperFailed(f"the {self.what} answered garbage ({exc})") from exc
        if not isinstance(answer, dict):
            raise HelperFailed(f"the {self.what} answered {answer!r}")
        if "error" in answer:
            raise HelperFailed(f"the {self.what} failed: {answer['error']}")
        return answer

    def start(self) -> subprocess.Popen[bytes]:
        """The child, started now if it is not running (HelperFailed if it cannot be)."""
        if self._stopping:
            raise HelperFailed(f"the {self.what} is not started again: the daemon is stopping")
        if not self.running:
            self.close(kill=True)
            try:
                self._child = subprocess.Popen(self.command, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
            except OSError as exc:
                raise HelperFailed(f"the {self.what} did not start ({exc})") from exc
            assert self._child.stdin is not None and self._child.stdout is not None
            os.set_blocking(self._child.stdin.fileno(), False)
            os.set_blocking(self._child.stdout.fileno(), False)
        assert self._child is not None
        return self._child

    def close(self, kill: bool = False) -> None:
        """Stop the child (it exits when its stdin closes; `kill`: at once): its memory goes with it."""
        child, self._child = self._child, None
        if child is None:
            return
        if kill:
            child.kill()
        for stream in (child.stdin, child.stdout):
            if stream:
                stream.close()
        try:
            child.wait(timeout=1.0)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()

    def interrupt(self) -> None:
        """At shutdown, from any thread: kill the child (its pipes are left to the thread that uses them,
        which then sees it gone) and start no other, so an exchange in flight ends now, not at its deadline."""
        self._stopping = True
        child = self._child
        if child is not None:
            with contextlib.suppress(OSError):
                child.kill()


def exchange(to_child: int, from_child: int, payload: bytes, deadline: float) -> bytes | None:
    """Write `payload` and read one line back, both non-blocking against `deadline`: the line (without its
    newline), b"" if the child closed its end, None on the deadline. A child that stops reading mid-request
    cannot block the caller."""
    answer = bytearray()
    with selectors.DefaultSelector() as selector:
        selector.register(to_child, selectors.EVENT_WRITE)
        selector.register(from_child, selectors.EVENT_READ)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            for key, _ in selector.select(left):
                try:
                    if key.fd == to_child:
                        payload = payload[os.write(to_child, payload):]
                        if not payload:
                            selector.unregister(to_child)
                        continue
                    chunk = os.read(from_child, 1 << 16)
                except BlockingIOError:
                    continue
                except (BrokenPipeError, ConnectionResetError):
                    return b""
                if not chunk:
                    return b""
                answer += chunk
                if answer.endswith(b"\n"):
                    return bytes(answer[:-1])


class Worker:
    """One thread that runs a helper's requests in order, off the caller's thread: submit() returns at once
    with a Future; the tick takes what is done and never waits."""

    def __init__(self, name: str):
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self._stopped = False

    def submit(self, fn: Any, *args: Any) -> Future[Any]:
        if self._stopped:
            future: Future[Any] = Future()
            future.cancel()
            return future
        return self._pool.submit(fn, *args)

    def stop(self) -> None:
        """Cancel what has not started; the request in flight is left to end on its own (daemon exit does
        not wait for it: kill its child first, see Helper.interrupt)."""
        self._stopped = True
        self._pool.shutdown(wait=False, cancel_futures=True)


def lower_priority(nice: int) -> None:
    """In a helper child: a lower CPU priority and the OOM killer's first choice. Under the daemon's CPU quota
    the watching loop then gets most of it; under memory pressure the child goes before the daemon. Not
    SCHED_IDLE: on a busy node (or without the cpu controller) that starves the child outright, and a
    symbolizer must name a process's stacks while it is still alive."""
    with contextlib.suppress(OSError):
        os.nice(nice)
    with contextlib.suppress(OSError):
        Path("/proc/self/oom_score_adj").write_text("1000")
