"""The TOML policy: parsed, validated against one schema, turned into typed dataclasses.

Every key, its default and its check live in SCHEMA below; config.example.toml
documents the same keys and a test keeps the two in step. An error names the
file, the key and what is wrong; an unknown key names the nearest valid one.
"""

from __future__ import annotations

import difflib
import logging
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

from .errors import OomguardError
from .units import parse_duration, parse_size

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

DEFAULT_PATH = Path("/etc/oomguard/config.toml")
log = logging.getLogger("oomguard")


class ConfigError(OomguardError):
    pass


def _int_in(low: int, high: int) -> Callable[[Any], int]:
    def check(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"expected an integer, got {type(value).__name__} {value!r}")
        if not low <= value <= high:
            raise ValueError(f"must be between {low} and {high}, got {value}")
        return value
    return check


def _duration_in(low: float, high: float) -> Callable[[Any], float]:
    def check(value: Any) -> float:
        seconds = parse_duration(value)
        if not low <= seconds <= high:
            raise ValueError(f"must be between {low}s and {high}s, got {seconds}s")
        return seconds
    return check


def _fraction(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise ValueError(f"expected a fraction from 0 to below 1 (0.05 = 5%), got {value!r}")
    return float(value)


def _http_url(value: Any) -> str:
    if not isinstance(value, str) or not (value == "" or value.startswith(("http://", "https://"))):
        raise ValueError(f'expected "" (off) or an http(s):// URL such as "http://alertmanager:9093", got {value!r}')
    return value


def _listen_address(value: Any) -> str:
    host, _, port = value.rpartition(":") if isinstance(value, str) else ("", "", "")
    if value == "":
        return value
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f'expected "" (off) or HOST:PORT such as "127.0.0.1:9843", got {value!r}')
    return value


def _optional_path(value: Any) -> str:
    if value == "":
        return value
    return str(_absolute_path(value))


def _positive_float(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"expected a positive number, got {value!r}")
    return float(value)


def _size_value(value: Any) -> int:
    return parse_size(value)


def _one_of(*choices: str) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        if value not in choices:
            raise ValueError(f"expected one of {', '.join(map(repr, choices))}, got {value!r}")
        return value
    return check


def _absolute_path(value: Any) -> Path:
    if not isinstance(value, str) or not value.startswith("/"):
        raise ValueError(f"expected an absolute path string, got {value!r}")
    return Path(value)


def _url_list(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(url, str) and "://" in url for url in value):
        raise ValueError('expected a list of apprise URLs such as ["mailto://user:pass@example.com"]')
    return tuple(value)


def _string_list(must_start_with: str = "") -> Callable[[Any], tuple[str, ...]]:
    def check(value: Any) -> tuple[str, ...]:
        if not isinstance(value, list) or not all(isinstance(v, str) and v.startswith(must_start_with) for v in value):
            kind = "cgroup paths starting with /" if must_start_with else "strings"
            raise ValueError(f"expected a list of {kind}, got {value!r}")
        return tuple(value)
    return check


@dataclass(frozen=True)
class Key:
    check: Callable[[Any], Any]
    default: Any


# section -> key -> (check, default). Defaults are the parsed values.
SCHEMA: dict[str, dict[str, Key]] = {
    "sampling": {
        "interval": Key(_duration_in(0.1, 60), 1.0),
        "target_events_per_sec": Key(_int_in(100, 10_000_000), 20_000),
        "initial_rate": Key(_int_in(1, 1 << 24), 64),
        "max_pids": Key(_int_in(1024, 1 << 20), 16384),
    },
    "selection": {
        "include_cgroups": Key(_string_list("/"), ()),
        "exclude_cgroups": Key(_string_list("/"), ()),
        "include_commands": Key(_string_list(), ()),
        "exclude_commands": Key(_string_list(), ()),
    },
    "alerts": {
        "urls": Key(_url_list, ()),
        "urls_file": Key(_optional_path, ""),
        "readable_config": Key(_one_of("warn", "refuse"), "warn"),
        "horizon": Key(_duration_in(5, 3600), 60.0),
        "headroom_floor": Key(_fraction, 0.05),
        "cooldown": Key(_duration_in(0, 86400), 600.0),
        "max_per_hour": Key(_int_in(1, 10_000), 30),
        "alertmanager": Key(_http_url, ""),
    },
    "detect": {
        "window": Key(_int_in(12, 3600), 120),
        "blocks": Key(_int_in(3, 60), 6),
        "envelope_fit": Key(_fraction, 0.8),
        "short_window": Key(_int_in(2, 60), 8),
        "warmup": Key(_int_in(0, 3600), 30),
        "anomaly_factor": Key(_positive_float, 2.0),
        "min_growth": Key(_size_value, 262144),
        "peak_half_life": Key(_duration_in(60, 7 * 86400), 3600.0),
        "learn_after": Key(_duration_in(0, 3600), 60.0),
        "screen_sigma": Key(_positive_float, 4.0),
    },
    "metrics": {
        "listen": Key(_listen_address, "127.0.0.1:9843"),
        "top_pids": Key(_int_in(0, 1000), 20),
        "max_containers": Key(_int_in(0, 100_000), 1000),
    },
    "attribution": {
        "pods_log_dir": Key(_absolute_path, Path("/var/log/pods")),
        "containers_log_dir": Key(_absolute_path, Path("/var/log/containers")),
    },
    "state": {
        "dir": Key(_absolute_path, Path("/var/lib/oomguard")),
    },
    "output": {
        "top_pids": Key(_int_in(0, 1000), 10),
    },
}


@dataclass(frozen=True)
class SamplingConfig:
    interval: float
    target_events_per_sec: int
    initial_rate: int
    max_pids: int


@dataclass(frozen=True)
class SelectionConfig:
    include_cgroups: tuple[str, ...]
    exclude_cgroups: tuple[str, ...]
    include_commands: tuple[str, ...]
    exclude_commands: tuple[str, ...]


@dataclass(frozen=True)
class AlertsConfig:
    urls: tuple[str, ...]  # with those of urls_file, once loaded
    urls_file: str  # a file of more URLs, one per line (a mounted Kubernetes Secret), "" for none
    readable_config: str  # "warn" or "refuse" when a file with URLs is readable by others
    horizon: float  # seconds: warn when the forecast OOM is closer than this
    headroom_floor: float  # fraction of the limit: warn when less is free
    cooldown: float  # seconds after an alert closes before the same cgroup can alert again
    max_per_hour: int  # new pre-OOM alerts per hour, all cgroups together
    alertmanager: str  # base URL of an Alertmanager, "" for none


@dataclass(frozen=True)
class DetectSection:
    window: int  # samples of usage history per cgroup
    blocks: int  # peaks the envelope forecast is fitted through
    envelope_fit: float  # R^2 the peaks must reach
    short_window: int  # samples of the short-term forecast
    warmup: int  # samples before the anomaly test may warn
    anomaly_factor: float  # growth this many times the cgroup's usual 0.99-quantile is anomalous
    min_growth: int  # bytes/s: never anomalous below this
    peak_half_life: float  # seconds: how fast the memory of a past growth burst fades
    learn_after: float  # seconds: growth counts as usual only this long after it is seen
    screen_sigma: float  # per-process RSS growth flagged this many deviations above its norm


@dataclass(frozen=True)
class MetricsConfig:
    listen: str  # HOST:PORT of the Prometheus exporter, "" for none
    top_pids: int  # per-process series: only the top N by allocation rate
    max_containers: int  # per-container series: at most this many


@dataclass(frozen=True)
class AttributionConfig:
    pods_log_dir: Path
    containers_log_dir: Path


@dataclass(frozen=True)
class StateConfig:
    dir: Path


@dataclass(frozen=True)
class OutputConfig:
    top_pids: int


@dataclass(frozen=True)
class Config:
    sampling: SamplingConfig
    selection: SelectionConfig
    alerts: AlertsConfig
    detect: DetectSection
    metrics: MetricsConfig
    attribution: AttributionConfig
    state: StateConfig
    output: OutputConfig
    source: str  # the file it came from, or "built-in defaults"


_SECTION_TYPES = {
    "sampling": SamplingConfig, "selection": SelectionConfig, "alerts": AlertsConfig, "detect": DetectSection, "metrics": MetricsConfig, "attribution": AttributionConfig,
    "state": StateConfig, "output": OutputConfig,
}


def _nearest(name: str, choices) -> str:
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.5)
    return f" (did you mean {close[0]!r}?)" if close else f" (valid: {', '.join(sorted(choices))})"


def from_mapping(data: dict[str, Any], source: str) -> Config:
    """Validate a parsed TOML document; missing keys take their defaults."""
    for section, body in data.items():
        if section not in SCHEMA:
            raise ConfigError(f"{source}: unknown section [{section}]{_nearest(section, SCHEMA)}",
                              "remove it or fix its name")
        if not isinstance(body, dict):
            raise ConfigError(f"{source}: {section} must be a table ([{section}]), got {type(body).__name__}",
                              f"write it as a [{section}] section")
        for key in body:
            if key not in SCHEMA[section]:
                raise ConfigError(f"{source}: unknown key [{section}] {key}{_nearest(key, SCHEMA[section])}",
                                  "remove it or fix its name")
    sections = {}
    for section, keys in SCHEMA.items():
        body = data.get(section, {})
        values = {}
        for key, spec in keys.items():
            if key not in body:
                values[key] = spec.default
                continue
            try:
                values[key] = spec.check(body[key])
            except ValueError as exc:
                raise ConfigError(f"{source}: [{section}] {key}: {exc}", "fix the value; see config.example.toml") from None
        sections[section] = _SECTION_TYPES[section](**values)
    return Config(source=source, **sections)


def defaults() -> Config:
    return from_mapping({}, "built-in defaults")


def load(path: Path) -> Config:
    """Read and validate a policy file."""
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file", "give an existing file with -c, or copy config.example.toml there") from None
    except PermissionError:
        raise ConfigError(f"{path}: permission denied", "run as root or make the file readable by this user") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory", "give the policy file itself") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})", "save the file as UTF-8") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}", "fix the syntax; see config.example.toml") from None
    config = from_mapping(data, str(path))
    if config.alerts.urls_file:
        config = _with_urls_from(Path(config.alerts.urls_file), config)
    exposure = secret_exposure(path.stat().st_mode, config)
    if exposure and config.alerts.readable_config == "refuse":
        raise ConfigError(f"{path}: {exposure}", f"chmod 600 {path} (or set [alerts] readable_config = \"warn\")")
    if exposure:
        log.warning("%s: %s; fix: chmod 600 %s", path, exposure, path)
    return config


def _with_urls_from(path: Path, config: Config) -> Config:
    """Add the URLs listed in `path` (one per line, # comments) to [alerts] urls."""
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise ConfigError(f"{config.source}: [alerts] urls_file {path}: {exc.strerror}",
                          "create the file (one apprise URL per line) or set urls_file = \"\"") from None
    extra = tuple(line.strip() for line in lines if line.strip() and not line.strip().startswith("#"))
    try:
        _url_list(list(extra))
    except ValueError as exc:
        raise ConfigError(f"{config.source}: [alerts] urls_file {path}: {exc}", "one apprise URL per line") from None
    return replace(config, alerts=replace(config.alerts, urls=config.alerts.urls + extra))


def secret_exposure(mode: int, config: Config) -> str | None:
    """Why the file's permissions leak its alert URLs (which carry tokens and passwords), or None."""
    if not config.alerts.urls or not mode & 0o044:
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
