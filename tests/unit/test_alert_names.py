"""One spelling per alert name: the names the daemon posts to Alertmanager and the shipped Prometheus rules."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).parents[2]
NAME = re.compile(r"\bOomguard[A-Z]\w*")


def names_in(paths: list[Path]) -> set[str]:
    return {name for path in paths for name in NAME.findall(path.read_text()) if not name.endswith("Error")}


def test_every_alert_name_has_one_spelling_across_the_daemon_and_the_rules():
    daemon = names_in(list((ROOT / "src" / "oomguard" / "alerting").glob("*.py")))
    rules = names_in([*(ROOT / "deploy").rglob("*.yaml"), ROOT / "README.md"])
    assert {"OomguardPreOOM", "OomguardOOMKill", "OomguardUnforeseenOOMKill"} <= daemon
    spellings: dict[str, set[str]] = {}
    for name in daemon | rules:
        spellings.setdefault(name.lower(), set()).add(name)
    assert [s for s in spellings.values() if len(s) > 1] == []
    assert "OomguardUnforeseenOOMKill" in rules  # the rule for the kill the daemon also posts, by the same name


# -- a policy that sends alerts nowhere is said aloud --------------------------------------------------------


def test_no_receivers_is_said_by_check_config_doctor_and_status(tmp_path, capsys):
    from oomguard.cli import main
    from oomguard.service.status import format_status

    policy = tmp_path / "p.toml"
    policy.write_text("[alerts]\nurls = []\n")
    assert main(["check-config", "-c", str(policy)]) == 0
    out = capsys.readouterr().out
    assert "no receivers" in out and "slack://" in out and "mailtos://" in out
    main(["doctor", "-c", str(policy)])
    assert "[warn] alert receivers: no receivers" in capsys.readouterr().out
    policy.write_text('[alerts]\nurls = ["json://hooks.example.com/x?token=SECRET"]\n')
    policy.chmod(0o600)
    assert main(["check-config", "-c", str(policy)]) == 0
    out = capsys.readouterr().out
    assert "receivers: json://hooks.example.com/…" in out and "SECRET" not in out
    status = {"pid": 1, "started": 1.0, "updated": 2.0, "interval_s": 1.0, "policy": "p", "sample_rates": [1, 1],
              "events_per_s": [0, 0], "ringbuf_drops": 0, "processes": 1, "kills_seen": 0}
    assert "no receivers" in format_status(status | {"receivers": []}, 3.0)
    shown = format_status(status | {"receivers": ["json://hooks.example.com/…"]}, 3.0)
    assert "receivers: json://hooks.example.com/…" in shown
