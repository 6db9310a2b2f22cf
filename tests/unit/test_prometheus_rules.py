"""The shipped alert rules, checked and unit-tested by Prometheus' own promtool (Debian's `prometheus` package)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from support import require

RULES = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"


def promtool(*argv: str, cwd: Path = RULES) -> subprocess.CompletedProcess:
    path = shutil.which("promtool")
    require(path is not None, "promtool not found: `make test` installs Debian's prometheus package")
    return subprocess.run([str(path), *argv], cwd=cwd, capture_output=True, text=True, timeout=60)


def test_the_rules_are_valid():
    done = promtool("check", "rules", "oomguard-rules.yaml")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS: 8 rules found" in done.stdout


def test_the_rules_pass_their_unit_tests():
    done = promtool("test", "rules", "oomguard-rules.test.yaml")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


@pytest.mark.parametrize("change", [
    ("oomguard_cgroup_severity == 1\n        for: 1m", "oomguard_cgroup_severity == 1\n        for: 0m"),
    ("oomguard_cgroup_severity == 2", "oomguard_cgroup_severity >= 1"),
    ("> 0\n        for: 5m", "> 0\n        for: 1m"),
], ids=["warning-without-a-minute", "critical-on-warnings", "backlog-too-eager"])
def test_the_unit_tests_catch_a_broken_rule(tmp_path, change):
    text = (RULES / "oomguard-rules.yaml").read_text()
    assert change[0] in text
    (tmp_path / "oomguard-rules.yaml").write_text(text.replace(change[0], change[1]))
    shutil.copy(RULES / "oomguard-rules.test.yaml", tmp_path)
    done = promtool("test", "rules", "oomguard-rules.test.yaml", cwd=tmp_path)
    assert done.returncode == 1 and "FAILED" in done.stdout + done.stderr, done.stdout + done.stderr
