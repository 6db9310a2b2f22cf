"""State files: written so that a crash, a reader or a full disk never leaves half a file behind, and read or
written only where no other user could have put a link or a file of their own.

The daemon runs as root over a directory ([state] dir) it trusts: a symlink or a file planted there by
another user would steer a root process's writes, moves and messages. So every directory it writes into
must be a real directory owned by the daemon's user and writable by nobody else (`own_directory`), and every
state file it reads must be a regular file of its own, opened without following a link (`read_own_file`).
"""

from __future__ import annotations

import errno
import os
import stat
import tempfile
from pathlib import Path

MAX_STATE_FILE = 16 << 20  # no state file the daemon writes comes near this: a bigger one is not its own


class UnsafePath(OSError):
    """A path in the state dir that another user could have planted or could change."""

    def __init__(self, path: Path, problem: str):
        super().__init__(errno.EPERM, f"{path} {problem}")
        self.path, self.problem = path, problem


def directory_problem(info: os.stat_result, uid: int | None = None) -> str | None:
    """Why a directory (its lstat) is not the daemon's alone, or None."""
    uid = os.geteuid() if uid is None else uid
    if stat.S_ISLNK(info.st_mode):
        return "is a symlink (never followed in the state dir)"
    if not stat.S_ISDIR(info.st_mode):
        return "is not a directory"
    if info.st_uid != uid:
        return f"is owned by uid {info.st_uid}, not by the daemon's uid {uid}"
    if info.st_mode & 0o022:
        return f"is writable by {'others' if info.st_mode & 0o002 else 'its group'} (mode {info.st_mode & 0o777:o})"
    return None


def own_directory(path: Path) -> Path:
    """`path` made if missing (0700), then checked: a real directory of the daemon's user that nobody else can
    write into; UnsafePath otherwise (nothing is written, moved or followed there)."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    problem = directory_problem(os.lstat(path))
    if problem:
        raise UnsafePath(path, problem)
    return path


def read_own_file(path: Path) -> str:
    """A state file's text: opened without following a symlink, and only if it is a regular file of the
    daemon's user (UnsafePath otherwise); FileNotFoundError and other OSErrors as they come."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UnsafePath(path, "is a symlink (never followed in the state dir)") from None
        raise
    with os.fdopen(fd, "rb") as stream:
        info = os.fstat(stream.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise UnsafePath(path, "is not a regular file")
        if info.st_uid != os.geteuid():
            raise UnsafePath(path, f"is owned by uid {info.st_uid}, not by the daemon: not written by oomguard")
        data = stream.read(MAX_STATE_FILE + 1)
    if len(data) > MAX_STATE_FILE:
        raise UnsafePath(path, f"is larger than {MAX_STATE_FILE >> 20} MiB: not written by oomguard")
    return data.decode("utf-8", "surrogateescape")


def set_aside(path: Path, suffix: str) -> str:
    """Move a state file that is not what the daemon writes beside itself (`NAME.SUFFIX`), so the next start
    begins afresh and the file can be inspected; never raises. Where it went, in words for the log."""
    aside = path.with_name(f"{path.name}.{suffix}")
    try:
        path.rename(aside)
    except OSError as exc:
        return f"could not be moved aside ({exc.strerror})"
    return f"moved aside to {aside}"


def atomic_write(path: Path, data: str | bytes, mode: int = 0o600) -> None:
    """Write `data` to `path` through a temporary file in the same directory and a rename.

    The directory is made (0700) if missing and must be the daemon's own (`own_directory`). On any error the
    temporary file is removed and the old `path`, if any, is left as it was; the error propagates. The
    rename replaces a symlink at `path`, never writes through it.
    """
    own_directory(path.parent)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as out:
            out.write(data.encode("utf-8", "surrogateescape") if isinstance(data, str) else data)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
