"""Loads oomguard's BPF programs, sets the sample rate, and reads their maps and ring buffer.

The tracer knows nothing of containers, policy or alerts: kernel facts in,
typed values out (see events.py). Map values and ring-buffer events are read
through the ctypes types bcc generates from oomguard.c (numpy takes their
layout as a structured dtype), so no struct is mirrored by hand.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import mmap
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ..arrays import match
from ..errors import OomguardError
from ..text import from_kernel, read_kernel_text
from .events import (
    DEPARTED_MAX,
    FILTER_OFF,
    RSS_MEMBERS,
    SOURCE_KMALLOC,
    SOURCE_PAGE,
    SOURCES,
    AllocSnapshot,
    Counters,
    DeepSite,
    Departed,
    OomKill,
    SourceCounters,
    compile_flags,
)
from .preflight import all_checks, failed_required

BPF_SOURCE = Path(__file__).with_name("oomguard.c")
DEFAULT_MAX_PIDS = 16384
MAX_SAMPLE_RATE = 1 << 24
# Bytes of keys and values per BPF_MAP_LOOKUP_BATCH call. The kernel allocates
# a bounce buffer of that size on every call; fewer, larger calls walk the map
# faster (bench/tick_cost.py: 10,000 entries of 68 bytes read in 4.7 ms in
# calls of 512 entries, 3.3 ms in calls of 8,192).
BATCH_BYTES = 1 << 20


@contextlib.contextmanager
def _stderr_captured() -> Iterator[Path]:
    """Send fd 2 (where bcc and the verifier write) to a file while loading."""
    with tempfile.NamedTemporaryFile(prefix="oomguard-bcc-", suffix=".log") as log:
        saved = os.dup(2)
        os.dup2(log.fileno(), 2)
        try:
            yield Path(log.name)
        finally:
            os.dup2(saved, 2)
            os.close(saved)


COMPILER_LIBRARIES = ("libLLVM", "libclang", "libbcc")  # mapped read-only code and data the compile touched
MADV_DONTNEED = 4


def give_back_heap(maps: Path = Path("/proc/self/maps")) -> None:
    """Return what compiling left resident and will not touch again.

    glibc keeps the compile's freed heap (~40 MiB) until malloc_trim; the
    compiler's code stays resident (tens of MiB of file pages) until told it
    is not needed: MADV_DONTNEED on the libraries' code mappings drops it
    from this process (code is never written: the few pages the map reads use
    again come back from the page cache on their own).
    """
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.malloc_trim(0)
        libc.madvise.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
        for line in read_kernel_text(maps).splitlines():
            fields = line.split()
            # Code only (r-xp): never written, so always the file's content. Not the read-only data: its
            # relocated pages (RELRO) differ from the file, and dropping them would corrupt the library.
            if len(fields) < 6 or fields[1] != "r-xp" or not any(lib in fields[5] for lib in COMPILER_LIBRARIES):
                continue
            start, end = (int(x, 16) for x in fields[0].split("-"))
            libc.madvise(start, end - start, MADV_DONTNEED)


def _tail(path: Path, lines: int = 25) -> str:
    text = path.read_text(errors="replace").strip().splitlines()
    return "\n".join(text[-lines:])


class Tracer:
    """The loaded BPF programs. Close it (or use `with`) to detach them all."""

    def __init__(self, max_pids: int = DEFAULT_MAX_PIDS, sample_rates: tuple[int, int] = (1, 1)):
        failures = failed_required(all_checks())
        if failures:
            first = failures[0]
            more = "".join(f"\n  also: {c.name}: {c.detail}: {c.fix}" for c in failures[1:])
            raise OomguardError(f"{first.name}: {first.detail}", first.fix + more)
        from bcc import BPF  # after the checks: its absence is one of them

        self.max_pids = max_pids
        with _stderr_captured() as log:
            try:
                self._bpf: Any = BPF(src_file=str(BPF_SOURCE).encode(),
                                     cflags=[*compile_flags(max_pids), "-Wno-macro-redefined"])
            except Exception as exc:  # bcc raises bare Exception for compile and load failures
                raise OomguardError(
                    f"loading the BPF programs failed ({exc}); compiler/verifier said:\n{_tail(log)}",
                    "run `oomguard doctor`; if every check passes, report this output as a bug",
                ) from exc
        give_back_heap()  # LLVM's compile left ~40 MiB of freed heap that glibc would otherwise keep
        self._pids = _SlotTable(self._bpf, max_pids)
        self._untracked_before = self._untracked_total()  # records made before the free slots were pushed
        # A buffer for batched reads, allocated once: a fresh one per tick costs page faults.
        self._departed = _BatchBuffer(self._bpf[b"departed"].map_fd, DEPARTED_MAX,
                                      np.dtype(self._bpf[b"departed"].Leaf))
        self._pending: list[OomKill] = []
        self._deep: dict[int, int] = {}  # what deep_pids holds
        self._bpf[b"oom_events"].open_ring_buffer(self._on_oom_event)
        for source, n in enumerate(sample_rates):
            self.set_sample_rate(source, n)

    # -- control ---------------------------------------------------------

    def set_sample_rate(self, source: int, n: int) -> None:
        """Sample 1 in `n` events of `source` from the next gap on."""
        if source not in (SOURCE_KMALLOC, SOURCE_PAGE):
            raise ValueError(f"unknown source {source}")
        if not 1 <= n <= MAX_SAMPLE_RATE:
            raise ValueError(f"sample rate must be in 1..{MAX_SAMPLE_RATE}, got {n}")
        table = self._bpf[b"sample_rate"]
        table[table.Key(source)] = table.Leaf(n)

    def set_cgroup_filter(self, mode: int, directories: list[Path]) -> None:
        """Kernel-side cgroup filter (events.FILTER_*) over v2 cgroup directories, checked per sample."""
        table, config = self._bpf[b"cgroup_filter"], self._bpf[b"filter_config"]
        config[config.Key(0)] = config.Leaf(FILTER_OFF)  # off while the slots change
        for slot, directory in enumerate(directories):
            table[slot] = str(directory)
        config[config.Key(1)] = config.Leaf(len(directories))
        config[config.Key(0)] = config.Leaf(mode)

    def set_deep_pids(self, every: dict[int, int]) -> None:
        """The suspects whose sampled allocations have their stacks taken: pid -> M (one in M of its
        samples). Replaces the set; only what changed is written."""
        table = self._bpf[b"deep_pids"]
        for pid in self._deep.keys() - every.keys():
            with contextlib.suppress(KeyError):
                del table[table.Key(pid)]
        for pid, m in every.items():
            if self._deep.get(pid) != m:
                table[table.Key(pid)] = table.Leaf(m)
        self._deep = dict(every)

    def deep_sites(self) -> list[DeepSite]:
        """The suspects' sampled call sites since the last call (read and removed in one batched pass)."""
        return [DeepSite(int(k.pid), _frames_of(k.user, k.user_depth), _frames_of(k.kernel, k.kernel_depth),
                         int(k.source), int(v.bytes), int(v.samples))
                for k, v in self._bpf[b"deep_sites"].items_lookup_and_delete_batch()]

    def sample_rate(self, source: int) -> int:
        table = self._bpf[b"sample_rate"]
        return int(table[table.Key(source)].value)

    # -- reading ---------------------------------------------------------

    def counters(self) -> Counters:
        sampler = self._bpf[b"sampler"]
        per_source = []
        for source in range(len(SOURCES)):
            cpus = sampler.getvalue(sampler.Key(source))
            per_source.append(SourceCounters(seen=sum(c.seen for c in cpus),
                                             sampled=sum(c.sampled for c in cpus)))
        drops_table = self._bpf[b"ringbuf_drops"]
        drops = sum(drops_table.getvalue(drops_table.Key(0)))
        return Counters(kmalloc=per_source[0], page=per_source[1], ringbuf_drops=drops, untracked=self.untracked())

    def snapshot(self) -> AllocSnapshot:
        """Cumulative per-process totals (summed over CPUs) and latest RSS, sorted by pid."""
        now = time.monotonic()
        pids, stats = self._pids.read_sorted()  # one table read in place: no syscall, no CPU term
        rss = stats["rss"]
        resident = sum(rss[:, RSS_MEMBERS.index(m)] for m in ("file", "anon", "shmem"))  # swap is not resident
        # Views into `stats`, a fresh array per read: no further copies.
        return AllocSnapshot(
            monotonic_s=now,
            pid=pids,
            kmalloc_bytes=stats["bytes"][:, SOURCE_KMALLOC],
            page_bytes=stats["bytes"][:, SOURCE_PAGE],
            kmalloc_samples=stats["samples"][:, SOURCE_KMALLOC],
            page_samples=stats["samples"][:, SOURCE_PAGE],
            rss_bytes=np.asarray(resident, dtype=np.int64),
            exited=stats["exited"] != 0,
        )

    def departed(self) -> dict[int, Departed]:
        """The tracked processes that exited since the last call, by pid (read and removed: one batched
        read of the few exits, not of every process)."""
        pids, values = self._departed.read()
        if not len(pids):
            return {}
        _delete_batch(self._departed.map_fd, np.ascontiguousarray(pids))
        # Whole columns at once (hundreds of exits a tick under churn): a record-by-record read costs ~5 us each.
        comm = values["comm"]
        names = comm.view(f"S{comm.shape[-1] * comm.dtype.itemsize}").ravel().tolist()  # bytes, trailing NULs cut
        return {pid: Departed(from_kernel(name.split(b"\0", 1)[0]), cgroup_id)
                for pid, name, cgroup_id in zip(pids.tolist(), names, values["cgroup_id"].tolist(), strict=True)}

    def forget_pids(self, pids: np.ndarray) -> None:
        """Free the slots of exited processes (those the last snapshot held)."""
        self._pids.release_pids(np.ascontiguousarray(pids, dtype=np.uint32))

    def untracked(self) -> int:
        """Records lost since start because every slot was taken (raise [sampling] max_pids)."""
        return self._untracked_total() - self._untracked_before

    def _untracked_total(self) -> int:
        table = self._bpf[b"untracked"]
        return int(sum(table.getvalue(table.Key(0))))

    def poll_oom_kills(self, timeout_ms: int = 0) -> list[OomKill]:
        """OOM kills the kernel reported since the last call; waits up to timeout_ms for one."""
        self._bpf.ring_buffer_poll(timeout_ms)
        kills, self._pending = self._pending, []
        return kills

    def _on_oom_event(self, _ctx: Any, data: Any, _size: int) -> None:
        self._pending.append(OomKill.from_event(self._bpf[b"oom_events"].event(data)))

    # -- lifetime --------------------------------------------------------

    def program_ids(self) -> list[int]:
        """Kernel IDs of the programs this tracer loaded (the tests find them in `bpftool prog`)."""
        ids = []
        for fn in self._bpf.funcs.values():
            info = Path(f"/proc/self/fdinfo/{fn.fd}").read_text()
            ids += [int(line.split()[1]) for line in info.splitlines() if line.startswith("prog_id:")]
        return ids

    def close(self) -> None:
        """Detach every program and free the maps; safe to call twice."""
        if self._bpf is not None:
            self._pids.close()
            self._bpf.cleanup()
            self._bpf = None

    def __enter__(self) -> Tracer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _SlotTable:
    """The per-process slots: the `pids` array read in place through mmap, the `pid_slots` hash that maps a
    pid to its slot, and the `free_slots` queue the kernel takes a slot from at a process's first record.

    Reading costs a scan of the owner column and a copy of the used rows (bench/tick_cost.py), against a
    locked walk of every hash bucket for a hash map. Freeing a slot: its pid leaves the hash first (so the
    kernel takes a fresh slot for any later record), then the row is zeroed, then the slot is pushed back.
    """

    def __init__(self, bpf: Any, max_pids: int):
        table = bpf[b"pids"]
        dtype = np.dtype(table.Leaf)
        length = -(-dtype.itemsize * max_pids // mmap.PAGESIZE) * mmap.PAGESIZE
        self._memory = mmap.mmap(table.map_fd, length, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        self.values = np.frombuffer(self._memory, dtype=dtype, count=max_pids)
        self._words = self.values.view(np.uint64).reshape(max_pids, -1)  # rows as plain words: fast to copy
        self.slots_fd, self.free_fd = bpf[b"pid_slots"].map_fd, bpf[b"free_slots"].map_fd
        self.map_fds = [table.map_fd, self.slots_fd, self.free_fd]
        self._last: tuple[np.ndarray, np.ndarray] = (np.zeros(0, np.uint32), np.zeros(0, np.intp))
        self.release_rows(np.arange(max_pids))

    def read_sorted(self) -> tuple[np.ndarray, np.ndarray]:
        """(pids, rows) of every used slot, sorted by pid: copies, valid after the kernel moves on."""
        owners = self.values["pid"]
        used = np.flatnonzero(owners)
        pids = owners[used]
        order = np.argsort(pids, kind="stable")
        pids, rows = pids[order], used[order]
        if len(pids) > 1 and (pids[1:] == pids[:-1]).any():  # a pid in two slots: keep its first
            first = np.concatenate([[True], pids[1:] != pids[:-1]])
            pids, rows = pids[first], rows[first]
        self._last = (pids, rows)
        return pids, np.take(self._words, rows, axis=0).view(self.values.dtype).reshape(-1)

    def release_pids(self, pids: np.ndarray) -> None:
        """Free the slots of `pids` (as the last read found them); pids without a slot are skipped."""
        if not len(pids):
            return
        _delete_batch(self.slots_fd, pids)
        known, rows = self._last
        at, found = match(known, pids)
        self.release_rows(rows[at[found]])

    def release_rows(self, rows: np.ndarray) -> None:
        from bcc.libbcc import lib

        self._words[rows] = 0
        slot = ctypes.c_uint32(0)
        for row in rows.tolist():  # one syscall per slot: only exits pay it
            slot.value = row
            lib.bpf_update_elem(self.free_fd, None, ctypes.byref(slot), 0)

    def close(self) -> None:
        del self.values, self._words
        with contextlib.suppress(BufferError):  # a view still held elsewhere: the mapping goes with it
            self._memory.close()


class _BatchBuffer:
    """Reads a whole hash map with u32 keys by BPF_MAP_LOOKUP_BATCH into reused numpy buffers.

    `value` is the numpy form of the map's leaf (bcc's generated ctypes type;
    for a per-CPU map bcc makes it an array over the CPUs).
    """

    def __init__(self, map_fd: int, max_entries: int, value: np.dtype):
        self.map_fd = map_fd
        self.keys = np.empty(max_entries, dtype=np.uint32)
        self.values = np.empty(max_entries, dtype=value)
        self.value_bytes = value.itemsize
        self.chunk = max(64, min(max_entries, BATCH_BYTES // (4 + self.value_bytes)))

    def read(self) -> tuple[np.ndarray, np.ndarray]:
        """Copies of (keys, values) for every entry, in the map's order."""
        keys, values = self._read_in_place()
        return keys.copy(), values.copy()

    def _read_in_place(self) -> tuple[np.ndarray, np.ndarray]:
        """Views of the reused buffers holding every entry: valid until the next read."""
        from bcc.libbcc import lib

        in_batch, out_batch, count = ctypes.c_uint32(0), ctypes.c_uint32(0), ctypes.c_uint32(0)
        total, capacity = 0, len(self.keys)
        while total < capacity:
            count.value = min(capacity - total, self.chunk)
            res = lib.bpf_lookup_batch(
                self.map_fd,
                ctypes.byref(in_batch) if total else None,
                ctypes.byref(out_batch),
                self.keys.ctypes.data + 4 * total,
                self.values.ctypes.data + self.value_bytes * total,
                ctypes.byref(count),
            )
            err = ctypes.get_errno()
            total += count.value
            if res != 0:
                if err == errno.ENOENT:  # walked past the last bucket: done
                    break
                raise OomguardError(f"reading a BPF map failed: {os.strerror(err)} ({_describe_fd(self.map_fd, res)})",
                                    "needs Linux >= 5.6 for batched map reads; run `oomguard doctor`")
            if count.value == 0:
                break
            in_batch.value = out_batch.value
        return self.keys[:total], self.values[:total]

    def read_sorted(self) -> tuple[np.ndarray, np.ndarray]:
        """(keys, values) of every entry, sorted by key: one read, one reordering copy."""
        keys, values = self._read_in_place()
        order = np.argsort(keys)
        if values.ndim == 1 and values.dtype.itemsize % 8 == 0:
            # Reorder as plain 8-byte words, then view them as the struct again: ~15x faster than
            # fancy-indexing a structured array (0.05 ms against 0.77 ms for 10,000 entries).
            words = values.view(np.uint64).reshape(len(values), -1)
            return keys[order], np.take(words, order, axis=0).view(values.dtype).reshape(-1)
        return keys[order], values[order]


def _delete_batch(map_fd: int, keys: np.ndarray) -> None:
    """BPF_MAP_DELETE_BATCH over u32 `keys`; keys already absent are skipped."""
    from bcc.libbcc import lib

    count = ctypes.c_uint32(0)
    done = 0
    while done < len(keys):
        count.value = len(keys) - done
        res = lib.bpf_delete_batch(map_fd, keys.ctypes.data + 4 * done, ctypes.byref(count))
        err = ctypes.get_errno()
        done += count.value
        if res != 0:
            if err != errno.ENOENT:
                raise OomguardError(f"deleting from a BPF map failed: {os.strerror(err)}",
                                    "needs Linux >= 5.6 for batched map operations; run `oomguard doctor`")
            done += 1  # the kernel stopped at a key that is not there: skip it


def _frames_of(frames: Any, depth: int) -> tuple[int, ...]:
    """A site key's stack as addresses: its first `depth` frames (none when the walk failed: depth < 0)."""
    return tuple(frames[:depth]) if depth > 0 else ()


def _describe_fd(fd: int, res: int) -> str:
    """What a failed map read saw, for the error: the call's return, and what the fd is now (a map fd closed
    under the daemon is named so: bcc 0.26 closes a random fd of a process that names stacks, which is why
    stacks are named in a child, evidence/symbols.py)."""
    try:
        now = os.readlink(f"/proc/self/fd/{fd}")
    except OSError as exc:
        now = f"unreadable: {exc.strerror}"
    return f"fd {fd} is {now}, call returned {res}"
