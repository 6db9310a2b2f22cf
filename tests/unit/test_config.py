"""Policy parsing: defaults, the example file, and every invalid form giving a clear message."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from oomguard.cli import main
from oomguard.config import SECTIONS, ConfigError, defaults, from_mapping, load, section_keys

EXAMPLE = Path(__file__).parents[2] / "config.example.toml"


def test_example_file_documents_exactly_the_defaults():
    example = load(EXAMPLE)
    assert {k: v for k, v in vars(example).items() if k not in ("source", "sections")} == \
        {k: v for k, v in vars(defaults()).items() if k not in ("source", "sections")}
    text = EXAMPLE.read_text()
    for section in SECTIONS:
        assert f"[{section}]" in text
        for key in section_keys(section):
            assert f"\n{key} = " in text, f"config.example.toml lacks [{section}] {key}"


def test_contract_keys_and_defaults():
    config = defaults()
    assert config.alerts.urls == ()
    assert config.sampling.interval == 1.0
    assert config.sampling.target_events_per_sec == 20_000
    assert config.attribution.pods_log_dir == Path("/var/log/pods")
    assert config.state.dir == Path("/var/lib/oomguard")


def test_values_are_parsed_with_units():
    config = from_mapping({"sampling": {"interval": "250ms"}, "alerts": {"urls": ["json://127.0.0.1:9/x"]}}, "t")
    assert config.sampling.interval == 0.25
    assert config.alerts.urls == ("json://127.0.0.1:9/x",)


@pytest.mark.parametrize("text, message", [
    ("[sampling]\nintervall = 1\n", "unknown key [sampling] intervall (did you mean 'interval'?)"),
    ("[samplng]\n", "unknown section [samplng] (did you mean 'sampling'?)"),
    ("[sampling]\ninterval = \"soon\"\n", "[sampling] interval: 'soon' is not a duration"),
    ("[sampling]\ninterval = \"5h\"\n", "[sampling] interval: must be between 0.1s and 60s"),
    ("[sampling]\ninterval = true\n", "[sampling] interval: expected a duration"),
    ("[sampling]\ntarget_events_per_sec = \"many\"\n",
     "[sampling] target_events_per_sec: expected an integer, got str"),
    ("[sampling]\ntarget_events_per_sec = 1.5\n", "expected an integer, got float"),
    ("[sampling]\ninitial_rate = 0\n", "[sampling] initial_rate: must be between 1 and"),
    ("[alerts]\nurls = \"slack://a/b/c\"\n", "[alerts] urls: expected a list of apprise URLs"),
    ("[alerts]\nurls = [\"not a url\"]\n", "[alerts] urls: expected a list of apprise URLs"),
    ("[state]\ndir = \"relative/dir\"\n", "[state] dir: expected an absolute path"),
    ("sampling = 3\n", "sampling must be a table"),
    ("[sampling\n", "not valid TOML"),
    ("interval = 1\n", "unknown section [interval]"),
])
def test_invalid_policies_name_the_key_and_the_problem(tmp_path, text, message):
    path = tmp_path / "policy.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load(path)
    assert message in str(caught.value)
    assert str(path) in str(caught.value)


def test_a_window_too_short_for_any_warning_says_so_with_the_sizes_that_would_work(caplog):
    # 300 samples at 1 s show at most a 299 s climb; a warning waits for 900 s / 2 = 450 s of climb
    with caplog.at_level(logging.WARNING):
        assert from_mapping({"detect": {"window": 300}}, "p.toml").detect.window == 300  # criticals still work
    assert ("p.toml: [detect] window (300 samples, 299s at [sampling] interval 1s) cannot hold the 450s climb a "
            "warning needs ([alerts] warn_horizon 900s / [detect] warn_trust 2): only critical alerts will be sent. "
            "To have warnings, raise window to 451 samples or more, or lower warn_horizon to 598s or less"
            in caplog.text)
    # each of the fixes it names, and the default, is silent; the interval counts (300 samples 2 s apart: 598 s)
    for fixed in ({"detect": {"window": 451}}, {"detect": {"window": 300}, "alerts": {"warn_horizon": "598s"}},
                  {"detect": {"window": 300, "warn_trust": 3.1}}, {},
                  {"detect": {"window": 300}, "sampling": {"interval": "2s"}}):
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            from_mapping(fixed, "p.toml")
        assert "cannot hold" not in caplog.text, fixed


def test_a_section_header_alone_is_all_defaults_and_an_empty_file_is_refused(tmp_path):
    path = tmp_path / "empty.toml"
    path.write_text("[sampling]\n")
    assert load(path).sampling == defaults().sampling and load(path).alerts == defaults().alerts
    path.write_text("")
    with pytest.raises(ConfigError, match="empty"):
        load(path)


def test_missing_binary_and_directory_files(tmp_path):
    with pytest.raises(ConfigError, match="no such file"):
        load(tmp_path / "absent.toml")
    with pytest.raises(ConfigError, match="is a directory"):
        load(tmp_path)
    binary = tmp_path / "binary.toml"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load(binary)


def test_unreadable_file(tmp_path):
    path = tmp_path / "secret.toml"
    path.write_text("")
    path.chmod(0)
    if os.geteuid() != 0:
        with pytest.raises(ConfigError, match="permission denied"):
            load(path)
        return
    # root reads anything: read it from a child process that became user nobody
    pid = os.fork()
    if pid == 0:  # child: exit 0 only if load() gave the permission message
        try:
            os.setgid(65534)
            os.setuid(65534)
            load(path)
            os._exit(1)
        except ConfigError as exc:
            os._exit(0 if "permission denied" in str(exc) else 2)
        except BaseException:  # noqa: BLE001  # a forked child must never return into pytest
            os._exit(3)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_check_config_exit_codes(tmp_path, capsys):
    good = tmp_path / "good.toml"
    good.write_text("[sampling]\ninterval = \"2s\"\n")
    assert main(["check-config", "-c", str(good)]) == 0
    assert "valid" in capsys.readouterr().out
    bad = tmp_path / "bad.toml"
    bad.write_text("[sampling]\ninterval = -1\n")
    assert main(["check-config", "-c", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "[sampling] interval" in err and "fix:" in err


def test_nested_pid_namespace_detection():
    from oomguard.bpf.preflight import nested_pid_namespace

    assert nested_pid_namespace("Name:\tx\nNSpid:\t10105\t183\n")
    assert not nested_pid_namespace("Name:\tx\nNSpid:\t10105\n")
    assert not nested_pid_namespace("Name:\tx\n")


def test_a_readable_policy_with_alert_urls_warns_or_is_refused(tmp_path, caplog):
    path = tmp_path / "policy.toml"
    path.write_text('[alerts]\nurls = ["json://127.0.0.1:9/x"]\n')
    path.chmod(0o644)
    with caplog.at_level("WARNING"):
        load(path)
    assert "readable by every user (mode 644)" in caplog.text and f"chmod 600 {path}" in caplog.text
    path.write_text('[alerts]\nurls = ["json://127.0.0.1:9/x"]\nreadable_config = "refuse"\n')
    path.chmod(0o640)
    with pytest.raises(ConfigError, match="readable by its group"):
        load(path)
    path.chmod(0o600)
    assert load(path).alerts.urls == ("json://127.0.0.1:9/x",)
    caplog.clear()
    no_urls = tmp_path / "open.toml"
    no_urls.write_text("[alerts]\nurls = []\n")
    no_urls.chmod(0o644)
    with caplog.at_level("WARNING"):
        load(no_urls)
    assert caplog.text == ""


def test_urls_file_adds_urls_and_errors_name_it(tmp_path):
    secret = tmp_path / "urls"
    secret.write_text("# from the Secret\njson://127.0.0.1:9/a\n\nmailto://127.0.0.1:25?to=x@y\n")
    policy = tmp_path / "policy.toml"
    policy.write_text(f'[alerts]\nurls = ["json://127.0.0.1:9/b"]\nurls_file = "{secret}"\n')
    policy.chmod(0o600)
    assert load(policy).alerts.urls == ("json://127.0.0.1:9/b", "json://127.0.0.1:9/a", "mailto://127.0.0.1:25?to=x@y")
    secret.write_text("not a url\n")
    with pytest.raises(ConfigError, match="urls_file"):
        load(policy)
    secret.unlink()
    with pytest.raises(ConfigError, match="no such file"):
        load(policy)


def test_a_world_readable_policy_is_judged_on_its_own_secrets(tmp_path, caplog):
    """The shipped ConfigMap mounts the policy 0644 and keeps URLs in a 0600 Secret file: no warning."""
    secret = tmp_path / "urls"
    secret.write_text("json://127.0.0.1:9/a\n")
    secret.chmod(0o600)
    policy = tmp_path / "policy.toml"
    policy.write_text(f'[alerts]\nurls_file = "{secret}"\nreadable_config = "refuse"\n')
    policy.chmod(0o644)
    with caplog.at_level("WARNING"):
        assert load(policy).alerts.urls == ("json://127.0.0.1:9/a",)
    assert caplog.text == ""
    secret.chmod(0o644)  # the secret file itself readable: refused, naming that file
    with pytest.raises(ConfigError, match=f"{secret}: holds alert URLs"):
        load(policy)
    policy.write_text('[alerts]\nalertmanager = "http://user:pw@127.0.0.1:9093"\nreadable_config = "refuse"\n')
    with pytest.raises(ConfigError, match="holds alert URLs"):  # credentials in the Alertmanager URL
        load(policy)
    policy.write_text('[alerts]\nalertmanager = "http://127.0.0.1:9093"\nreadable_config = "refuse"\n')
    assert load(policy).alerts.alertmanager == "http://127.0.0.1:9093"
