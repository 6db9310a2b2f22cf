"""Tracepoint layouts are checked against what the running kernel's tracefs offers, field by field."""

from __future__ import annotations

import platform

from oomguard.bpf import preflight

OLD_MARK_VICTIM = """name: mark_victim
ID: 470
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;

\tfield:int pid;\toffset:8;\tsize:4;\tsigned:1;

print fmt: "pid=%d", REC->pid
"""


def fake_tracefs(tmp_path, monkeypatch, name: str, text: str) -> None:
    (tmp_path / "events" / name).mkdir(parents=True)
    (tmp_path / "events" / name / "format").write_text(text)
    monkeypatch.setattr(preflight, "tracefs_root", lambda: tmp_path)


def test_a_tracepoint_without_a_field_oomguard_reads_names_the_kernel_and_the_fields(tmp_path, monkeypatch):
    fake_tracefs(tmp_path, monkeypatch, "oom/mark_victim", OLD_MARK_VICTIM)  # as kernels before 6.x had it
    check = preflight.check_tracepoint("oom/mark_victim")
    assert not check.ok and check.required
    assert check.detail == (f"kernel {platform.release()} lacks field(s) total_vm, anon_rss, file_rss, shmem_rss, "
                            "uid, oom_score_adj")
    assert "tested: 6.1, 6.12, 6.18" in check.fix


def test_a_complete_layout_passes_and_an_absent_tracepoint_says_so(tmp_path, monkeypatch):
    fields = "".join(f"\tfield:long {f};\toffset:0;\n" for f in ("mm_id", "curr", "member", "size"))
    fake_tracefs(tmp_path, monkeypatch, "kmem/rss_stat", fields)
    assert preflight.check_tracepoint("kmem/rss_stat").ok
    absent = preflight.check_tracepoint("kmem/kmalloc")
    assert not absent.ok and absent.detail == "absent" and "lacks tracepoint kmem/kmalloc" in absent.fix
