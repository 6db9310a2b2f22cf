"""Detection quality: oomguard beside the alert rules operators use today, class by class, on train seeds,
held-out seeds and recordings of real software.

Every detector runs over the same per-second working-set series (see
scenarios.py for the classes and their parameter ranges) through the same
alert lifecycle (AlertBook: one alert per cgroup, 60 s horizon, cooldown);
the kernel kills where a series reaches its limit. The rules (baselines/rules.py)
have one severity, so they are compared with oomguard's critical alerts.

Scored per class:
  OOM classes     recall (kills preceded by an alert of either severity), median lead of the first alert,
                  median critical lead, and that lead as a share of what was achievable:
                  min(time from growth onset to the kill, horizon)
  benign classes  false warnings and false criticals per 24 h of benign time
Beside each rule, class by class: oomguard's first alert (either severity) against the rule's alert for
lead, and all of oomguard's false alerts (warnings too) against the rule's for false alarms.
  multi-process   whether the first alert names the culprit process first

Tune on --suite train only; held-out seeds and recordings are the evidence. After train, the trade-off: train
again at lower `trust`, to show whether any setting meets both "0 false criticals" and the lead target.

    .venv/bin/python bench/detect.py                 (no root, no kernel; ~2.2 minutes)
    .venv/bin/python bench/detect.py --runs 12       (quicker, noisier)
"""

from __future__ import annotations

import argparse
import functools
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from scenarios import (
    BENIGN_CLASSES,
    FRESH_MAX_KILL_S,
    FRESH_MIN_RATE,
    HELD_OUT_SEEDS,
    OOM_CLASSES,
    SPENT_SEEDS,
    TRAIN_SEEDS,
    Trace,
    culprit_at,
    suite,
)

from oomguard.alerting.lifecycle import CRITICAL, AlertBook
from oomguard.bpf.events import OomKill
from oomguard.config import defaults
from oomguard.detection.culprit import name_culprits
from oomguard.detection.detector import CgroupDetector, Verdict
from oomguard.detection.screen import Screens
from oomguard.identity.attribution import attribute
from oomguard.kills.report import KillReport
from oomguard.sampling.rates import Rates
from oomguard.service.recording import read_recording

import common  # noqa: F401  (puts src/ on the import path)

sys.path.insert(0, str(Path(__file__).with_name("baselines")))
from rules import RULES

MIB = 1 << 20
DAY = 86400
TARGETS = {"recall": 0.98, "critical_share": 0.70, "min_critical_lead_s": 10.0, "slow_warning_lead_s": 600.0,
           "false_criticals_per_day": 0.0, "false_warnings_per_day": 1.0, "culprit_first": 0.95, "cpu_share": 0.01}
SLOW = "slow leak (hours)"


@dataclass
class Outcome:
    """One trace under one detector."""

    trace: Trace
    kill_at: int | None  # second the usage reached the limit
    first_alert_at: float | None = None
    first_alert_climb: float = 0.0  # bytes/s: the climb the first alert reports (oomguard's verdict), for the culprit
    climbing_since: float | None = None  # when the daemon would have counted each process's descriptors (oomguard)
    lead_s: float | None = None  # first alert (either severity) to the kill
    critical_lead_s: float | None = None
    false_warnings: int = 0  # alerts on a cgroup never killed, that stayed warnings
    false_criticals: int = 0
    culprit_first: bool | None = None  # None: not a multi-process trace, or no alert
    severities: list[str] = field(default_factory=list)


DETECT_OVERRIDES: dict[str, float] = {}  # --detect KEY=VALUE: to tune on the train suite


class OomguardRule:
    """oomguard's detector behind the rules' interface: a severity per row and tick."""

    name = "oomguard"

    def __init__(self, rows: int, overrides: dict[str, float] | None = None):
        config = defaults()
        a = config.alerts
        detect = replace(config.detect, **(DETECT_OVERRIDES if overrides is None else overrides))
        self.detector = CgroupDetector(detect, a.horizon, a.warn_horizon, a.headroom_floor)
        self.climbs: dict[int, float] = {}  # row -> the slope of its last verdict: what the daemon explains
        # row -> the tick its climb was first seen (or its container started), as the daemon's OpenedSince
        # counts descriptors then (after the tick's alerts are explained: `counted` is what this tick's
        # explanations could use)
        self.since: dict[int, float] = {}
        self.counted: dict[int, float] = {}
        self.verdicts: dict[str, Verdict] = {}  # the last tick's, by cgroup

    def step(self, rows: np.ndarray, now: float, usage: np.ndarray, limit: np.ndarray) -> list[str]:
        verdicts = self.detector.update_all([f"/t{r}" for r in rows.tolist()], now, usage, limit)
        self.verdicts = {v.cgroup: v for v in verdicts}  # the alert book clears an alert whose climb stopped
        self.climbs = {r: v.slope_bytes_per_s for r, v in zip(rows.tolist(), verdicts, strict=True) if v.severity}
        self.counted = dict(self.since)
        young = self.detector.young(-1.0, now)  # every trace is a container started under a running daemon
        self.since = {r: self.since.get(r, now) for r, v in zip(rows.tolist(), verdicts, strict=True)
                      if v.climbing or v.severity or f"/t{r}" in young}
        return [v.severity for v in verdicts]


def kill_report(cgroup: str) -> KillReport:
    """A kill in `cgroup`, matched to its alert by the cgroup alone: the bench's alerts name no processes (a
    victim pid would confirm any alert that holds it: with pid 1, every kill confirmed row 1's open alert)."""
    return KillReport(OomKill(0, 0, "bench", 0, 0, 0, 0, 0, 0, 0, "bench", 0), None, attribute(cgroup),
                      None, None, None)


def run(traces: list[Trace], make: Callable[[int], object], horizon: float) -> list[Outcome]:
    """Every trace at once (one row each), second by second, through one detector and one AlertBook."""
    rule = make(len(traces))
    book = AlertBook(horizon, cooldown_s=600, max_per_hour=10**9)  # the budget protects receivers, not scored
    lengths = np.array([len(t.usage) for t in traces])
    width = int(lengths.max())
    usage = np.full((len(traces), width), np.nan)
    for i, t in enumerate(traces):
        usage[i, : len(t.usage)] = np.maximum(t.usage, 0)
    limits = np.array([float(t.limit) for t in traces])
    outcomes = [Outcome(t, None) for t in traces]
    alive = np.ones(len(traces), dtype=bool)
    ids = iter(range(10**9))
    for second in range(width):
        alive &= lengths > second
        rows = np.flatnonzero(alive)
        if not len(rows):
            break
        now = float(second)
        u = usage[rows, second]
        for r in rows[u >= limits[rows]].tolist():  # the kernel kills here
            outcomes[r].kill_at = second
            closed = book.kill(kill_report(f"/t{r}"), now)
            if closed is not None:
                outcomes[r].lead_s = closed.lead_s
                outcomes[r].critical_lead_s = closed.critical_lead_s
            alive[r] = False
        keep = u < limits[rows]
        rows, u = rows[keep], u[keep]
        fired = rule.step(rows, now, u, limits[rows])  # type: ignore[attr-defined]
        for r, severity in zip(rows.tolist(), fired, strict=True):
            if not severity:
                continue
            level = severity if isinstance(severity, str) else CRITICAL  # the rules fire at one severity
            decision = book.warn(str(next(ids)), f"/t{r}", (), now, level)
            if decision is not None and outcomes[r].first_alert_at is None:
                outcomes[r].first_alert_at = now
                outcomes[r].first_alert_climb = getattr(rule, "climbs", {}).get(r, 0.0)
                outcomes[r].climbing_since = getattr(rule, "counted", {}).get(r)
        # as the daemon: oomguard's alerts also clear when their climb stops; the rules' only by the horizon
        for closed in book.expire(now, {f"/t{r}" for r in np.flatnonzero(alive).tolist()},
                                  getattr(rule, "verdicts", None)):
            _count_false(outcomes[int(closed.alert.cgroup[2:])], closed.alert.severity)
    for cgroup, alert in list(book.open.items()):  # open when the run ended without a kill
        _count_false(outcomes[int(cgroup[2:])], alert.severity)
    return outcomes


def _count_false(outcome: Outcome, severity: str) -> None:
    if outcome.trace.oom:
        return  # an early alert on a series that is killed later is not a false alarm
    if severity == CRITICAL:
        outcome.false_criticals += 1
    else:
        outcome.false_warnings += 1


def benign_days(outcomes: list[Outcome]) -> float:
    """Days of benign time in these runs: what false alerts are counted per."""
    return sum(len(o.trace.usage) for o in outcomes if not o.trace.oom) / DAY


def alert_forced(trace: Trace, horizon: float, share: float = TARGETS["critical_share"]) -> bool | None:
    """Whether any detector meeting the critical-lead target must alert on this benign trace.

    Its first climb is a straight line (params from scenarios._ramp); a leak going on at that rate from the
    same start (its twin, with the same samples up to the climb's end) reaches the limit at K. Meeting
    the target on the twin means a critical alert by K - share x min(K - start, horizon) (share 0.7: the
    target; 1: the whole horizon, what oomguard aims at). If the benign climb
    is still the twin's series at that moment, and the twin is a leak the OOM classes hold (at least
    0.5 MiB/s, killed at most 10 min after its start; faster is no less a leak), the benign trace must be
    alerted on: nothing in the samples tells them apart yet. None: the trace's first climb is not a
    straight line (no twin defined)."""
    p = trace.params
    if "ramp_rate" not in p:
        return None
    start, end, base, rate = p["ramp_start"], p["ramp_end"], p["ramp_base"], p["ramp_rate"]
    if rate <= 0:
        return False
    growth = (trace.limit - base) / rate
    latest = start + growth - share * min(growth, horizon)
    return end >= latest and rate >= FRESH_MIN_RATE and growth <= FRESH_MAX_KILL_S


@dataclass(frozen=True)
class Forced:
    """Benign runs a detector must alert on to meet the lead target on their leak twins (alert_forced), and
    the runs oomguard alerted on, split the same way."""

    runs: int  # benign runs
    twins: int  # of them, with a straight first climb (a twin to judge by)
    at_target: int  # forced for 70% of the horizon
    at_horizon: int  # forced for all of it
    floor_per_day: float  # false criticals/24 h of any detector meeting the target on every twin: at_target's
    alerted: int  # runs with a false critical from oomguard ...
    alerted_at_target: int  # ... forced for 70%
    alerted_at_horizon: int  # ... forced only for the whole horizon

    def __str__(self) -> str:
        return (f"{self.alerted} runs: {self.alerted_at_target} of them needed for 70%, {self.alerted_at_horizon} "
                f"more for the whole horizon, {self.alerted - self.alerted_at_target - self.alerted_at_horizon} "
                f"neither")


def forced(outcomes: list[Outcome], horizon: float) -> Forced:
    # per benign run: (has a false critical, forced for 70% of the horizon, forced for all of it)
    judged = [(o.false_criticals > 0, alert_forced(o.trace, horizon), alert_forced(o.trace, horizon, 1.0))
              for o in outcomes if not o.trace.oom]
    twins = [j for j in judged if j[1] is not None]
    at_target = sum(bool(t) for _, t, _ in twins)
    ours = [(t, w) for alerted, t, w in judged if alerted]
    days = benign_days(outcomes)
    return Forced(len(judged), len(twins), at_target, sum(bool(w) for _, _, w in twins), at_target / days,
                  len(ours), sum(bool(t) for t, _ in ours), sum(bool(w) and not t for t, w in ours))


def forced_report(f: Forced) -> str:
    return (f"benign runs that are, until past the critical alert their leak twin needs, that leak "
            f"(see alert_forced): {f.at_target} for 70% of the horizon, {f.at_horizon} for all of it, of "
            f"{f.twins} with a straight first climb ({f.runs} benign runs): a detector meeting the target "
            f"on every twin has at least {f.floor_per_day:.1f} false criticals/24h here.\noomguard's false "
            f"criticals: {f}")


def culprit_named_first(trace: Trace, at: float, climb: float, since: float | None = None) -> bool | None:
    """Whether the culprit ranks first from the per-process signals as the daemon smooths them, at `at`, for
    an alert on a cgroup climbing `climb` bytes/s (the verdict's slope, as the daemon passes it), whose
    processes' descriptors were counted at `since` (None: not counted before the alert)."""
    p = trace.processes
    if p is None:
        return None
    screens = Screens(sigma=defaults().detect.screen_sigma)
    pids = np.arange(1, len(p.rss) + 1, dtype=np.uint32)
    end = min(int(at) + 1, p.rss.shape[1])
    none = np.zeros(len(pids), dtype=np.int64)
    for s in range(1, end):  # one tick a second, as the daemon's Rates
        screens.update(Rates(1.0, pids, p.kmalloc_rate[:, s], p.page_rate[:, s], none, none, p.rss[:, s],
                             p.rss[:, s] - p.rss[:, s - 1]))
    smoothed = screens.smoothed()
    # what /proc shows at the alert
    fds = p.descriptors if p.descriptors is not None else np.full((len(pids), end), 40.0)
    opened = np.zeros(len(pids))
    if since is not None and end - 1 - int(since) >= 1:  # as descriptors.OpenedSince.rate
        opened = (fds[:, end - 1] - fds[:, int(since)]) / (end - 1 - int(since))
    held = (p.held[:, end - 1] if p.held is not None else np.zeros(len(pids)), fds[:, end - 1], opened)
    named = name_culprits(pids, smoothed["RSS"], smoothed["page allocations"], smoothed["kmalloc"], climb=climb,
                          held=lambda _: held)
    return bool(named) and named[0].pid == culprit_at(p, end - 1) + 1


def recorded(directory: Path) -> list[Trace]:
    """Recordings of real software (bench/traces/*.jsonl.gz, `oomguard record`): one Trace per limited cgroup."""
    traces = []
    for path in sorted(directory.glob("*.jsonl.gz")):
        _, lines = read_recording(path)
        usage: dict[str, list[float]] = {}
        limit: dict[str, int] = {}
        killed: set[str] = set()
        for line in lines:
            for seen in line.get("subjects") or line.get("observations") or []:
                if seen["cgroup"] != "/":
                    usage.setdefault(seen["cgroup"], []).append(seen["usage"])
                    limit[seen["cgroup"]] = seen["limit"]
            if "kill" in line and line["kill"]["record"]:
                killed.add(line["kill"]["record"]["oom_memcg"])
        for cgroup, values in usage.items():
            if len(values) < 10:
                continue
            series = np.array(values, dtype=float)
            if cgroup in killed:  # the recording ends at the kill: the series reaches the limit there
                series = np.append(series, limit[cgroup])
            name = f"{path.name.split('.')[0]}: {cgroup.rsplit('/', 1)[-1]}"
            traces.append(Trace(name, series, limit[cgroup], cgroup in killed, growth_onset(series, limit[cgroup])))
    return traces


def growth_onset(series: np.ndarray, limit: float) -> int:
    """The last sample still within 1% of the limit of where the series started, before it first reaches half
    the limit: a recorded leak that was quiet first (bench/record_traces.py: 90 s) grows from there, not
    from the recording's start. (Not the last such sample overall: a recording can read 0 on the tick of the
    kill.)"""
    half = np.flatnonzero(series >= 0.5 * limit)
    before = series[: max(int(half[0]), 1)] if len(half) else series
    return int(np.flatnonzero(before <= series[0] + 0.01 * limit)[-1])


# -- scoring ---------------------------------------------------------------


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


@dataclass
class ClassScore:
    runs: int
    recall: float | None = None
    lead: float | None = None  # median, first alert
    critical_lead: float | None = None  # median
    critical_share: float | None = None  # median of critical lead / achievable
    share_interval: tuple[float, float] | None = None  # 90% bootstrap interval of that median
    growth_s: float | None = None  # median time from onset to the kill
    false_warnings_per_day: float | None = None
    false_criticals_per_day: float | None = None
    culprit_first: float | None = None


def score_class(outcomes: list[Outcome], horizon: float) -> ClassScore:
    s = ClassScore(len(outcomes))
    kills = [o for o in outcomes if o.kill_at is not None]
    if outcomes[0].trace.oom:
        if kills:
            s.recall = sum(o.lead_s is not None for o in kills) / len(kills)
            s.lead = _median([o.lead_s or 0.0 for o in kills])
            s.critical_lead = _median([o.critical_lead_s or 0.0 for o in kills])
            shares = [(o.critical_lead_s or 0.0) / max(min(o.kill_at - o.trace.onset, horizon), 1)
                      for o in kills if o.kill_at is not None]
            s.critical_share, s.share_interval = _median(shares), median_interval(shares)
            s.growth_s = _median([float(o.kill_at - o.trace.onset) for o in kills if o.kill_at is not None])
        named = [o.culprit_first for o in outcomes if o.culprit_first is not None]
        s.culprit_first = sum(named) / len(named) if named else None
    else:
        days = benign_days(outcomes)
        s.false_warnings_per_day = sum(o.false_warnings for o in outcomes) / days
        s.false_criticals_per_day = sum(o.false_criticals for o in outcomes) / days
    return s


def median_interval(values: list[float], resamples: int = 2000, level: float = 0.9) -> tuple[float, float]:
    """The `level` bootstrap interval of the median of `values` (seeded: the same runs give the same
    interval). A class of 12 runs whose share of short climbs varies from range to range has a median that
    moves by several points: a verdict on it is only as good as this interval."""
    draws = np.random.default_rng(0).choice(np.asarray(values), size=(resamples, len(values)))
    medians = np.median(draws, axis=1)
    return float(np.quantile(medians, (1 - level) / 2)), float(np.quantile(medians, (1 + level) / 2))


def by_class(outcomes: list[Outcome], horizon: float) -> dict[str, ClassScore]:
    groups: dict[str, list[Outcome]] = {}
    for o in outcomes:
        groups.setdefault(o.trace.name, []).append(o)
    return {name: score_class(group, horizon) for name, group in groups.items()}


def _s(x: float | None, fmt: str = "{:.0f}s") -> str:
    return "-" if x is None else fmt.format(x)


def cell(s: ClassScore, ours: bool) -> str:
    if s.false_criticals_per_day is not None:
        if ours:
            return f"{s.false_warnings_per_day:.1f}w {s.false_criticals_per_day:.1f}c"
        return f"{s.false_criticals_per_day:.1f}"
    if s.recall is None:
        return "no kill"
    if ours:
        return f"{s.recall:.0%} {_s(s.lead)} {_s(s.critical_lead)} {_s(s.critical_share, '{:.0%}')}"
    return f"{s.recall:.0%} {_s(s.critical_lead)}"


def print_table(title: str, scores: dict[str, dict[str, ClassScore]]) -> None:
    names = list(scores)
    classes = list(scores[names[0]])
    widths = [26 if n == "oomguard" else max(12, len(n)) for n in names]
    print(f"\n== {title}")
    print("OOM classes: recall, median lead (oomguard: first alert, critical, critical as % of achievable; rules: "
          "their alert).\nBenign classes: false alerts per 24 h (oomguard: warnings w, criticals c).")
    print(f"{'class':<36} {'runs':>4} {'growth':>7}  " + "  ".join(f"{n:<{w}}" for n, w in zip(names, widths)))
    for c in classes:
        ours = scores["oomguard"][c]
        print(f"{c[:36]:<36} {ours.runs:>4} {_s(ours.growth_s):>7}  "
              + "  ".join(f"{cell(scores[n][c], n == 'oomguard'):<{w}}" for n, w in zip(names, widths)))
    named = [f"{c} {s.culprit_first:.0%}" for c, s in scores["oomguard"].items() if s.culprit_first is not None]
    print("oomguard's first alert names the culprit process first: " + (", ".join(named) or "-"))


def verdicts(title: str, scores: dict[str, dict[str, ClassScore]], outcomes: list[Outcome]) -> list[str]:
    """The targets oomguard misses on this suite, and where a rule beats it (each a line); empty: all met."""
    ours = scores["oomguard"]
    misses = []
    kills = [o for o in outcomes if o.kill_at is not None and o.trace.oom]
    benign = [o for o in outcomes if not o.trace.oom]
    days = benign_days(benign)
    crit = sum(o.false_criticals for o in benign) / days if benign else 0.0
    warn = sum(o.false_warnings for o in benign) / days if benign else 0.0
    recall = sum(o.lead_s is not None for o in kills) / len(kills) if kills else 1.0
    print(f"oomguard overall: recall {recall:.1%} of {len(kills)} kills; false warnings {warn:.1f} and false "
          f"criticals {crit:.1f} per 24 h of {days * 24:.1f} h of benign runs")
    if recall < TARGETS["recall"]:
        misses.append(f"recall {recall:.1%} < {TARGETS['recall']:.0%}")
    for c, s in ours.items():
        target = TARGETS["critical_share"]
        if s.critical_share is not None and s.share_interval is not None:
            low, high = s.share_interval
            noisy = low < target <= high  # the target is inside the median's 90% interval: either way is chance
            judged = (f"too noisy to judge: its 90% interval {low:.0%}-{high:.0%} holds {target:.0%}" if noisy
                      else "missed" if s.critical_share < target else "")
            if judged:
                misses.append(f"{c}: critical lead {s.critical_share:.1%} of achievable ({judged})")
        if (s.critical_lead is not None and s.growth_s is not None and s.growth_s >= 20
                and s.critical_lead < TARGETS["min_critical_lead_s"]):
            misses.append(f"{c}: median critical lead {s.critical_lead:.0f}s < 10s")
        if c == SLOW and s.lead is not None and s.lead < TARGETS["slow_warning_lead_s"]:
            misses.append(f"{c}: median warning lead {s.lead:.0f}s < 600s")
        if s.culprit_first is not None and s.culprit_first < TARGETS["culprit_first"]:
            misses.append(f"{c}: culprit named first in {s.culprit_first:.0%} < 95%")
    if crit > TARGETS["false_criticals_per_day"]:
        misses.append(f"false criticals {crit:.1f}/24h > 0 on the benign classes")
    if warn > TARGETS["false_warnings_per_day"]:
        misses.append(f"false warnings {warn:.1f}/24h > 1 on the benign classes")
    for rule in [n for n in scores if n != "oomguard"]:  # an alert is an alert: first alert vs theirs, all alerts
        for c, s in ours.items():
            theirs = scores[rule][c]
            if (s.recall is not None and theirs.recall is not None
                    and (theirs.recall > s.recall + 1e-9 or (theirs.lead or 0) > (s.lead or 0) + 1)):
                misses.append(f"{c}: {rule} leads {_s(theirs.lead)} at {theirs.recall:.0%} recall, "
                              f"oomguard {_s(s.lead)} at {s.recall:.0%}")
            if s.false_criticals_per_day is not None and theirs.false_criticals_per_day is not None:
                ours_false = s.false_criticals_per_day + (s.false_warnings_per_day or 0.0)
                if ours_false > theirs.false_criticals_per_day:
                    misses.append(f"{c}: oomguard {ours_false:.1f} false alerts/24h (warnings and criticals), "
                                  f"{rule} {theirs.false_criticals_per_day:.1f}")
    print(f"\n{title}: " + ("oomguard meets every target and no rule beats it" if not misses else
                             f"oomguard MISSES {len(misses)}:\n  " + "\n  ".join(misses)))
    return misses


def evaluate(title: str, traces: list[Trace], horizon: float) -> tuple[list[str], list[Outcome]]:
    """The table for one suite and its verdicts: (the targets missed, oomguard's outcomes)."""
    if not traces:
        print(f"\n== {title}: no traces")
        return [], []
    scores, ours = {}, []
    for make in (OomguardRule, *RULES):
        started = time.perf_counter()
        outcomes = run(traces, make, horizon)
        name = make(0).name  # type: ignore[operator]
        if name == "oomguard":
            for o in outcomes:
                if o.first_alert_at is not None:
                    o.culprit_first = culprit_named_first(o.trace, o.first_alert_at, o.first_alert_climb,
                                                          o.climbing_since)
            ours = outcomes
        scores[name] = by_class(outcomes, horizon)
        print(f"  ({title}: {name} ran in {time.perf_counter() - started:.0f}s)", file=sys.stderr)
    print_table(title, scores)
    print(forced_report(forced(ours, horizon)))
    return verdicts(title, scores, ours), ours


TRADE_OFF = (2.0, 1.5, 1.0)  # `trust` below the default: extrapolating less and less far beyond the climb seen


def trade_off(traces: list[Trace], default: list[Outcome], horizon: float) -> None:
    """Whether any `trust` meets both "false criticals 0" and "critical lead >= 70% in every class", on the
    same runs: extrapolating less far silences fewer benign fills than it costs the fast leaks in lead,
    because a fill is, sample for sample, a leak at its rate until it stops (`alert_forced`). Tunes nothing:
    the default (its outcomes `default`, from the train table's run) stays what train chose; this prints the
    frontier it sits on. `settled_trust` keeps its ratio to `trust`."""
    print("\n== the trade-off on the same runs: trust (settled_trust) -> false criticals, lowest critical share")
    d = replace(defaults().detect, **DETECT_OVERRIDES)
    for trust in (d.trust, *TRADE_OFF):
        settled = trust * d.settled_trust / d.trust
        outcomes = (default if trust == d.trust else
                    run(traces, functools.partial(OomguardRule, overrides={"trust": trust, "settled_trust": settled}),
                        horizon))
        shares = {c: s.critical_share for c, s in by_class(outcomes, horizon).items() if s.critical_share is not None}
        crit = sum(o.false_criticals for o in outcomes) / benign_days(outcomes)  # only benign runs count them
        under = sorted((share, c) for c, share in shares.items() if share < TARGETS["critical_share"])
        lowest = min((share, c) for c, share in shares.items())
        print(f"trust {trust:g} ({settled:g}): false criticals {crit:.1f}/24h ({forced(outcomes, horizon)}); "
              f"lowest critical share {lowest[0]:.0%} ({lowest[1]}); under 70%: "
              + (", ".join(f"{c} {share:.0%}" for share, c in under) or "none"))


def cpu_share(pids: int = 10_000, cgroups: int = 500, ticks: int = 60) -> tuple[float, int]:
    """Detection work per 1 s tick at `pids` processes and `cgroups` limited cgroups, as a share of one core:
    the median tick (this VM's timing wanders by +-30%; the median of 60 ticks is what a tick costs); and the
    bytes of the detector's per-cgroup history (values, times, lower envelope)."""
    rng = np.random.default_rng(0)
    config = defaults()
    a = config.alerts
    detector = CgroupDetector(config.detect, a.horizon, a.warn_horizon, a.headroom_floor)
    screens = Screens(config.detect.screen_sigma)  # as the daemon's: RSS growth, page, kmalloc, high-water marks
    pid = np.arange(1, pids + 1, dtype=np.uint32)
    names = [f"/c{c}" for c in range(cgroups)]
    limits = np.full(cgroups, 512.0 * MIB)
    warm = config.detect.window  # a full window: every rung of the ladder runs
    spent = []
    rss, none = np.full(pids, 50.0 * MIB), np.zeros(pids, dtype=np.int64)
    for t in range(ticks + warm):
        slopes = rng.normal(0, MIB, pids)
        rss += slopes
        usage = (200 + rng.normal(0, 2, cgroups) + 0.5 * t) * MIB
        rates = Rates(1.0, pid, np.abs(slopes), np.abs(slopes), none, none, rss, slopes)
        start = time.perf_counter()
        screens.update(rates)  # smoothed() is read only for an alert's message, as in the daemon
        detector.update_all(names, float(t), usage, limits)
        if t >= warm:
            spent.append(time.perf_counter() - start)
    history = sum(a.nbytes for a in (detector._values, detector._times, detector._low))
    return statistics.median(spent), history


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    # 48: at 12 a class's median moved by several points from range to range (sudden jumps' 90% interval
    # was 60-77%, "too noisy to judge") and a range's false criticals by a third (2.0 vs 2.8 per 24 h at 48)
    parser.add_argument("--runs", type=int, default=48, help="seeded runs per OOM class (benign: half, 2 h each)")
    parser.add_argument("--suite", choices=("all", "train", "held-out", "spent", "recorded"), default="all")
    parser.add_argument("--detect", action="append", default=[], metavar="KEY=VALUE",
                        help="override a [detect] key for this run (tune on --suite train only)")
    args = parser.parse_args()
    for item in args.detect:
        name, _, value = item.partition("=")
        DETECT_OVERRIDES[name] = type(getattr(defaults().detect, name))(value)
    horizon = defaults().alerts.horizon
    benign_runs = max(2, args.runs // 2)
    print(f"{len(OOM_CLASSES)} OOM classes x {args.runs} runs, {len(BENIGN_CLASSES)} benign classes x "
          f"{benign_runs} runs of 2 h; horizon {horizon:.0f}s, warn_horizon {defaults().alerts.warn_horizon:.0f}s")
    misses = []
    if args.suite in ("all", "train"):
        train = suite(TRAIN_SEEDS, args.runs, benign_runs)
        missed, ours = evaluate(f"train (seeds {TRAIN_SEEDS[0]}..)", train, horizon)
        misses += missed
        trade_off(train, ours, horizon)
    if args.suite in ("all", "held-out"):
        misses += evaluate(f"held-out (seeds {HELD_OUT_SEEDS[0]}.., never tuned on)",
                           suite(HELD_OUT_SEEDS, args.runs, benign_runs), horizon)[0]
    if args.suite in ("all", "spent"):
        misses += evaluate(f"spent held-out (seeds {SPENT_SEEDS[0]}.., its misses chose the work: not clean)",
                           suite(SPENT_SEEDS, args.runs, benign_runs), horizon)[0]
    if args.suite in ("all", "recorded"):
        misses += evaluate("recorded real software (bench/traces)", recorded(Path(__file__).with_name("traces")),
                           horizon)[0]
    share, history = cpu_share()
    print(f"\ndetection work at 10,000 processes + 500 cgroups per 1 s tick: {share * 1000:.1f} ms = "
          f"{share:.2%} of one core (target <= {TARGETS['cpu_share']:.0%})")
    print(f"detector history: {history / 500:,.0f} B per cgroup (3 float64 buffers of 2 x window samples), "
          f"{history / 2**20:.1f} MiB at 500 cgroups; grows with cgroups x window, not with processes")
    if share > TARGETS["cpu_share"]:
        misses.append("detection CPU")
    print("\noomguard " + ("meets every target" if not misses else f"MISSES {len(misses)} targets (listed above)"))
    return 1 if misses else 0


if __name__ == "__main__":
    sys.exit(main())
