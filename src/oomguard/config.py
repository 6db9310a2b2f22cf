"""The TOML policy: parsed, validated, turned into typed dataclasses — each key declared once.

Every key is one dataclass field below: its default (the parsed value), its
check and whether a SIGHUP can apply it live are in the field's metadata, and
the schema the validator walks is derived from those fields. The stages take
their section (e.g. detection takes DetectConfig) rather than copying keys.
config.example.toml documents the same keys; a test keeps the two in step.
An error names the file, the key and what is wrong; an unknown key names the
nearest valid one.
"""

from __future__ import annotations

import difflib
import logging
import math
import stat
import sys
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, get_type_hints

from .errors import OomguardError
from .text import redact
from .units import parse_duration

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

DEFAULT_PATH = Path("/etc/oomguard/config.toml")
MAX_POLICY_BYTES = 1 << 20  # a policy is a few KiB; anything bigger is a mistake (or /dev/zero)
log = logging.getLogger("oomguard")

Check = Callable[[Any], Any]


class ConfigError(OomguardError):
    pass


# -- value checks: each returns the parsed value or raises ValueError saying what was expected --


def _int_in(low: int, high: int) -> Check:
    def check(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"expected an integer, got {type(value).__name__} {value!r}")
        if not low <= value <= high:
            raise ValueError(f"must be between {low} and {high}, got {value}")
        return value
    return check


def _duration_in(low: float, high: float) -> Check:
    def check(value: Any) -> float:
        if not isinstance(value, (str, int, float)):
            raise ValueError(f"expected a duration such as \"30s\", got {type(value).__name__} {value!r}")
        seconds = parse_duration(value)
        if not low <= seconds <= high:
            raise ValueError(f"must be between {low}s and {high}s, got {seconds}s")
        return seconds
    return check


def _fraction(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise ValueError(f"expected a fraction from 0 to below 1 (0.05 = 5%), got {value!r}")
    return float(value)


def _positive_float(high: float) -> Check:
    def check(value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= high:
            raise ValueError(f"expected a number above 0 and at most {high:g}, got {value!r}")
        return float(value)
    return check


def _http_url(value: Any) -> str:
    if not isinstance(value, str) or not (value == "" or value.startswith(("http://", "https://"))):
        shown = redact(value) if isinstance(value, str) else repr(value)
        raise ValueError(f'expected "" (off) or an http(s):// URL such as "http://alertmanager:9093", got {shown}')
    return value


def _runbook_url(value: Any) -> str:
    if not isinstance(value, str) or not (value == "" or value.startswith(("http://", "https://", "file:///"))):
        raise ValueError(f'expected "" (none) or an http(s):// or file:/// URL such as '
                         f'"https://wiki.example.com/oomguard-runbook", got {value!r}')
    if "#" in value:
        raise ValueError(f"expected a URL without a #fragment (each message adds its kind's), got {value!r}")
    return value


def _listen_address(value: Any) -> str:
    if value == "":
        return ""
    host, _, port = value.rpartition(":") if isinstance(value, str) else ("", "", "")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f'expected "" (off) or HOST:PORT such as "127.0.0.1:9843", got {value!r}')
    return str(value)


def _absolute_path(value: Any) -> Path:
    if not isinstance(value, str) or not value.startswith("/") or "\0" in value:
        raise ValueError(f"expected an absolute path string, got {value!r}")
    return Path(value)


def _optional_path(value: Any) -> str:
    return "" if value == "" else str(_absolute_path(value))


def _url_list(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(url, str) and "://" in url for url in value):
        raise ValueError('expected a list of apprise URLs such as ["mailto://user:pass@example.com"]')
    return tuple(value)


def _string_list(must_start_with: str = "") -> Check:
    def check(value: Any) -> tuple[str, ...]:
        if not isinstance(value, list) or not all(isinstance(v, str) and v.startswith(must_start_with) for v in value):
            kind = "cgroup paths starting with /" if must_start_with else "strings"
            raise ValueError(f"expected a list of {kind}, got {value!r}")
        return tuple(value)
    return check


def _boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"expected true or false, got {value!r}")
    return value


def _one_of(*choices: str) -> Check:
    def check(value: Any) -> str:
        if value not in choices:
            raise ValueError(f"expected one of {', '.join(map(repr, choices))}, got {value!r}")
        return str(value)
    return check


def key(default: Any, check: Check, *, restart: bool = False) -> Any:
    """A policy key: its parsed default, its check, and whether a change needs a restart (not a SIGHUP)."""
    return field(default=default, metadata={"check": check, "restart": restart})


# -- the sections: one field per key; the comment is the key's documentation --


@dataclass(frozen=True)
class SamplingConfig:
    interval: float = key(1.0, _duration_in(0.1, 60))  # seconds between ticks
    target_events_per_sec: int = key(20_000, _int_in(100, 10_000_000))  # sampled events/s per source
    initial_rate: int = key(64, _int_in(1, 1 << 24), restart=True)  # the N the kernel starts with
    max_pids: int = key(16384, _int_in(1024, 1 << 20), restart=True)  # size of the kernel's per-PID maps


@dataclass(frozen=True)
class SelectionConfig:
    include_cgroups: tuple[str, ...] = key((), _string_list("/"))
    exclude_cgroups: tuple[str, ...] = key((), _string_list("/"))
    include_commands: tuple[str, ...] = key((), _string_list())
    exclude_commands: tuple[str, ...] = key((), _string_list())


@dataclass(frozen=True)
class AlertsConfig:
    urls: tuple[str, ...] = key((), _url_list, restart=True)  # with those of urls_file, once loaded
    urls_file: str = key("", _optional_path, restart=True)  # more URLs, one per line (a mounted Secret)
    readable_config: str = key("warn", _one_of("warn", "refuse"))  # when a file with secrets is readable
    horizon: float = key(60.0, _duration_in(5, 3600))  # critical when the forecast OOM is closer than this
    warn_horizon: float = key(900.0, _duration_in(5, 7 * 86400))  # warning when closer than this, after a climb of
    # warn_horizon / [detect] warn_trust (7.5 min): a younger climb speaks only as critical
    headroom_floor: float = key(0.05, _fraction)  # warn when less than this fraction of the limit is free
    cooldown: float = key(600.0, _duration_in(0, 86400))  # quiet time per cgroup after an alert closes
    max_per_hour: int = key(30, _int_in(1, 10_000))  # new pre-OOM alerts per hour, all cgroups together
    alertmanager: str = key("", _http_url, restart=True)  # base URL of an Alertmanager, "" for none
    # what the on-call engineer checks, linked from every message (the kind's section: #pre-oom, #confirmed, ...)
    runbook_url: str = key("file:///opt/oomguard/doc/runbook.md", _runbook_url)
    # each open alert re-posted this often: Alertmanager resolves one not re-posted within resolve_timeout (5m)
    alertmanager_resend: float = key(100.0, _duration_in(1, 3600), restart=True)
    chart: bool = key(True, _boolean)  # attach a PNG of the cgroup's memory to pre-OOM and confirmed messages
    evidence: bool = key(True, _boolean)  # deep-sample suspects' call sites; a summary and report with alerts


@dataclass(frozen=True)
class DetectConfig:
    window: int = key(600, _int_in(30, 3600))  # samples of usage history per cgroup (the longest trend window)
    min_span: float = key(4.0, _duration_in(1, 600))  # a climb is a trend once it has lasted this long
    trust: float = key(3.0, _positive_float(100))  # extrapolate at most this many times the span seen ...
    settled_trust: float = key(4.5, _positive_float(100))  # ... and this many for a climb starting after a
    # cgroup's first minute: its start-up (loading, first heap growth) is the climb every healthy container makes
    warn_trust: float = key(2.0, _positive_float(100))  # a warning needs a climb of [alerts] warn_horizon / this
    confidence: float = key(2.0, _positive_float(10))  # standard errors between the ETA and its confident bound
    giveback_half_life: float = key(6 * 3600.0, _duration_in(60, 7 * 86400))  # memory of the largest fall seen
    screen_sigma: float = key(4.0, _positive_float(1e6))  # per-process growth flagged this many sigma up


# Keys of the first detector (0.1), accepted and ignored with a warning so an upgrade keeps old policies working.
RETIRED = {("detect", k) for k in ("blocks", "envelope_fit", "short_window", "warmup", "anomaly_factor",
                                    "min_growth", "peak_half_life", "learn_after")}


@dataclass(frozen=True)
class MetricsConfig:
    listen: str = key("127.0.0.1:9843", _listen_address, restart=True)  # HOST:PORT, "" for none
    top_pids: int = key(20, _int_in(0, 1000))  # per-process series: only the top N
    max_containers: int = key(1000, _int_in(0, 100_000))  # per-container series: at most this many


@dataclass(frozen=True)
class AttributionConfig:
    pods_log_dir: Path = key(Path("/var/log/pods"), _absolute_path)
    containers_log_dir: Path = key(Path("/var/log/containers"), _absolute_path)


@dataclass(frozen=True)
class StateConfig:
    dir: Path = key(Path("/var/lib/oomguard"), _absolute_path, restart=True)


@dataclass(frozen=True)
class OutputConfig:
    top_pids: int = key(10, _int_in(0, 1000))  # processes `run` prints each interval
    # each interval's lines: "auto" on a terminal only (under systemd or in a container, a summary instead)
    ticks: str = key("auto", _one_of("auto", "always", "never"))
    summary_every: float = key(300.0, _duration_in(10, 86400))  # the summary line's interval when ticks are off


@dataclass(frozen=True)
class Config:
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    selection: SelectionConfig = field(default_factory=SelectionConfig)
    alerts: AlertsConfig = field(default_factory=AlertsConfig)
    detect: DetectConfig = field(default_factory=DetectConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    attribution: AttributionConfig = field(default_factory=AttributionConfig)
    state: StateConfig = field(default_factory=StateConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    source: str = "built-in defaults"  # the file it came from
    # The sections the file wrote, in its order: a reload that lost one is refused (see lost_sections).
    sections: tuple[str, ...] = field(default=(), compare=False)


SECTIONS: dict[str, type] = {name: kind for name, kind in get_type_hints(Config).items()
                             if name not in ("source", "sections")}


def section_keys(section: str) -> dict[str, Any]:
    """key -> dataclass field of one section: the schema, derived."""
    return {f.name: f for f in fields(SECTIONS[section])}


def _nearest(name: str, choices: Any) -> str:
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.5)
    return f" (did you mean {close[0]!r}?)" if close else f" (valid: {', '.join(sorted(choices))})"


def _cross_check(config: Config, source: str) -> None:
    """Checks that span keys: values each valid alone that the detector cannot run with together."""
    a = config.alerts
    if a.warn_horizon < a.horizon:
        raise ConfigError(f"{source}: [alerts] warn_horizon ({a.warn_horizon:.0f}s) is shorter than horizon "
                          f"({a.horizon:.0f}s)", "make warn_horizon at least horizon: a warning comes before "
                          "the critical alert")
    held = (config.detect.window - 1) * config.sampling.interval  # the longest climb a window can show
    needed = a.warn_horizon / config.detect.warn_trust
    if held < needed:  # not refused: critical alerts still work, and a faster interval is a common change
        log.warning("%s: [detect] window (%d samples, %.0fs at [sampling] interval %gs) cannot hold the %.0fs climb "
                    "a warning needs ([alerts] warn_horizon %.0fs / [detect] warn_trust %g): only critical alerts "
                    "will be sent. To have warnings, raise window to %d samples or more, or lower warn_horizon to "
                    "%.0fs or less, or raise warn_trust", source, config.detect.window, held,
                    config.sampling.interval, needed, a.warn_horizon, config.detect.warn_trust,
                    math.ceil(needed / config.sampling.interval) + 1, held * config.detect.warn_trust)


def from_mapping(data: dict[str, Any], source: str) -> Config:
    """Validate a parsed TOML document; missing keys take their defaults."""
    for section, body in data.items():
        if section not in SECTIONS:
            raise ConfigError(f"{source}: unknown section [{section}]{_nearest(section, SECTIONS)}",
                              "remove it or fix its name")
        if not isinstance(body, dict):
            raise ConfigError(f"{source}: {section} must be a table ([{section}]), got {type(body).__name__}",
                              f"write it as a [{section}] section")
        keys = section_keys(section)
        for name in body:
            if (section, name) in RETIRED:
                log.warning("%s: [%s] %s is no longer used (the detector was rebuilt in 0.2; see "
                            "config.example.toml) and is ignored: remove it", source, section, name)
            elif name not in keys:
                raise ConfigError(f"{source}: unknown key [{section}] {name}{_nearest(name, keys)}",
                                  "remove it or fix its name")
    sections = {}
    for section, kind in SECTIONS.items():
        body = data.get(section, {})
        values = {}
        for name, spec in section_keys(section).items():
            if name not in body:
                continue
            try:
                values[name] = spec.metadata["check"](body[name])
            except (ValueError, TypeError, OverflowError) as exc:
                raise ConfigError(f"{source}: [{section}] {name}: {exc}",
                                  "fix the value; see config.example.toml") from None
        sections[section] = kind(**values)
    config = Config(source=source, sections=tuple(data), **sections)
    _cross_check(config, source)
    return config


def defaults() -> Config:
    return Config()


def _read_text(path: Path, what: str, fix: str) -> str:
    """A small regular file's UTF-8 text; a ConfigError naming `what` and the cause otherwise."""
    try:
        info = path.stat()
        if stat.S_ISDIR(info.st_mode):
            raise ConfigError(f"{what} {path}: is a directory", fix)
        if not stat.S_ISREG(info.st_mode):
            raise ConfigError(f"{what} {path}: not a regular file (a device, FIFO or socket)", fix)
        if info.st_size > MAX_POLICY_BYTES:
            raise ConfigError(f"{what} {path}: {info.st_size} bytes, more than the {MAX_POLICY_BYTES} allowed", fix)
        return path.read_bytes()[:MAX_POLICY_BYTES].decode("utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{what} {path}: no such file", fix) from None
    except PermissionError:
        raise ConfigError(f"{what} {path}: permission denied",
                          "run as root or make the file readable by this user") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{what} {path}: not UTF-8 text ({exc.reason} at byte {exc.start})",
                          "save the file as UTF-8") from None
    except OSError as exc:  # a symlink loop, a name too long, an I/O error
        raise ConfigError(f"{what} {path}: {exc.strerror or exc}", fix) from None


def load(path: Path) -> Config:
    """Read and validate a policy file (and its urls_file), judging each file's permissions on its own secrets."""
    text = _read_text(path, "policy", "give an existing policy file with -c, or copy config.example.toml there")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}", "fix the syntax; see config.example.toml") from None
    if not data:  # a file truncated by an editor or a config-management run: not a wish for every default
        raise ConfigError(f"{path}: empty (no section, no key): every key would silently return to its default",
                          "restore the policy (config.example.toml lists every key); to run on the built-in "
                          "defaults on purpose, write one section header such as [sampling] in it")
    config = from_mapping(data, str(path))
    _judge_exposure(path, secrets_in(config.alerts), config.alerts.readable_config)
    if config.alerts.urls_file:
        urls_file = Path(config.alerts.urls_file)
        extra = _urls_from(urls_file, config.source)
        _judge_exposure(urls_file, extra, config.alerts.readable_config)
        config = replace(config, alerts=replace(config.alerts, urls=config.alerts.urls + extra))
    return config


def receivers(alerts: AlertsConfig) -> list[str]:
    """Where alerts go, redacted for showing: each apprise URL, then Alertmanager."""
    return [redact(url) for url in alerts.urls] + (
        [f"alertmanager {redact(alerts.alertmanager)}"] if alerts.alertmanager else [])


# Said at start, by `status`, `doctor` and `check-config` when a policy sends alerts nowhere.
NO_RECEIVERS = "no receivers ([alerts] urls and alertmanager are empty): alerts reach only this host's log and console"
NO_RECEIVERS_FIX = ("add an apprise URL to [alerts] urls (Slack: \"slack://TokenA/TokenB/TokenC\", email: "
                    "\"mailtos://user:password@smtp.example.com?to=oncall@example.com\", a webhook: "
                    "\"json://hooks.example.com/oomguard\") or set [alerts] alertmanager, then restart oomguard")


def secrets_in(alerts: AlertsConfig) -> tuple[str, ...]:
    """What in this section would leak if read by others: alert URLs, and an Alertmanager URL with credentials."""
    with_password = (alerts.alertmanager,) if "@" in alerts.alertmanager.partition("://")[2].split("/")[0] else ()
    return alerts.urls + with_password


def _judge_exposure(path: Path, secrets: tuple[str, ...], policy: str) -> None:
    try:
        mode = path.stat().st_mode
    except OSError:
        return
    exposure = secret_exposure(mode, secrets)
    if exposure and policy == "refuse":
        raise ConfigError(f"{path}: {exposure}", f"chmod 600 {path} (or set [alerts] readable_config = \"warn\")")
    if exposure:
        log.warning("%s: %s; fix: chmod 600 %s", path, exposure, path)


def _urls_from(path: Path, source: str) -> tuple[str, ...]:
    """The URLs listed in `path`, one per line (# comments)."""
    what = f"{source}: [alerts] urls_file"
    text = _read_text(path, what, "create the file (one apprise URL per line) or set urls_file = \"\"")
    extra = tuple(line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#"))
    try:
        return _url_list(list(extra))
    except ValueError as exc:
        raise ConfigError(f"{what} {path}: {exc}", "one apprise URL per line") from None


def secret_exposure(mode: int, secrets: tuple[str, ...]) -> str | None:
    """Why a file with these secrets (alert URLs carry tokens and passwords) leaks them at `mode`, or None."""
    if not secrets or not mode & 0o044:
        return None
    who = "every user" if mode & 0o004 else "its group"
    return f"holds alert URLs (secrets) and is readable by {who} (mode {mode & 0o777:o})"


def load_or_defaults(path: Path | None) -> Config:
    """The given file; else /etc/oomguard/config.toml if present; else the built-in defaults."""
    if path is not None:
        return load(path)
    if DEFAULT_PATH.exists():
        return load(DEFAULT_PATH)
    return defaults()


def lost_sections(old: Config, new: Config) -> list[str]:
    """Sections the running policy's file had that the new file lacks: a half-written file, refused on reload
    (every key in them would silently return to its default)."""
    return [f"[{section}]" for section in old.sections if section not in new.sections]


def needs_restart(old: Config, new: Config) -> list[str]:
    """The changed keys a SIGHUP cannot apply ("[section] key"), in schema order."""
    changed = []
    for section in SECTIONS:
        for name, spec in section_keys(section).items():
            before, after = getattr(getattr(old, section), name), getattr(getattr(new, section), name)
            if spec.metadata["restart"] and before != after:
                changed.append(f"[{section}] {name}")
    return changed


def live_part(old: Config, new: Config) -> Config:
    """`new` with every restart-only key kept at its `old` value: what a SIGHUP puts in force."""
    sections = {}
    for section in SECTIONS:
        kept = {name: getattr(getattr(old, section), name)
                for name, spec in section_keys(section).items() if spec.metadata["restart"]}
        sections[section] = replace(getattr(new, section), **kept)
    return replace(new, **sections)
