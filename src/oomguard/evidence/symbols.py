"""Naming stack addresses (`function [module]`), in a child process.

Why a child: bcc before 0.33 (Debian 12 ships 0.26) closes a random file
descriptor of whichever process names a user stack. Loading a process's
symbols adds its `/tmp/perf-PID.map` as a module with `enter_ns=false`, a
path on which `ProcSyms::ModulePath`'s constructor never sets `fd_`, and the
destructor closes whatever int that heap slot held (bcc PR #5193). In the
daemon that int was often the number of one of its own BPF map or program
fds: traced with a uprobe on the constructor, `fd_` was 32 in 2 of 6 runs
that named a leak's stacks, and both daemons then died with EBADF (a map
read, or bcc's own close at exit). Here the stray closes hit only the
child's fds: if one hits its pipes, the child dies and is started again.

The child also holds the symbol tables (the kernel's alone is ~13 MiB):
they go with it when no suspect is left, so the daemon's heap never grows
by them. One JSON line per request on the child's stdin, one per answer on
its stdout: `python -m oomguard.evidence.symbols`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import selectors
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, Any

from ..text import from_kernel

log = logging.getLogger("oomguard")
# A first request loads the process's and the kernel's symbol tables: ~0.5 s for a C program here, seconds
# for a JVM's libjvm. The tick waits for it (stacks are named while the process is alive), so it is bounded.
NAME_TIMEOUT_S = 10.0
# After a failure, stacks get addresses without asking for this long: a child that hangs must not cost
# every tick NAME_TIMEOUT_S (the daemon would be blind), nor one that dies at start a restart per tick.
RETRY_AFTER_S = 60.0

Stack = tuple[int, ...]
Request = tuple[int, Stack, Stack]  # pid, user stack, kernel stack
Named = tuple[list[str], list[str]]  # user frames, kernel frames


class SymbolizerFailed(Exception):
    """The child died or answered garbage."""


class SymbolizerHung(SymbolizerFailed):
    """The child did not answer in time (not retried: the tick has waited enough)."""


def unnamed(stack: Stack) -> list[str]:
    """What a frame is called when it could not be named: its address."""
    return [f"0x{address:x}" for address in stack]


def addresses(stacks: list[Request]) -> list[Named]:
    """Every stack as addresses: the answer when the child cannot be asked."""
    return [(unnamed(user), unnamed(kernel)) for _, user, kernel in stacks]


class Symbolizer:
    """The daemon's end: names stacks through the child, started on the first request."""

    def __init__(self, timeout_s: float = NAME_TIMEOUT_S, command: list[str] | None = None,
                 retry_after_s: float = RETRY_AFTER_S):
        self.timeout_s, self.retry_after_s = timeout_s, retry_after_s
        self.command = command or [sys.executable, "-m", "oomguard.evidence.symbols"]
        self.failure = ""  # why the last request got addresses instead of names, "" when it did not
        self._failed_at = float("-inf")
        self._child: subprocess.Popen[bytes] | None = None

    @property
    def running(self) -> bool:
        return self._child is not None and self._child.poll() is None

    def name(self, stacks: list[Request]) -> list[Named]:
        """Each stack's frames, innermost first; addresses (and `failure` says why) if the child fails twice
        or hangs, and for RETRY_AFTER_S after that without asking."""
        if not stacks:
            return []
        if self.failure and time.monotonic() - self._failed_at < self.retry_after_s:
            return addresses(stacks)
        request = {"stacks": [[pid, list(user), list(kernel)] for pid, user, kernel in stacks]}
        for attempt in (1, 2):
            try:
                answer = self._ask(request)["names"]
                if len(answer) != len(stacks):
                    raise SymbolizerFailed(f"{len(answer)} answers to {len(stacks)} stacks")
                if self.failure:
                    log.info("stacks are named again")
                self.failure = ""
                return [([str(f) for f in user], [str(f) for f in kernel]) for user, kernel in answer]
            except SymbolizerFailed as exc:
                self.close(kill=True)
                if attempt == 2 or isinstance(exc, SymbolizerHung):
                    if not self.failure:
                        log.warning("stacks not named (%s): alert call sites show addresses; fix: check that "
                                    "`%s` runs (python3-bpfcc installed, as root)", exc, " ".join(self.command))
                    self.failure, self._failed_at = str(exc), time.monotonic()
                    break
        return addresses(stacks)

    def forget(self, pids: set[int]) -> None:
        """Drop these processes' symbol tables (they left the suspects)."""
        if pids and self.running:
            try:
                self._ask({"forget": sorted(pids)})
            except SymbolizerFailed:
                self.close(kill=True)

    def close(self, kill: bool = False) -> None:
        """Stop the child (it exits when its stdin closes; `kill`: at once): every symbol table goes with it."""
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

    def _ask(self, request: dict[str, Any]) -> dict[str, Any]:
        child = self._started()
        assert child.stdin is not None and child.stdout is not None
        deadline = time.monotonic() + self.timeout_s
        line = exchange(child.stdin.fileno(), child.stdout.fileno(), json.dumps(request).encode() + b"\n", deadline)
        if line is None:
            raise SymbolizerHung(f"the symbolizer did not answer in {self.timeout_s:.0f}s")
        if not line:  # it closed its stdout: it is exiting (a stray close may also have hit the pipe)
            try:
                code: int | str = child.wait(timeout=1.0)
            except subprocess.TimeoutExpired:
                code = "its answer pipe closed"
            raise SymbolizerFailed(f"the symbolizer exited ({code})")
        try:
            answer = json.loads(line)
        except ValueError as exc:
            raise SymbolizerFailed(f"the symbolizer answered garbage ({exc})") from exc
        if not isinstance(answer, dict):
            raise SymbolizerFailed(f"the symbolizer answered {answer!r}")
        if "error" in answer:
            raise SymbolizerFailed(f"the symbolizer failed: {answer['error']}")
        return answer

    def _started(self) -> subprocess.Popen[bytes]:
        if not self.running:
            self.close(kill=True)
            try:
                self._child = subprocess.Popen(self.command, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
            except OSError as exc:
                raise SymbolizerFailed(f"the symbolizer did not start ({exc})") from exc
            assert self._child.stdin is not None and self._child.stdout is not None
            os.set_blocking(self._child.stdin.fileno(), False)
            os.set_blocking(self._child.stdout.fileno(), False)
        assert self._child is not None
        return self._child


def exchange(to_child: int, from_child: int, payload: bytes, deadline: float) -> bytes | None:
    """Write `payload` and read one line back, both non-blocking against `deadline`: the line (without its
    newline), b"" if the child closed its end, None on the deadline. A child that stops reading mid-request
    cannot block the daemon."""
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


# -- the child -------------------------------------------------------------


def serve(requests: IO[str], answers: IO[str]) -> None:
    """Answer each request line until stdin closes."""
    from bcc import BPF  # only in the child: see the module's docstring
    from bcc.libbcc import lib

    def user(address: int, pid: int) -> str:
        return str(from_kernel(BPF.sym(address, pid, show_module=True)))

    for line in requests:
        try:
            request = json.loads(line)
            if "forget" in request:
                for pid in request["forget"]:
                    cache = BPF._sym_caches.pop(int(pid), None)
                    if cache is not None:
                        lib.bcc_free_symcache(cache.cache, int(pid))
                answer: dict[str, Any] = {"forgot": len(request["forget"])}
            else:
                answer = {"names": [[[user(a, pid) for a in user_stack],
                                     [from_kernel(BPF.ksym(a)) for a in kernel_stack]]
                                    for pid, user_stack, kernel_stack in request["stacks"]]}
        except Exception as exc:  # one bad request must not end the child: say what, go on  # noqa: BLE001
            answer = {"error": f"{type(exc).__name__}: {exc}"}
        answers.write(json.dumps(answer) + "\n")
        answers.flush()


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C on the daemon's terminal: the daemon stops us
    with contextlib.suppress(OSError):  # a luxury: the OOM killer's first choice
        Path("/proc/self/oom_score_adj").write_text("1000")
    # Answers go out on a copy of stdout; fd 1 itself now points at stderr, so anything bcc (or its C
    # library) prints lands in the daemon's log, not in the middle of an answer.
    answers = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    serve(sys.stdin, answers)
