"""The words of every alert: titles and bodies built from the lifecycle's decisions (pure)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from ..detection.culprit import culprit_text
from ..detection.detector import Verdict
from ..detection.groups import Subject
from ..identity.attribution import HOST, Attribution
from ..identity.owners import owner_text
from ..identity.pods import PodNames
from ..kills.report import KillReport
from ..text import markdown, plain, untrusted
from ..units import format_bytes
from .alertmanager import labels_for
from .lifecycle import CLEARED, CONFIRMED, ESCALATED, PRE_OOM, REFRESH, UNFORESEEN, Alert, Closed


@dataclass(frozen=True)
class Message:
    """One alert message. Built with every name marked `untrusted`; on construction `title`/`body` become
    plain text (names as they are) and `markdown_title`/`markdown_body` Markdown (names as code spans), so
    each receiver gets the form it renders safely (text.py)."""

    alert_id: str
    kind: str  # PRE_OOM, ESCALATED, CONFIRMED, CLEARED, UNFORESEEN
    title: str
    body: str
    namespace: str | None = None
    # For label-based receivers (Alertmanager): this message's labels and start (wall clock), and,
    # for confirmed/cleared, the labels and start of the pre-OOM alert it resolves.
    labels: dict[str, str] = field(default_factory=dict)
    starts_at: float = 0.0
    resolves: dict[str, Any] | None = None  # {"labels": {...}, "starts_at": float}
    markdown_title: str = ""
    markdown_body: str = ""
    runbook: str = ""  # what the on-call engineer checks for this kind of alert (a URL; Alertmanager's runbook_url)
    chart: dict[str, Any] | None = None  # chart.chart_data's numbers, drawn by the sender for attachments
    evidence: str | None = None  # the path of the alert's full evidence report (evidence/capture.py), attached
    decided_at: float = 0.0  # wall clock of the tick or kill that made it: decorations wait for no more than
    # DECORATE_WITHIN_S after it (alerting/chart.py)

    def __post_init__(self) -> None:
        if not self.markdown_title:  # fresh from the builders below, names still marked
            object.__setattr__(self, "markdown_title", markdown(self.title))
            object.__setattr__(self, "markdown_body", markdown(self.body))
            object.__setattr__(self, "title", plain(self.title))
            object.__setattr__(self, "body", plain(self.body))


def _resolves(alert: Alert) -> dict[str, Any]:
    return {"labels": alert.labels, "starts_at": alert.started_wall}


# How far ahead the next step's limit looks: the limit that holds this much more of the climb...
ROOM_FOR_S = 600.0
OUTGROWS = 2.0  # ...unless that is more than this many times the limit: then only a fix helps


def utc(wall: float) -> str:
    """A wall-clock time as people and receivers read it anywhere: RFC 3339, UTC, to the second."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(wall))


def utc_ms(wall: float) -> str:
    """utc() to the millisecond: when a message was decided, to compare with when it arrived."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(wall)) + f".{int(wall * 1000) % 1000:03d}Z"


def eta_text(verdict: Verdict) -> str:
    """The forecast time to OOM with its interval (only when it is one), as every pre-OOM message states it."""
    if verdict.seconds_to_limit is None or verdict.eta_interval is None:
        return "no established climb (headroom floor rule)"
    early, late = (f"{bound:.0f}s" for bound in verdict.eta_interval)
    return f"{verdict.seconds_to_limit:.0f}s" + (f" (between {early} and {late})" if early != late else "")


def when_text(verdict: Verdict, wall: float) -> str:
    """When the kill is expected, absolute and relative: "at 2026-12-07T19:21:05Z, in 56s (between ...)"."""
    if verdict.seconds_to_limit is None:
        return "soon: " + eta_text(verdict)
    return f"at {utc(wall + verdict.seconds_to_limit)}, in {eta_text(verdict)}"


def runbook_for(base: str, kind: str) -> str:
    """The runbook section for a kind of message: `base` (a URL) and the kind as its anchor."""
    return f"{base}#{kind.lower()}" if base else ""


def pre_oom(alert: Alert, verdict: Verdict, subject: Subject, host: str, wall: float, runbook: str = "") -> Message:
    title = f"[oomguard] pre-OOM {alert.severity} on {host}: OOM in {_eta_short(verdict)}: {_who(subject)}"
    lead = f"Alert {alert.id} ({alert.severity}): an OOM kill looks likely {when_text(verdict, wall)}."
    link = runbook_for(runbook, PRE_OOM)
    return Message(alert.id, PRE_OOM, title, _pre_oom_body(lead, alert, verdict, subject, host, link),
                   subject.pod.namespace if subject.pod else None, _labels(alert, subject, host), wall, runbook=link)


def escalated(alert: Alert, verdict: Verdict, subject: Subject, host: str, wall: float,
              runbook: str = "") -> Message:
    """The same alert, now critical: Alertmanager's warning alert resolves and a critical one fires."""
    title = f"[oomguard] pre-OOM escalated to critical on {host}: OOM in {_eta_short(verdict)}: {_who(subject)}"
    lead = (f"Alert {alert.id} escalated from warning to critical: an OOM kill looks likely "
            f"{when_text(verdict, wall)}.")
    link = runbook_for(runbook, PRE_OOM)
    return Message(alert.id, ESCALATED, title, _pre_oom_body(lead, alert, verdict, subject, host, link),
                   subject.pod.namespace if subject.pod else None, _labels(alert, subject, host), wall,
                   _resolves(alert), runbook=link)


def who(subject: Subject) -> str:
    """Whose memory an alert is about, as plain text (kept with the alert for the messages that close it)."""
    return plain(_who(subject))


def next_step(verdict: Verdict, subject: Subject, alert_id: str, host: str) -> str:
    """What the on-call engineer does: the limit that holds ROOM_FOR_S more of this climb, or what grows."""
    needed = verdict.usage + max(verdict.slope_bytes_per_s, 0.0) * ROOM_FOR_S
    grows = "the culprits above" if subject.culprits else "the processes below"
    find = f"find what grows: {grows}, and its call sites with `oomguard status --alert {alert_id}` on {host}."
    minutes = f"{ROOM_FOR_S / 60:.0f} more minutes of this climb need {format_bytes(needed)}"
    if needed > OUTGROWS * verdict.limit:  # no limit holds it for long: a leak to fix, not a size to raise
        return (f"What to do: {find} No sensible limit holds this climb ({minutes}, the limit is "
                f"{format_bytes(verdict.limit)}).")
    return (f"What to do: if this growth is expected, raise the memory limit (now {format_bytes(verdict.limit)}; "
            f"{minutes}); if not, {find}")


def _who(subject: Subject) -> str:
    """The owner of the limit: a pod when the limit spans several of its containers, else the container."""
    if subject.containers:
        pod = (f"{untrusted(subject.pod.namespace)}/{untrusted(subject.pod.pod)}" if subject.pod is not None
               else f"uid {subject.attribution.pod_uid}" if subject.attribution and subject.attribution.pod_uid
               else untrusted(subject.cgroup))
        return f"pod {pod} (limit on the pod, {len(subject.containers)} containers growing)"
    return untrusted(_owner(subject.attribution, subject.pod, subject.cgroup))


def _owner(attribution: Attribution | None, pod: PodNames | None, cgroup: str) -> str:
    """Who, for a title: the container or service, and for any other limited cgroup its path ("host" would
    send the reader to the wrong place)."""
    if cgroup != "/" and (attribution is None or attribution.kind == HOST):
        return f"cgroup {cgroup}"
    return owner_text(attribution, pod)


def _eta_short(verdict: Verdict) -> str:
    return f"~{verdict.seconds_to_limit:.0f}s" if verdict.seconds_to_limit is not None else "n/a"


def _labels(alert: Alert, subject: Subject, host: str) -> dict[str, str]:
    return labels_for("OomguardPreOOM", alert.severity, host, subject.cgroup, subject.pod)


def _pre_oom_body(lead: str, alert: Alert, verdict: Verdict, subject: Subject, host: str, runbook: str) -> str:
    lines = [
        lead,
        f"Why: {verdict.reason}" + (f"\nProcesses growing abnormally: {untrusted(subject.notes)}"
                                            if subject.notes else ""),
        *([f"Culprits: {untrusted(culprit_text(subject.culprits))}"] if subject.culprits else []),
        *([f"Containers under this limit: {_shares(subject)}"] if subject.containers else []),
        next_step(verdict, subject, alert.id, host),
        *([f"Runbook: {runbook}"] if runbook else []),
        "",
        "Details:",
        f"host: {host}",
        f"pid: {', '.join(map(str, subject.pids[:10]))}{' ...' if len(subject.pids) > 10 else ''}",
        f"command: {untrusted(subject.command)}",
        *_owner_lines(subject.attribution, subject.pod, runtime=True, several=bool(subject.containers)),
        f"cgroup: {untrusted(subject.cgroup)}",
        (f"allocation rate: kmalloc {format_bytes(subject.kmalloc_bytes_per_s)}/s, "
        f"pages {format_bytes(subject.page_bytes_per_s)}/s"),
        f"RSS: {format_bytes(subject.rss_bytes)}",
        (f"cgroup usage: {format_bytes(verdict.usage)} of limit {format_bytes(verdict.limit)} "
        f"(growing {format_bytes(verdict.slope_bytes_per_s)}/s)"),
        f"forecast time to OOM: {eta_text(verdict)}",
        f"sample rate in force: kmalloc 1-in-{subject.sample_rates[0]}, page 1-in-{subject.sample_rates[1]}",
    ]
    return "\n".join(lines) + "\n"


def _shares(subject: Subject) -> str:
    return ", ".join(f"{untrusted(c.name)} {c.share:.0%}" for c in subject.containers)


def _after_kill(alert_id: str, host: str, runbook: str) -> str:
    return (f"What to do: the container restarts on its own if its controller restarts it; before it is killed "
            f"again, raise its memory limit or find what grew (`oomguard status --alert {alert_id}` on {host} has "
            f"the call sites seen before the kill)." + (f"\nRunbook: {runbook}" if runbook else ""))


def confirmed(closed: Closed, report: KillReport, last_seen: Subject | None, host: str, now: float,
              wall: float, runbook: str = "") -> Message:
    alert, lead = closed.alert, closed.lead_s or 0.0
    title = f"[oomguard] confirmed on {host}: OOM kill of {untrusted(report.comm)} foreseen {lead:.0f}s ahead"
    link = runbook_for(runbook, CONFIRMED)
    kill_wall = alert.started_wall + lead  # lead is from the alert's opening to the kill
    body = (f"Confirms pre-OOM alert {alert.id} ({untrusted(alert.title)}): the kernel OOM-killed "
            f"{untrusted(report.comm)} (pid {report.pid}).\n"
            f"Lead time: {lead:.0f}s (alert at {utc(alert.started_wall)}, kill at {utc(kill_wall)}).\n"
            + _after_kill(alert.id, host, link) + "\n\nDetails:\n" + kill_details(report, last_seen, host))
    labels = labels_for("OomguardOOMKill", "critical", host, alert.cgroup, report.pod)
    return Message(alert.id, CONFIRMED, title, body, report.pod.namespace if report.pod else None, labels, wall,
                   _resolves(alert), runbook=link)


def unforeseen(alert_id: str, report: KillReport, last_seen: Subject | None, host: str, wall: float,
               runbook: str = "") -> Message:
    owner = untrusted(_owner(report.attribution, report.pod, report.cgroup or "/"))
    title = f"[oomguard] unforeseen OOM kill on {host}: {untrusted(report.comm)} ({owner})"
    link = runbook_for(runbook, UNFORESEEN)
    body = (f"No pre-OOM alert foresaw this kill: the kernel OOM-killed {untrusted(report.comm)} (pid "
            f"{report.pid}) at {utc(wall)} (a climb faster than a tick or two, or one from before oomguard watched).\n"
            + _after_kill(alert_id, host, link) + "\n\nDetails:\n" + kill_details(report, last_seen, host))
    labels = labels_for("OomguardUnforeseenOOMKill", "critical", host, report.cgroup or "", report.pod)
    return Message(alert_id, UNFORESEEN, title, body, report.pod.namespace if report.pod else None, labels, wall,
                   runbook=link)


def refreshed(alert: Alert, wall: float) -> Message:
    """An open alert as it was last said, posted again for Alertmanager (no other receiver gets it)."""
    return Message(alert.id, REFRESH, alert.title, alert.body, alert.labels.get("namespace"), alert.labels,
                   alert.started_wall, markdown_title=alert.title, markdown_body=alert.body, runbook=alert.runbook)


def cleared(closed: Closed, host: str, now: float, wall: float, runbook: str = "") -> Message:
    """An alert closed without a kill: a title true of itself (whose alert, not its old forecast)."""
    alert = closed.alert
    subject = alert.who or alert.cgroup
    link = runbook_for(runbook, CLEARED)
    if closed.outcome_unknown:
        body = f"Pre-OOM alert {alert.id} is closed: {closed.why}.\nOpened at {utc(alert.started_wall)}.\n"
    elif closed.stopped:
        body = (f"Pre-OOM alert {alert.id} is cleared: it {closed.why}.\nOpen for "
                f"{now - alert.opened_at:.0f}s, from {utc(alert.started_wall)} to {utc(wall)}.\n")
    else:
        body = (f"Pre-OOM alert {alert.id} was a false alarm: {closed.why}.\nOpen for "
                f"{now - alert.opened_at:.0f}s, from {utc(alert.started_wall)} to {utc(wall)}.\n")
    todo = ("nothing now; if it holds this close to its limit, its next burst has little room: consider a higher "
            "limit" if closed.stopped else
            "nothing now; if this cgroup's alerts keep clearing, see the runbook on tuning")
    body += (f"What to do: {todo}.\n"
             + (f"Runbook: {link}\n" if link else "")
             + f"\nDetails:\nalert: {untrusted(alert.title)}\ncgroup: {untrusted(alert.cgroup)}\n")
    title = f"[oomguard] cleared on {host}: {untrusted(subject)}" + (f": {closed.why}" if closed.stopped else "")
    return Message(alert.id, CLEARED, title, body,
                   alert.labels.get("namespace"), {}, wall, _resolves(alert), runbook=link)


def _owner_lines(attribution: Attribution | None, pod: PodNames | None, runtime: bool = False,
                 several: bool = False) -> list[str]:
    container = attribution.container_id if attribution and attribution.container_id else "none"
    if several:
        container = "several, each with its share above"
    elif runtime:
        container += f" ({attribution.runtime if attribution and attribution.runtime else 'runtime unknown'})"
    return [
        f"container: {container}",
        f"pod uid: {attribution.pod_uid if attribution and attribution.pod_uid else 'none'}",
        f"namespace/pod: {untrusted(pod.namespace) + '/' + untrusted(pod.pod) if pod else 'unknown'}",
    ]


def kill_details(report: KillReport, last_seen: Subject | None, host: str) -> str:
    kill = report.kill
    lines = [
        f"host: {host}",
        f"pid: {report.pid}",
        f"command: {untrusted(report.comm)}",
        *_owner_lines(report.attribution, report.pod),
        f"cgroup: {untrusted(report.cgroup) if report.cgroup else 'unknown'}",
        f"limit hit: {format_bytes(report.limit_bytes) if report.limit_bytes else 'unknown'}"
        + (f" ({untrusted(report.record.oom_memcg)})" if report.record and report.record.oom_memcg else ""),
    ]
    if last_seen is not None:
        lines.append(f"allocation rate (last tick): kmalloc {format_bytes(last_seen.kmalloc_bytes_per_s)}/s, "
                     f"pages {format_bytes(last_seen.page_bytes_per_s)}/s")
        lines.append(f"cgroup usage (last tick): {format_bytes(last_seen.usage)} of limit "
                     f"{format_bytes(last_seen.limit)}")
    else:
        lines.append("allocation rate and cgroup usage: not observed before the kill")
    if kill is not None:
        lines.append(f"RSS at the kill: {format_bytes(kill.rss_bytes)} (anon {format_bytes(kill.anon_rss_kb * 1024)})")
        lines.append(f"triggered by: pid {kill.trigger_pid} ({untrusted(kill.trigger_comm)})")
    return "\n".join(lines) + "\n"
