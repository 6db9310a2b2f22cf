"""The `oomguard` command line.

Exit codes: 0 success; 1 a runtime failure or a failed doctor check;
2 bad usage or an invalid policy file.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import asdict, replace
from pathlib import Path

from . import __version__
from .config import DEFAULT_PATH, NO_RECEIVERS, NO_RECEIVERS_FIX, Config, ConfigError, load, load_or_defaults, receivers
from .errors import OomguardError
from .service.systemd import configure_logging, keep_secret
from .text import printable, scrub

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2


def _config_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-c", "--config", type=Path, default=None,
                        help=f"policy file (default {DEFAULT_PATH}; built-in defaults if that is absent)")


def _ticks_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ticks", choices=("auto", "always", "never"), default=None,
                        help="print each interval's sampling line and table: auto (on a terminal only), always, "
                             "never (default: [output] ticks)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="oomguard", description=(
        "Memory watchdog: traces kernel memory allocation with eBPF, warns before OOM kills and confirms them."),
        epilog="Exit codes: 0 ok, 1 runtime failure or failed check, 2 bad usage or invalid policy.")
    parser.add_argument("--version", action="version", version=f"oomguard {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug detail to stderr")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    run = commands.add_parser("run", help="trace and report in the foreground until SIGTERM/SIGINT",
                              description="Load the BPF programs and print per-process allocation rates "
                                          "each interval and every OOM kill as it happens, until SIGTERM or Ctrl-C.")
    _config_argument(run)
    _ticks_argument(run)

    check = commands.add_parser("check-config", help="validate a policy file and exit",
                                description="Exit 0 if the policy file is valid, else print what is wrong and exit 2.")
    check.add_argument("-c", "--config", type=Path, default=DEFAULT_PATH, help=f"policy file (default {DEFAULT_PATH})")

    top = commands.add_parser("top", help="live table of the processes allocating most",
                              description="Show, each interval, the processes with the highest allocation rates, "
                                          "with their memory cgroup, RSS, RSS slope and the cgroup's headroom: the "
                                          "running daemon's table when one runs on the policy's state dir, else "
                                          "traced here (loading the BPF programs). Ctrl-C to quit.")
    _config_argument(top)
    top.add_argument("-n", "--iterations", type=int, default=None, help="stop after this many refreshes")
    top.add_argument("--count", type=int, default=20, help="rows to show (default 20)")
    top.add_argument("--trace", action="store_true",
                     help="trace here even when the daemon runs (by default, top shows the running daemon's table)")

    status = commands.add_parser("status", help="the running daemon's figures: sample rates, rates, kills",
                                 description="Read the running daemon's state file ([state] dir/status.json) and "
                                             "print it. Exit 0 if the daemon is running, 1 if not.")
    _config_argument(status)
    status.add_argument("--json", action="store_true", help="print the raw state as JSON")
    status.add_argument("--alert", metavar="ID", help="print the evidence saved with this alert (its call sites "
                                                      "and memory breakdown) instead; exit 1 if there is none")

    test_alert = commands.add_parser("test-alert", help="send a sample message to every alert URL",
                                     description="Send a sample message to each [alerts] urls entry, directly "
                                                 "(not through the spool), and report each one's result. "
                                                 "Exit 0 if all took it, 1 if any failed.")
    _config_argument(test_alert)

    record = commands.add_parser("record", help="run the daemon and record what it sees to a file",
                                 description="Run like `run`, printing alerts instead of sending them, and write "
                                             "each tick's limited cgroups and every OOM kill to FILE (gzip'd JSON "
                                             "lines) until SIGTERM/SIGINT.")
    _config_argument(record)
    _ticks_argument(record)
    record.add_argument("-o", "--output", type=Path, required=True, help="recording to write")

    replay = commands.add_parser("replay", help="run the detector over a recording, offline",
                                 description="Feed a recording to the same forecast rule and alert lifecycle with "
                                             "the recorded clock and print the alerts it would send; the same "
                                             "output every time. Needs no root and no kernel.")
    _config_argument(replay)
    replay.add_argument("file", type=Path, help="a file written by `oomguard record`")

    doctor = commands.add_parser("doctor", help="check kernel, tracepoints, privileges, bcc, headers and receivers",
                                 description="Print one pass/fail line per prerequisite, with the fix for each "
                                 "failure.")
    _config_argument(doctor)
    return parser


def usable(config: Config) -> Config:
    """The policy, if every alert URL is one apprise can send to; else a ConfigError naming the first bad one."""
    if config.alerts.urls:
        from .alerting.outbox import unusable_urls

        bad = unusable_urls(config.alerts.urls)
        if bad:
            raise ConfigError(f"{config.source}: [alerts] urls: apprise does not understand {', '.join(bad)}",
                              "fix the scheme or the missing parts (see apprise's URL list), or remove it")
    return config


def exit_now_if_threads_linger(code: int) -> int:
    """A library thread still sending (apprise's are not daemon threads) must not hold up the exit."""
    import os
    import threading

    if any(t.is_alive() and not t.daemon and t is not threading.main_thread() for t in threading.enumerate()):
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


def policy_for(args: argparse.Namespace) -> Config:
    """The policy to run with, its secrets registered with the log scrubber first (--ticks over [output])."""
    config = load_or_defaults(args.config)
    if getattr(args, "ticks", None):
        config = replace(config, output=replace(config.output, ticks=args.ticks))
    keep_secret((*config.alerts.urls, config.alerts.alertmanager))
    return usable(config)


def cmd_run(args: argparse.Namespace) -> int:
    from .service.daemon import run

    return exit_now_if_threads_linger(run(policy_for(args)))


def cmd_top(args: argparse.Namespace) -> int:
    from .service.status import running_daemon
    from .views.top import run_top

    config = load_or_defaults(args.config)
    return run_top(config, iterations=args.iterations, count=args.count,
                   daemon=None if args.trace else lambda: running_daemon(config.state.dir))


def cmd_status(args: argparse.Namespace) -> int:
    import json

    from .service.status import format_status, is_alive, read_status

    state_dir = load_or_defaults(args.config).state.dir
    if args.alert is not None:
        from .evidence.capture import saved_report
        from .service.status import check_state_dir

        check_state_dir(state_dir)  # a planted report is never shown

        report = saved_report(state_dir / "evidence", args.alert)
        if report is None:
            print(f"oomguard: no evidence saved for alert {args.alert!r} under {state_dir / 'evidence'}; fix: "
                  "use an id from an alert message (evidence is saved with pre-OOM, escalated and confirmed "
                  "messages while [alerts] evidence = true)", file=sys.stderr)
            return EXIT_FAILURE
        print(report, end="")
        return EXIT_OK
    state = read_status(state_dir)
    print(json.dumps(state, indent=1) if args.json else format_status(state))
    return EXIT_OK if is_alive(state) else EXIT_FAILURE


def cmd_test_alert(args: argparse.Namespace) -> int:
    import socket

    from .alerting.messages import Message
    from .alerting.outbox import apprise_sender
    from .text import redact

    config = policy_for(args)
    if not config.alerts.urls and not config.alerts.alertmanager:
        print(f"{config.source}: [alerts] urls and alertmanager are empty: nothing to test")
        return EXIT_FAILURE
    host = socket.gethostname()
    title = f"[oomguard] test alert from {host}"
    body = "This is a test message from oomguard test-alert. If you read it, alerts reach you.\n"
    message = asdict(Message("test", "test", title, body))  # as the daemon's messages are: each URL's format
    failed = 0
    for url in config.alerts.urls:
        ok = apprise_sender(url)(message)
        failed += not ok
        print(f"{'ok    ' if ok else 'FAILED'} {redact(url)}")
    if config.alerts.alertmanager:
        from .alerting.alertmanager import send_test_alert

        ok = send_test_alert(config.alerts.alertmanager, host, title, body)
        failed += not ok
        print(f"{'ok    ' if ok else 'FAILED'} alertmanager {redact(config.alerts.alertmanager)}")
    return EXIT_OK if not failed else EXIT_FAILURE


def cmd_record(args: argparse.Namespace) -> int:
    from .service.daemon import run

    return exit_now_if_threads_linger(run(policy_for(args), record_to=args.output))


def cmd_replay(args: argparse.Namespace) -> int:
    from .service.recording import replay

    replay(args.file, load_or_defaults(args.config), sys.stdout)
    return EXIT_OK


def cmd_check_config(args: argparse.Namespace) -> int:
    config = usable(load(args.config))
    print(f"{config.source}: valid")
    sends_to = receivers(config.alerts)
    print(f"receivers: {', '.join(sends_to)}" if sends_to else f"{NO_RECEIVERS}; fix: {NO_RECEIVERS_FIX}")
    return EXIT_OK


def cmd_doctor(args: argparse.Namespace) -> int:
    from .bpf.preflight import Check, all_checks

    config = load_or_defaults(args.config)
    sends_to = receivers(config.alerts)
    receiving = Check("alert receivers", bool(sends_to), ", ".join(sends_to) or NO_RECEIVERS, NO_RECEIVERS_FIX,
                      required=False)
    checks = [*all_checks(), receiving]
    for check in checks:
        mark = "ok  " if check.ok else ("FAIL" if check.required else "warn")
        print(f"[{mark}] {check.name}: {check.detail}" + ("" if check.ok else f"\n       fix: {check.fix}"))
    return EXIT_OK if all(c.ok or not c.required for c in checks) else EXIT_FAILURE


COMMANDS = {"run": cmd_run, "top": cmd_top, "status": cmd_status, "test-alert": cmd_test_alert,
            "record": cmd_record, "replay": cmd_replay, "check-config": cmd_check_config,
            "doctor": cmd_doctor}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(args.verbose)
    try:
        return COMMANDS[args.command](args)
    except OomguardError as exc:
        cause = printable(scrub(exc.cause))  # never echo a password, never let a name forge a line
        print(f"oomguard: error: {cause}" + (f"\n  fix: {exc.fix}" if exc.fix else ""), file=sys.stderr)
        return EXIT_USAGE if isinstance(exc, ConfigError) else EXIT_FAILURE


if __name__ == "__main__":
    sys.exit(main())
