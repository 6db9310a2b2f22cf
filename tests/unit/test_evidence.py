"""Evidence capture's pure parts: naming sites from stacks, ranking them, breakdowns, the M controller, and
the capture loop over a scripted stack source (the real kernel side is in tests/kernel/test_evidence.py)."""

from __future__ import annotations

from concurrent.futures import Future
from pathlib import Path

from oomguard.bpf.events import SOURCE_KMALLOC, SOURCE_PAGE, DeepSite
from oomguard.evidence.breakdown import cgroup_breakdown, process_breakdown
from oomguard.evidence.capture import STACKS_PER_S, EvidenceCapture, next_every, report, saved_report, section
from oomguard.evidence.sites import NOT_KEPT, CallSites, kernel_site, site_name
from oomguard.text import markdown, plain

MIB = 1 << 20
FAULT = ["bpf_trace_run4", "__alloc_pages", "alloc_pages_mpol", "vma_alloc_folio", "do_anonymous_page",
         "__handle_mm_fault", "handle_mm_fault", "do_user_addr_fault", "exc_page_fault", "asm_exc_page_fault"]
PIPE = ["bpf_trace_run4", "__alloc_pages", "alloc_pages", "pipe_write", "vfs_write", "ksys_write"]


def test_a_page_fault_is_named_by_the_user_code_that_touched_the_memory():
    assert kernel_site(FAULT) is None
    assert site_name(["leak_in_parse_cache [app]", "main [app]"], FAULT) == "leak_in_parse_cache [app]"
    assert site_name([], FAULT) == NOT_KEPT


def test_kernel_memory_is_named_by_the_first_kernel_function_outside_the_allocator():
    assert kernel_site(PIPE) == "pipe_write"
    assert site_name(["__write [libc.so.6]"], PIPE) == "kernel: pipe_write <- __write [libc.so.6]"
    slab = ["bpf_trace_run6", "__kmem_cache_alloc_node", "kmalloc_trace", "alloc_pipe_info", "create_pipe_files"]
    assert kernel_site(slab) == "alloc_pipe_info"
    newer = ["__alloc_frozen_pages_noprof", "alloc_pages_mpol", "folio_alloc_mpol_noprof", "vma_alloc_folio_noprof",
             "folio_prealloc", "do_anonymous_page", "__handle_mm_fault"]  # 6.12+: the *_noprof entry points
    assert kernel_site(newer) is None
    assert kernel_site(["kmalloc_noprof", "alloc_pipe_info"]) == "alloc_pipe_info"


def test_sites_rank_by_bytes_with_shares_and_keep_the_heaviest_stack():
    sites = CallSites()
    sites.add(["leak [app]", "main [app]"], FAULT, 30 * MIB)
    sites.add(["leak [app]", "other [app]"], FAULT, 10 * MIB)
    sites.add(["churn [app]"], FAULT, 10 * MIB)
    top = sites.ranked()
    assert [(s.name, round(s.share, 2)) for s in top] == [("leak [app]", 0.8), ("churn [app]", 0.2)]
    assert top[0].stack[:2] == ("leak [app]", "main [app]") and top[0].bytes == 40 * MIB
    assert sites.samples == 3 and len(sites.ranked(1)) == 1


def test_breakdowns_are_read_from_memory_stat_and_smaps_rollup(tmp_path):
    v2 = tmp_path / "pod"
    v2.mkdir()
    (v2 / "memory.stat").write_text("anon 1048576\nfile 2097152\nkernel 4096\nsock 0\nshmem 0\nslab 8192\n")
    assert cgroup_breakdown_at(tmp_path, 2, "/pod") == {"anon": MIB, "file": 2 * MIB, "shmem": 0, "kernel": 4096,
                                                        "slab": 8192, "sock": 0}
    v1 = tmp_path / "memory" / "pod"
    v1.mkdir(parents=True)
    (v1 / "memory.stat").write_text("rss 1\ntotal_rss 3145728\ntotal_cache 0\ntotal_shmem 4096\n")
    (v1 / "memory.kmem.usage_in_bytes").write_text("65536\n")
    assert cgroup_breakdown_at(tmp_path, 1, "/pod") == {"anon": 3 * MIB, "file": 0, "shmem": 4096, "kernel": 65536}
    assert cgroup_breakdown_at(tmp_path, 2, "/gone") == {}
    (tmp_path / "42").mkdir()
    (tmp_path / "42" / "smaps_rollup").write_text("00400000-7ffc [rollup]\nRss:  2048 kB\nPss:  1024 kB\n"
                                                  "Anonymous:  1000 kB\nSwap: 0 kB\n")
    assert process_breakdown(42, tmp_path) == {"Rss": 2 * MIB, "Pss": MIB, "Anonymous": 1000 * 1024, "Swap": 0}
    assert process_breakdown(43, tmp_path) == {}


def cgroup_breakdown_at(root: Path, version: int, path: str) -> dict[str, int]:
    from oomguard.identity.cgroup import MemoryCgroup

    return cgroup_breakdown(MemoryCgroup(version, path), root)


def test_stack_walks_are_kept_within_the_budget():
    assert next_every(1, STACKS_PER_S / 2) == 1
    assert next_every(1, STACKS_PER_S * 10) == 10
    assert next_every(10, STACKS_PER_S * 3) == 30
    assert next_every(8, 0) == 4 and next_every(1, 0) == 1
    assert next_every(1 << 16, STACKS_PER_S * 100) == 1 << 16  # capped


class ScriptedStacks:
    """The tracer's deep-sampling side, scripted: sites to return, stacks by id."""

    def __init__(self):
        self.pids: dict[int, int] = {}
        self.pending: list[DeepSite] = []
        self.user = {(1,): ["leak_in_parse_cache [app]", "main [app]"], (2,): ["churn [app]"],
                     (3,): ["__write [libc.so.6]"]}
        self.kernel = {(10,): FAULT, (11,): PIPE}
        self.forgotten: list[set[int]] = []
        self.named = 0
        self.loaded = False
        self.closed = 0

    def set_deep_pids(self, every):
        self.pids = dict(every)

    def deep_sites(self):
        sites, self.pending = self.pending, []
        return sites

    # the namer's side (symbols.Symbolizer): one call names every new stack
    failure = ""

    @property
    def running(self):
        return self.loaded

    def name(self, stacks):
        self.named += len(stacks)
        self.loaded = self.loaded or bool(stacks)
        return [(self.user.get(user, []), self.kernel.get(kernel, [])) for _, user, kernel in stacks]

    def forget(self, pids):
        self.forgotten.append(set(pids))

    def close(self):
        self.closed += self.loaded
        self.loaded = False

    def interrupt(self):
        pass


class Inline:
    """A runner that runs each request at once, on the caller's thread (the daemon's is a worker thread)."""

    def submit(self, fn, *args):
        future = Future()
        future.set_result(fn(*args))
        return future

    def stop(self):
        pass


def capture_of(stacks, directory, **kwargs):
    kwargs.setdefault("clock", lambda: 1.0)
    return EvidenceCapture(stacks, stacks, directory, version=2, runner=Inline(), **kwargs)


def test_capture_follows_the_suspects_names_stacks_once_and_saves_a_report(tmp_path):
    stacks, clock = ScriptedStacks(), [100.0]
    capture = capture_of(stacks, tmp_path / "evidence", clock=lambda: clock[0])
    capture.update({"/pod/leaky": (7, 8)}, {7: "app", 8: "sidecar"})
    assert stacks.pids == {7: 1, 8: 1}
    stacks.pending = [DeepSite(7, (1,), (10,), SOURCE_PAGE, 30 * MIB, 300),
                      DeepSite(8, (2,), (10,), SOURCE_PAGE, 5 * MIB, 50),
                      DeepSite(8, (3,), (11,), SOURCE_KMALLOC, 5 * MIB, 50),
                      DeepSite(99, (1,), (10,), SOURCE_PAGE, MIB, 1)]
    clock[0] = 101.0
    capture.update({"/pod/leaky": (7, 8)}, {})
    stacks.pending = [DeepSite(7, (1,), (10,), SOURCE_PAGE, 30 * MIB, 300)]  # the same stacks again: named once
    clock[0] = 102.0
    capture.update({"/pod/leaky": (7, 8)}, {})
    assert stacks.named == 3
    evidence = capture.of("/pod/leaky")
    assert evidence is not None and evidence.heaviest_pid() == 7
    ranked = evidence.sites.ranked()
    assert [s.name for s in ranked] == ["leak_in_parse_cache [app]", "churn [app]",
                                        "kernel: pipe_write <- __write [libc.so.6]"]
    assert round(ranked[0].share, 3) == round(60 / 70, 3)  # pid 99 is no suspect: not counted
    text = plain(section(evidence, 102.0, "abc123"))
    assert "sampled over 2s" in text and "86% 60.0MiB  leak_in_parse_cache [app]" in text
    assert "oomguard status --alert abc123" in text
    path = capture.save("abc123", "[oomguard] pre-OOM critical", evidence)
    assert path == tmp_path / "evidence" / "abc123.txt"
    saved = saved_report(tmp_path / "evidence", "abc123")
    assert saved == report(evidence, 102.0, "abc123", "[oomguard] pre-OOM critical")
    assert "85.7%" in saved and "          main [app]" in saved and "cgroup: /pod/leaky" in saved
    assert saved_report(tmp_path / "evidence", "../../etc/passwd") is None
    assert saved_report(tmp_path / "evidence", "ffff") is None
    # no suspect left: the kernel set is emptied, stacks forgotten, the symbolizer (and its tables) stopped
    capture.update({}, {})
    assert stacks.pids == {} and capture.of("/pod/leaky") is None
    assert stacks.forgotten == [] and stacks.closed == 1 and capture._named == {}


def test_a_process_that_leaves_the_suspects_has_its_symbols_forgotten_while_others_stay_named():
    stacks = ScriptedStacks()
    capture = capture_of(stacks, Path("/nonexistent"))
    capture.update({"/a": (7,), "/b": (8,)}, {})
    stacks.pending = [DeepSite(7, (1,), (10,), SOURCE_PAGE, MIB, 1), DeepSite(8, (2,), (10,), SOURCE_PAGE, MIB, 1)]
    capture.update({"/b": (8,)}, {})  # /a is no longer a suspect: its evidence goes, pid 7's tables are freed
    assert stacks.forgotten == [{7}] and stacks.closed == 0 and stacks.running
    evidence = capture.of("/b")
    assert evidence is not None and [s.name for s in evidence.sites.ranked()] == ["churn [app]"]
    assert capture.of("/a") is None


def test_stacks_the_symbolizer_could_not_name_count_as_addresses_and_are_named_again_later():
    stacks = ScriptedStacks()
    capture = capture_of(stacks, Path("/nonexistent"))
    capture.update({"/c": (7,)}, {})
    stacks.failure, real_name = "the symbolizer exited (1)", stacks.name
    stacks.name = lambda new: [(["0x1"], FAULT) for _ in new]  # type: ignore[method-assign]
    stacks.pending = [DeepSite(7, (1,), (10,), SOURCE_PAGE, MIB, 1)]
    capture.update({"/c": (7,)}, {})
    assert capture._named == {}  # addresses are not kept as the stack's name
    stacks.failure, stacks.name = "", real_name  # type: ignore[method-assign]
    stacks.pending = [DeepSite(7, (1,), (10,), SOURCE_PAGE, MIB, 1)]
    capture.update({"/c": (7,)}, {})
    evidence = capture.of("/c")
    assert evidence is not None
    assert [s.name for s in evidence.sites.ranked()] == ["0x1", "leak_in_parse_cache [app]"]


def test_a_user_stack_that_could_not_be_walked_is_counted_as_not_kept():
    stacks = ScriptedStacks()
    capture = capture_of(stacks, Path("/nonexistent"))
    capture.update({"/c": (7,)}, {})
    stacks.pending = [DeepSite(7, (1,), (10,), SOURCE_PAGE, MIB, 1), DeepSite(7, (), (10,), SOURCE_PAGE, MIB, 1)]
    capture.update({"/c": (7,)}, {})
    assert stacks.forgotten == [] and stacks.named == 2
    evidence = capture.of("/c")
    assert evidence is not None and [s.name for s in evidence.sites.ranked()] == ["leak_in_parse_cache [app]",
                                                                                   "[stack not kept]"]


def test_a_report_that_cannot_be_written_is_logged_and_the_message_still_goes(tmp_path, caplog):
    stacks = ScriptedStacks()
    blocker = tmp_path / "file"
    blocker.write_text("")
    capture = capture_of(stacks, blocker / "evidence")
    capture.update({"/c": (1,)}, {})
    evidence = capture.of("/c")
    assert evidence is not None and capture.save("ab", "t", evidence) is None
    assert "alert evidence not saved" in caplog.text


def test_hostile_symbol_and_module_names_are_marked_for_each_receiver_and_escaped_in_the_report():
    stacks = ScriptedStacks()
    stacks.user[(1,)] = ["evil<!channel>*x* [lib\nOOM KILL.so]"]
    capture = capture_of(stacks, Path("/nonexistent"))
    capture.update({"/c": (7,)}, {7: "a\x1bb"})
    stacks.pending = [DeepSite(7, (1,), (10,), SOURCE_PAGE, MIB, 1)]
    capture.update({"/c": (7,)}, {})
    evidence = capture.of("/c")
    assert evidence is not None
    text = section(evidence, 1.0, "ab")
    assert "evil<!channel>*x* [lib\\nOOM KILL.so]" in plain(text)  # as it is, the newline shown escaped
    assert "`evil<!channel>*x* [lib\\nOOM KILL.so]`" in markdown(text)  # a code span: nothing renders
    full = report(evidence, 1.0, "ab", "t")
    assert "\nOOM KILL" not in full.replace("\\n", "") and "lib\\nOOM KILL.so" in full


def test_without_room_for_symbol_tables_nothing_is_deep_sampled_and_the_message_says_why(caplog):
    stacks, free = ScriptedStacks(), [10 * MIB]
    capture = capture_of(stacks, Path("/nonexistent"), free_bytes=lambda: free[0])
    capture.update({"/c": (7,)}, {})
    assert stacks.pids == {} and "10.0MiB free, less than the 48.0MiB" in capture.held_back
    evidence = capture.of("/c")
    assert evidence is not None
    assert "not captured: the daemon's memory cgroup has 10.0MiB free" in plain(section(evidence, 1.0, "ab",
                                                                                      capture.held_back))
    assert caplog.text.count("alert evidence not captured") == 1
    capture.update({"/c": (7,)}, {})
    assert caplog.text.count("alert evidence not captured") == 1  # said once, not every tick
    free[0] = None  # no limit binds the daemon (or room again): deep sampling starts
    capture.update({"/c": (7,)}, {})
    assert stacks.pids == {7: 1} and capture.held_back == ""


def test_a_slow_symbolizer_never_holds_the_tick_and_its_names_count_when_they_come(tmp_path):
    import threading
    import time

    from oomguard.helper import Worker

    stacks, release = ScriptedStacks(), threading.Event()
    real_name = stacks.name
    stacks.name = lambda new: (release.wait(30), real_name(new))[1]  # type: ignore[method-assign]
    capture = EvidenceCapture(stacks, stacks, tmp_path, clock=lambda: 1.0, version=2, runner=Worker("naming"))
    capture.update({"/c": (7,)}, {7: "java"})
    stacks.pending = [DeepSite(7, (1,), (10,), SOURCE_PAGE, 30 * MIB, 3)]
    started = time.monotonic()
    capture.update({"/c": (7,)}, {})  # a JVM's symbols take seconds to load: the tick does not wait
    assert time.monotonic() - started < 0.5
    evidence = capture.of("/c")
    assert evidence is not None and evidence.sites.ranked() == [] and evidence.naming == 1
    text = plain(section(evidence, 1.0, "ab"))
    assert "1 more sampled stacks still being named" in text
    assert capture.save("ab", "t", evidence) == tmp_path / "ab.txt"
    assert "leak_in_parse_cache" not in (tmp_path / "ab.txt").read_text()
    release.set()  # named: the next tick counts it and the saved report is written again with it
    deadline = time.monotonic() + 10
    while capture._naming and not capture._naming[0].done() and time.monotonic() < deadline:
        time.sleep(0.01)
    capture.update({"/c": (7,)}, {})
    assert [s.name for s in evidence.sites.ranked()] == ["leak_in_parse_cache [app]"] and evidence.naming == 0
    assert "30.0MiB  leak_in_parse_cache [app]" in (tmp_path / "ab.txt").read_text()
    assert stacks.named == 1  # asked once, however many ticks it waited
    capture.stop()
