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
import signal
import sys
import time
from typing import IO, Any

from ..helper import Helper, HelperFailed, HelperHung, lower_priority
from ..text import from_kernel

log = logging.getLogger("oomguard")
# A first request loads the process's and the kernel's symbol tables: ~0.5 s for a C program here, seconds
# for a JVM's libjvm or a large perf map, more on a starved node. The naming worker waits for it, never the
# tick; it is bounded so a hung child cannot hold back every later stack.
NAME_TIMEOUT_S = 30.0
# Slightly below the loop (CFS weight 335 against 1024): under the daemon's CPU quota the loop gets three
# quarters; stacks must still be named while their process lives, so not the chart renderer's 19.
SYMBOLIZER_NICE = 5
# After a failure, stacks get addresses without asking for this long: a child that hangs must not cost
# every stack NAME_TIMEOUT_S, nor one that dies at start a restart per tick.
RETRY_AFTER_S = 60.0

Stack = tuple[int, ...]
Request = tuple[int, Stack, Stack]  # pid, user stack, kernel stack
Named = tuple[list[str], list[str]]  # user frames, kernel frames


def unnamed(stack: Stack) -> list[str]:
    """What a frame is called when it could not be named: its address."""
    return [f"0x{address:x}" for address in stack]


def addresses(stacks: list[Request]) -> list[Named]:
    """Every stack as addresses: the answer when the child cannot be asked."""
    return [(unnamed(user), unnamed(kernel)) for _, user, kernel in stacks]


class Symbolizer:
    """Names stacks through the child, started on the first request. Blocking: the daemon calls it from
    its naming worker (capture.EvidenceCapture), never from the tick."""

    def __init__(self, timeout_s: float = NAME_TIMEOUT_S, command: list[str] | None = None,
                 retry_after_s: float = RETRY_AFTER_S):
        self.retry_after_s = retry_after_s
        self.helper = Helper(command or [sys.executable, "-m", "oomguard.evidence.symbols"], timeout_s,
                             "symbolizer")
        self.failure = ""  # why the last request got addresses instead of names, "" when it did not
        self._failed_at = float("-inf")

    @property
    def command(self) -> list[str]:
        return self.helper.command

    @property
    def running(self) -> bool:
        return self.helper.running

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
                answer = self.helper.ask(request)["names"]
                if not isinstance(answer, list) or len(answer) != len(stacks):
                    self.helper.close(kill=True)
                    raise HelperFailed(f"{len(answer)} answers to {len(stacks)} stacks")
                if self.failure:
                    log.info("stacks are named again")
                self.failure = ""
                return [([str(f) for f in user], [str(f) for f in kernel]) for user, kernel in answer]
            except (HelperFailed, KeyError, TypeError, ValueError) as exc:
                if attempt == 2 or isinstance(exc, HelperHung):
                    if not self.failure:
                        log.warning("stacks not named (%s): alert call sites show addresses; fix: check that "
                                    "`%s` runs (python3-bpfcc installed, as root)", exc, " ".join(self.command))
                    self.failure, self._failed_at = str(exc), time.monotonic()
                    break
        return addresses(stacks)

    def forget(self, pids: set[int]) -> None:
        """Drop these processes' symbol tables (they left the suspects)."""
        if pids and self.running:
            with contextlib.suppress(HelperFailed):
                self.helper.ask({"forget": sorted(pids)})

    def close(self, kill: bool = False) -> None:
        """Stop the child: every symbol table goes with it."""
        self.helper.close(kill)

    def interrupt(self) -> None:
        """From another thread: end a request in flight now (at shutdown)."""
        self.helper.interrupt()


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
    lower_priority(SYMBOLIZER_NICE)  # the watching loop first, for the CPU and for the OOM killer
    # Answers go out on a copy of stdout; fd 1 itself now points at stderr, so anything bcc (or its C
    # library) prints lands in the daemon's log, not in the middle of an answer.
    answers = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    serve(sys.stdin, answers)
