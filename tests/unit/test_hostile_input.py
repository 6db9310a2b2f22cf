"""Hostile input from any user on the node: bytes in names, planted state, half-written policies, status files of
the wrong shape. Each test fails on a daemon that trusts what it reads."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from oomguard.alerting import store
from oomguard.alerting.alertmanager import labels_for
from oomguard.alerting.lifecycle import Alert, missed_kills
from oomguard.alerting.outbox import Outbox, receiver_key
from oomguard.cli import main
from oomguard.config import ConfigError, load
from oomguard.errors import OomguardError
from oomguard.files import UnsafePath, atomic_write, read_own_file
from oomguard.identity.cgroup import keyed_ints, memory_cgroup_of, parse_proc_cgroup
from oomguard.identity.pods import PodNames
from oomguard.identity.procfs import ProcessDirectory, identify, kilobyte_fields, process_name, start_time
from oomguard.kills.kmsg import KernelOomRecord, parse_record
from oomguard.service.daemon import prepare_state_dir
from oomguard.service.status import read_status, shape_problem
from oomguard.text import from_kernel, plain, printable, untrusted, utf8
from oomguard.views.console import oom_line
from oomguard.views.table import ProcessRow, format_rows

from support import CGROUP, kill_report, wait_until

NOBODY = 65534
CUT = "x€€€€€".encode()[:15]  # 15 bytes ending inside a 3-byte character: what prctl(PR_SET_NAME) keeps


def fake_process(proc: Path, pid: int, comm: bytes, cgroup_path: bytes) -> None:
    base = proc / str(pid)
    base.mkdir(parents=True)
    (base / "comm").write_bytes(comm + b"\n")
    (base / "stat").write_bytes(b"%d (%s) S " % (pid, comm) + b" ".join(b"%d" % i for i in range(40)) + b"\n")
    (base / "cgroup").write_bytes(b"12:memory:" + cgroup_path + b"\n0::/\n")


def encodes(text: str) -> bool:
    text.encode("utf-8")  # strict: what a terminal, a socket or a log file does
    return True


# -- 1. bytes, not text, from the kernel --------------------------------------------------------------------


def test_a_name_cut_inside_a_character_is_read_and_shown_byte_for_byte(tmp_path):
    fake_process(tmp_path, 7, CUT, b"/kubepods/bad\xff\xfename")
    name = process_name(7, tmp_path)
    assert os.fsencode(name) == CUT  # lossless: the bytes come back
    assert printable(name) == "x€€€€\\xe2\\x82"  # shown as the bytes it holds
    assert start_time(7, tmp_path) == 18  # field 22 of stat (the 19th number after "S"): the cut name breaks nothing
    cgroup = memory_cgroup_of(7, tmp_path)
    assert cgroup is not None and os.fsencode(cgroup.path) == b"/kubepods/bad\xff\xfename"
    identity = ProcessDirectory(lambda pid: identify(pid, tmp_path), lambda pid: start_time(pid, tmp_path),
                                cgroup_paths=None).current(7)
    assert identity.command == name and identity.started == 18


def test_a_carriage_return_in_a_name_stays_a_carriage_return(tmp_path):
    fake_process(tmp_path, 8, b"a\rb", b"/c\rd")
    assert process_name(8, tmp_path) == "a\rb"  # not "a\nb": no newline translation
    assert memory_cgroup_of(8, tmp_path).path == "/c\rd"  # not split into two lines either
    assert printable(process_name(8, tmp_path)) == "a\\rb"


NAMES = st.binary(min_size=1, max_size=40).filter(lambda b: b"\n" not in b and b"\0" not in b)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(comm=st.binary(max_size=15).filter(lambda b: b"\n" not in b), path=NAMES, kmsg=st.binary(max_size=200))
def test_every_reader_takes_any_bytes_and_every_output_encodes(tmp_path_factory, comm, path, kmsg):
    proc = tmp_path_factory.mktemp("proc")
    fake_process(proc, 9, comm, b"/" + path.replace(b"/", b"_"))
    (proc / "meminfo").write_bytes(b"MemTotal: 1 kB\n" + kmsg)
    identity = identify(9, proc)
    assert os.fsencode(identity.command) == (comm or b"-")
    assert identity.cgroup is not None and os.fsencode(identity.cgroup.path) == b"/" + path.replace(b"/", b"_")
    assert kilobyte_fields(proc / "meminfo")["MemTotal"] == 1024
    keyed_ints(proc / "meminfo")
    record = parse_record(from_kernel(b"3,1,5;oom-kill:constraint=CONSTRAINT_MEMCG,oom_memcg=/" + path
                                      + b",task_memcg=/x,task=" + comm + b",pid=5,uid=0"))
    assert record is not None and os.fsencode(record.oom_memcg or "") == b"/" + path
    parse_record(from_kernel(kmsg))
    parse_proc_cgroup(from_kernel(kmsg))
    # Every place a name goes: console, table, alert text, labels, JSON.
    row = ProcessRow(9, identity.command, identity.cgroup.path, identity.cgroup.path, 1.0, 1.0, 1, 0.0, 0.1)
    assert all(encodes(line) and "\n" not in line for line in format_rows([row]))
    line = oom_line(kill_report(comm=identity.command, cgroup=identity.cgroup.path))
    assert encodes(line) and "\n" not in line and "\r" not in line
    assert encodes(plain(untrusted(identity.command)))
    labels = labels_for("OomguardPreOOM", "critical", "node", identity.cgroup.path,
                        PodNames(identity.command, identity.command, identity.command))
    assert all(encodes(v) for v in labels.values())
    assert encodes(json.dumps(labels, ensure_ascii=False))


def test_utf8_keeps_valid_text_and_shows_each_undecodable_byte():
    assert utf8("ok é ü \t") == "ok é ü \t"
    assert utf8(from_kernel(b"\xff\xfe")) == "\\xff\\xfe"
    assert printable("ok é ü") == "ok é ü"


# -- 2. a kill is never lost to a restart -------------------------------------------------------------------


def alert(opened_at: float = 100.0, oom_kills: int | None = 3) -> Alert:
    return Alert("a1", CGROUP, [100], opened_at, opened_at, oom_kills=oom_kills)


def line(at_s: float, memcg: str = CGROUP, pid: int = 4242) -> KernelOomRecord:
    return KernelOomRecord(int(at_s * 1e6), "CONSTRAINT_MEMCG", memcg, memcg + "/child", "leak", pid, 0)


def test_a_kill_in_the_kernel_log_since_the_alert_opened_confirms_it_at_its_time():
    (missed,) = missed_kills([alert()], {CGROUP: 4}, [line(50.0), line(130.0), line(140.0, "/other", pid=9)], 200.0)
    assert missed.record is not None and missed.at == pytest.approx(130.0)


def test_the_kill_counter_alone_confirms_when_the_log_has_lost_the_line():
    (missed,) = missed_kills([alert()], {CGROUP: 4}, [], 200.0)
    assert missed.record is None and missed.at == 200.0


def test_no_kill_in_the_log_and_no_counter_move_leaves_the_alert_to_the_live_daemon():
    assert missed_kills([alert()], {CGROUP: 3}, [line(50.0)], 200.0) == []  # a kill before it opened
    assert missed_kills([alert(oom_kills=None)], {CGROUP: 9}, [], 200.0) == []  # no baseline: not judged
    assert missed_kills([alert()], {CGROUP: None}, [], 200.0) == []  # the cgroup is gone: the log decides


def test_a_resumed_alert_is_confirmed_by_the_kernel_not_cleared_as_a_false_alarm(tmp_path):
    from support import engine, subject, verdict

    path = tmp_path / "alerts.json"
    before = engine()
    before.count_kills = lambda cgroup: 3
    opened = before.warn(verdict(), subject(), now=100.0)
    assert before.book.open[CGROUP].oom_kills == 3
    store.save(before.book, path)
    after = engine()
    assert after.restored(store.load(after.book, path), 150.0) == []
    (missed,) = missed_kills(list(after.book.open.values()), {CGROUP: 4}, [line(130.0)], 150.0)
    outcome = after.kill(kill_report(pid=4242), missed.at)
    assert outcome.message.kind == "confirmed" and outcome.message.alert_id == opened.alert_id
    assert outcome.lead_s == pytest.approx(30.0)
    assert after.book.tallies.foreseen == 1 and after.book.tallies.false_alarms == 0
    assert after.expire(160.0, live_cgroups=set()) == []  # nothing left to clear as a false alarm


# -- 3. a policy that is empty, or lost sections it had -----------------------------------------------------


def test_an_empty_policy_is_refused_naming_the_cause_and_the_fix(tmp_path, capsys):
    policy = tmp_path / "policy.toml"
    policy.write_text("# only a comment\n\n")
    with pytest.raises(ConfigError) as refused:
        load(policy)
    assert "empty" in refused.value.cause and "[sampling]" in refused.value.fix
    assert main(["check-config", "-c", str(policy)]) == 2
    assert main(["run", "-c", str(policy)]) == 2 and "empty" in capsys.readouterr().err
    policy.write_text("[sampling]\n")  # the stated way to mean the defaults
    assert load(policy).sections == ("sampling",)


def test_sighup_refuses_a_policy_that_lost_sections_and_keeps_every_live_key(daemon, caplog):
    path = Path(daemon.config.source)
    path.write_text(path.read_text() + '[alerts]\nhorizon = "90s"\n[output]\ntop_pids = 3\n')
    daemon.reload()
    assert daemon.config.alerts.horizon == 90 and daemon.config.output.top_pids == 3
    for truncated in ("", path.read_text().split("[alerts]")[0]):  # empty; cut before [alerts]
        path.write_text(truncated)
        with caplog.at_level(logging.INFO):
            caplog.clear()
            daemon.reload()
        assert "policy reloaded" not in caplog.text and "rejected" in caplog.text, caplog.text
        assert daemon.config.alerts.horizon == 90 and daemon.config.output.top_pids == 3
    assert "[alerts], [output]" in caplog.text and "systemctl restart oomguard" in caplog.text


# -- 4. status reads its file defensively --------------------------------------------------------------------

GOOD = {"pid": 1, "started": 1000.0, "updated": 1001.0, "interval_s": 1.0, "policy": "p", "sample_rates": [1, 1],
        "events_per_s": [0.0, 0.0], "ringbuf_drops": 0, "processes": 3, "kills_seen": 0}
WRONG = ["{}", "[]", "null", '"str"', "NaN", '{"pid": "abc"}', "1e999", '{"pid": 1, "updated": 1e308}',
         json.dumps(GOOD | {"updated": 1e308}), json.dumps(GOOD | {"sample_rates": []}),
         json.dumps(GOOD | {"pid": True}), json.dumps(GOOD | {"processes": -1}),
         json.dumps(GOOD | {"updated": 10.0})]  # before it started


@pytest.mark.parametrize("text", WRONG)
def test_status_of_the_wrong_shape_is_an_error_naming_the_fix_never_a_traceback(tmp_path, capsys, text):
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    (state / "status.json").write_text(text)
    policy = tmp_path / "p.toml"
    policy.write_text(f'[state]\ndir = "{state}"\n')
    for extra in ([], ["--json"]):
        assert main(["status", "-c", str(policy), *extra]) != 0
        out = capsys.readouterr()
        assert "Traceback" not in out.err and "not a status the daemon writes" in out.err
        assert "running" not in out.out


@settings(max_examples=300, deadline=None)
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
                        st.sampled_from([*GOOD, "tallies", "self", "top", "open_alerts"]), inner, max_size=12),
                    max_leaves=20))
def test_any_json_is_judged_without_raising(data):
    from oomguard.service.status import format_status

    if shape_problem(data, 1002.0) is None:  # what passes is formatted without raising
        assert format_status(data, 1002.0)


def test_a_good_status_passes_and_nested_junk_is_said_not_raised():
    from oomguard.service.status import format_status

    assert shape_problem(GOOD, 1002.0) is None
    text = format_status(GOOD | {"top": [{"bogus": 1}], "open_alerts": [None]}, 1002.0)
    assert "'top' in the status file is not of the shape" in text and "'open_alerts'" in text


# -- 5. the state dir is the daemon's or nothing -------------------------------------------------------------


def given_away(path: Path) -> Path:
    os.chown(path, NOBODY, NOBODY)
    return path


def test_a_state_dir_another_user_owns_is_refused_by_run_and_status(tmp_path):
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    given_away(state)
    (state / "status.json").write_text(json.dumps(GOOD | {"policy": "policy forged by uid 12345"}))
    with pytest.raises(OomguardError) as refused:
        prepare_state_dir(state)
    assert f"owned by uid {NOBODY}" in refused.value.cause and "chown root:" in refused.value.fix
    with pytest.raises(OomguardError) as status:
        read_status(state)
    assert "not trusted" in status.value.cause


def test_a_world_writable_or_symlinked_state_dir_is_refused(tmp_path):
    open_to_all = tmp_path / "open"
    open_to_all.mkdir()
    open_to_all.chmod(0o777)
    with pytest.raises(OomguardError, match="writable by others"):
        prepare_state_dir(open_to_all)
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    (tmp_path / "link").symlink_to(real)
    with pytest.raises(OomguardError, match="symlink"):
        prepare_state_dir(tmp_path / "link")


def test_symlinks_inside_the_state_dir_are_never_followed(tmp_path):
    state, decoy = tmp_path / "state", tmp_path / "decoy"
    state.mkdir(mode=0o700)
    decoy.mkdir(mode=0o700)
    (decoy / "unrelated.json").write_text("{}")
    (state / "evidence").symlink_to(decoy)
    with pytest.raises(UnsafePath, match="symlink"):
        atomic_write(state / "evidence" / "a1.txt", "report")
    assert sorted(p.name for p in decoy.iterdir()) == ["unrelated.json"]  # nothing written there
    (state / "alerts.json").symlink_to(decoy / "unrelated.json")
    with pytest.raises(UnsafePath):
        read_own_file(state / "alerts.json")


def test_a_symlinked_spool_sends_nothing_and_moves_nothing(tmp_path, caplog):
    state, decoy = tmp_path / "state", tmp_path / "decoy"
    state.mkdir(mode=0o700)
    decoy.mkdir(mode=0o700)
    planted = {"alert_id": "x", "kind": "pre-OOM", "title": "planted", "body": "planted"}
    (decoy / "0000000000000001.json").write_text(json.dumps(planted))
    url = "json://127.0.0.1:9/x"
    (state / "spool").mkdir(mode=0o700)
    (state / "spool" / receiver_key(url)).symlink_to(decoy)
    sent: list[dict] = []
    outbox = Outbox(state / "spool", {url: lambda m: sent.append(m) or True})
    outbox.start()
    try:
        wait_until(lambda: outbox.counts.spool_failures >= 1, 5)
    finally:
        outbox.stop()
    assert sent == [] and sorted(p.name for p in decoy.iterdir()) == ["0000000000000001.json"]


def test_spool_files_oomguard_did_not_write_are_quarantined_not_sent(tmp_path):
    url = "json://127.0.0.1:9/x"
    spool = tmp_path / "spool" / receiver_key(url)
    spool.mkdir(parents=True, mode=0o700)
    planted = {"alert_id": "x", "kind": "pre-OOM", "title": "planted", "body": "planted"}
    (spool / "0000000000000001.json").write_text(json.dumps(planted))
    os.chown(spool / "0000000000000001.json", NOBODY, NOBODY)
    (spool / "0000000000000002.json").symlink_to(tmp_path / "elsewhere.json")
    (tmp_path / "elsewhere.json").write_text(json.dumps(planted))
    (spool / "0000000000000003.json").write_text(json.dumps(planted | {"title": "ours"}))
    sent: list[dict] = []
    outbox = Outbox(tmp_path / "spool", {url: lambda m: sent.append(m) or True})
    outbox.start()
    try:
        wait_until(lambda: len(sent) == 1 and outbox.counts.quarantined == 2, 10)
    finally:
        outbox.stop()
    assert [m["title"] for m in sent] == ["ours"]
    assert sorted(p.name for p in (spool / "quarantine").iterdir()) == ["0000000000000001.json",
                                                                        "0000000000000002.json"]
    assert (tmp_path / "elsewhere.json").exists()  # the link moved, never its target


def test_status_alert_reads_no_planted_report(tmp_path, capsys):
    state = tmp_path / "state"
    (state / "evidence").mkdir(parents=True, mode=0o700)
    state.chmod(0o700)
    (state / "evidence" / "abc.txt").write_text("planted evidence")
    os.chown(state / "evidence" / "abc.txt", NOBODY, NOBODY)
    policy = tmp_path / "p.toml"
    policy.write_text(f'[state]\ndir = "{state}"\n')
    assert main(["status", "-c", str(policy), "--alert", "abc"]) != 0
    assert "planted" not in capsys.readouterr().out
