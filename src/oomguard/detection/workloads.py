"""Workload memory: what each workload's earlier instances did, so a new instance doing the same is not paged.

A single series cannot tell a warm-up or a fill that stops at 80% from a leak
at the same pace until it stops (the bench's forced floor); a workload's
earlier instances can. For each workload (identity/workload.py) this keeps,
from its finished instances:

- its **start-up envelope**: the highest share of its limit any instance had
  reached by each age in AGES (5 s, 10 s, 20 s ... 320 s after it started),
  from the instances watched from their start;
- its **peak**: the highest share any instance reached, at any age.

An instance teaches when it ends, or once it runs past its start-up (the
last age, 320 s): a Deployment's replicas that run for weeks teach the next
rollout. An instance the kernel OOM-killed never teaches "normal" (one
killed after it taught its start-up is counted killed; its peak is not
learnt). The envelope is
exact maxima (a handful of floats per workload), not an estimate, so it
needs no statistics library; memory is bounded by a cap on workloads, the
least recently seen forgotten first.

Judging: a warning or critical verdict on an instance of a workload seen
SEEN_BEFORE times or more is withheld while the instance is inside its
envelope: its share of the limit no higher than what earlier instances had
reached by the next age checkpoint (beyond the last, their peak), plus
MARGIN of the limit. A climb that leaves the envelope is judged as any
other, at once, and its alert says by how much ("40.0MiB above what any of its
14 earlier instances had reached by 12s old"), and so is a verdict of less
than the floor free. A workload whose own starts end within the headroom
floor of its limit is a standing risk: an instance inside its envelope is
warned of once a day per workload (RISK_EVERY_S), not paged per instance.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..files import atomic_write, read_own_file, set_aside
from ..identity.workload import workload_of
from ..units import format_bytes
from .detector import WARNING, CgroupDetector, Verdict
from .groups import Subject, judge

log = logging.getLogger("oomguard")
AGES = (5.0, 10.0, 20.0, 40.0, 80.0, 160.0, 320.0)  # seconds after an instance starts
MARGIN = 0.05  # of the limit: a start-up within this of what earlier instances reached by that age is theirs
SEEN_BEFORE = 2  # finished instances a workload needs before its envelope is trusted
RISK_EVERY_S = 86400.0  # a workload whose own starts end within the floor is warned of once a day, not per instance
INSIDE, BEYOND, STANDING_RISK = "inside", "beyond", "standing risk"
MAX_WORKLOADS = 5000
VERSION = 1
FILE = "workloads.json"


@dataclass
class Shape:
    """What is learnt of one workload from its finished instances (shares of the limit)."""

    instances: int = 0  # finished without an OOM kill
    killed: int = 0
    by_age: list[float] = field(default_factory=lambda: [-1.0] * len(AGES))  # -1: no instance watched that young
    peak: float = 0.0
    peak_age_s: float = 0.0  # of the instance that set the peak
    risk_said: float = -1.0  # wall clock of its last standing-risk warning (RISK_EVERY_S); -1: never

    def allowed(self, age_s: float) -> float:
        """The highest share earlier instances had reached by the first checkpoint at or after this age
        (their peak beyond the last, or where no instance was watched from its start)."""
        for checkpoint, level in zip(AGES, self.by_age, strict=True):
            if age_s <= checkpoint:
                return level if level >= 0 else self.peak
        return self.peak

    def learn(self, instance: Instance) -> None:
        """A finished instance (or one past its start-up, still running: `taught` after this), once."""
        if instance.killed:
            self.killed += 1
            return
        if not instance.taught:
            self.instances += 1
            if instance.from_birth:
                self.by_age = [max(old, new) for old, new in zip(self.by_age, instance.by_age, strict=True)]
        if instance.peak >= self.peak:
            self.peak, self.peak_age_s = instance.peak, instance.peak_age_s
        instance.taught = True


@dataclass
class Instance:
    """One live instance: a limited cgroup of a workload, followed from when it was first seen."""

    workload: str
    born: float  # clock seconds when first seen
    from_birth: bool  # first seen after the daemon's first tick: its ages are its own
    by_age: list[float] = field(default_factory=lambda: [-1.0] * len(AGES))
    peak: float = 0.0
    peak_age_s: float = 0.0
    killed: bool = False
    taught: bool = False  # its start-up already taught its workload (a replica running past AGES[-1])

    def see(self, share: float, now: float) -> None:
        age = now - self.born
        if share > self.peak:
            self.peak, self.peak_age_s = share, age
        for i, checkpoint in enumerate(AGES):
            if age <= checkpoint:
                self.by_age[i] = max(self.by_age[i], share)


@dataclass(frozen=True)
class Withheld:
    """A verdict withheld because its instance does what its workload's earlier instances did."""

    cgroup: str
    workload: str
    severity: str
    why: str


class WorkloadMemory:
    """Every workload's learnt shape and every live instance; judges verdicts against them."""

    def __init__(self, max_workloads: int = MAX_WORKLOADS):
        self.max_workloads = max_workloads
        self.shapes: OrderedDict[str, Shape] = OrderedDict()  # least recently seen first
        self.live: dict[str, Instance] = {}  # by cgroup
        self._first_tick = True
        self.changed = False  # learnt something since the last save

    def observe(self, seen: Sequence[tuple[str, str | None, int, int]], now: float) -> None:
        """One tick's limited cgroups as (cgroup, workload, usage, limit): instances start, grow, and end
        when their cgroup is gone (an ended instance teaches its workload)."""
        current = {cgroup for cgroup, workload, _, limit in seen if workload is not None and limit > 0}
        for cgroup in set(self.live) - current:
            self._finish(self.live.pop(cgroup))
        for cgroup, workload, usage, limit in seen:
            if workload is None or limit <= 0:
                continue
            instance = self.live.get(cgroup)
            if instance is None or instance.workload != workload:
                if instance is not None:
                    self._finish(instance)
                instance = self.live[cgroup] = Instance(workload, now, not self._first_tick)
            instance.see(usage / limit, now)
            if not instance.taught and now - instance.born > AGES[-1]:
                self._teach(instance)  # replicas that run for weeks teach their start-up without ending
        self._first_tick = False

    def killed(self, cgroups: Sequence[str]) -> None:
        """The kernel OOM-killed in these cgroups: their instances end now and teach nothing normal."""
        for cgroup in cgroups:
            instance = self.live.pop(cgroup, None)
            if instance is not None:
                instance.killed = True
                self._finish(instance)

    def _finish(self, instance: Instance) -> None:
        self._teach(instance)

    def _teach(self, instance: Instance) -> None:
        shape = self.shapes.pop(instance.workload, None) or Shape()
        shape.learn(instance)
        self.shapes[instance.workload] = shape  # now the most recently seen
        while len(self.shapes) > self.max_workloads:
            self.shapes.popitem(last=False)
        self.changed = True

    def judge(self, verdicts: Sequence[Verdict], floor_fraction: float, now: float,
              wall: float | None = None) -> tuple[list[Verdict], list[Withheld]]:
        """The verdicts, with those of instances inside their workload's envelope withheld (severity ""), and
        those of seen-before workloads that left it saying by how much (Verdict.beyond). A workload whose
        envelope ends within the headroom floor of its limit is a standing risk: an instance inside it is
        warned of once a day per workload (`wall`: the wall clock, which the day is counted on), else
        withheld."""
        wall = time.time() if wall is None else wall
        out, withheld = [], []
        for verdict in verdicts:
            judged = self._against_envelope(verdict, floor_fraction, now) if verdict.warn else None
            if judged is None:
                out.append(verdict)
                continue
            where, words = judged
            instance = self.live[verdict.cgroup]
            shape = self.shapes[instance.workload]
            if where == BEYOND:
                out.append(replace(verdict, beyond=words))
            elif where == STANDING_RISK and (shape.risk_said < 0 or wall - shape.risk_said >= RISK_EVERY_S):
                shape.risk_said, self.changed = wall, True
                out.append(replace(verdict, severity=WARNING, beyond=words))
            else:
                withheld.append(Withheld(verdict.cgroup, instance.workload, verdict.severity, words))
                out.append(replace(verdict, severity=""))
        return out, withheld

    def _against_envelope(self, verdict: Verdict, floor_fraction: float, now: float) -> tuple[str, str] | None:
        """(INSIDE, BEYOND or STANDING_RISK, in words) for an instance of a seen-before workload; None
        otherwise."""
        instance = self.live.get(verdict.cgroup)
        shape = self.shapes.get(instance.workload) if instance else None
        if instance is None or shape is None or shape.instances < SEEN_BEFORE or verdict.limit <= 0:
            return None
        share, n = verdict.usage / verdict.limit, shape.instances
        age = now - instance.born if instance.from_birth else math.inf
        allowed = shape.allowed(age)
        risk = shape.peak >= 1 - floor_fraction  # its starts themselves end within the floor of its limit
        # under the floor: beyond, unless its own starts end there too and it is no higher than they went
        if share > allowed + MARGIN or (verdict.under_floor and (not risk or share > shape.peak)):
            above = format_bytes(max(share - allowed, 0.0) * verdict.limit)
            return BEYOND, (f"{above} above what any of its {n} earlier instances had reached by {age:.0f}s old "
                            f"({allowed:.0%} of its limit; peak {shape.peak:.0%})" if math.isfinite(age) else
                            f"{above} above its {n} earlier instances' peak ({shape.peak:.0%} of its limit)")
        if risk:
            return STANDING_RISK, (f"its {n} earlier instances level off at {shape.peak:.0%} of its limit: a "
                                   "standing risk, said once a day; a higher limit ends it")
        return INSIDE, (f"{share:.0%} of its limit at {age:.0f}s old; its {n} earlier instances reached "
                        f"{allowed:.0%} by then (peak {shape.peak:.0%})" if math.isfinite(age) else
                        f"{share:.0%} of its limit; its {n} earlier instances peaked at {shape.peak:.0%}")

    # -- state ----------------------------------------------------------------

    def save(self, directory: Path) -> None:
        """Write what was learnt (atomic); OSError is the caller's to report."""
        data = {"version": VERSION, "saved": time.time(),
                "workloads": {key: {"instances": s.instances, "killed": s.killed, "by_age": s.by_age,
                                    "peak": s.peak, "peak_age_s": s.peak_age_s, "risk_said": s.risk_said}
                              for key, s in self.shapes.items()}}
        atomic_write(directory / FILE, json.dumps(data))
        self.changed = False

    def load(self, directory: Path) -> None:
        """What an earlier run learnt; a file that is not one is moved aside (logged), never fatal."""
        path = directory / FILE
        try:
            data = json.loads(read_own_file(path))
        except FileNotFoundError:
            return
        except (OSError, ValueError) as exc:
            _set_aside(path, f"unreadable ({exc})")
            return
        problem = shape_problem(data)
        if problem:
            _set_aside(path, problem)
            return
        for key, s in data["workloads"].items():
            self.shapes[key] = Shape(int(s["instances"]), int(s["killed"]), [float(v) for v in s["by_age"]],
                                     float(s["peak"]), float(s["peak_age_s"]), float(s.get("risk_said", -1.0)))
        while len(self.shapes) > self.max_workloads:
            self.shapes.popitem(last=False)


def judged(memory: WorkloadMemory, detector: CgroupDetector, found: Sequence[Subject], floor_fraction: float,
           now: float, wall: float | None = None) -> tuple[list[Verdict], list[Withheld]]:
    """One tick's verdicts as the daemon and a replay take them: the detector's, judged against what each
    workload's earlier instances did (the tick's subjects first teach and age their instances)."""
    memory.observe([(s.cgroup, workload_of(s.cgroup, s.attribution, s.pod, s.limit), s.usage, s.limit)
                    for s in found], now)
    return memory.judge(judge(detector, found, now), floor_fraction, now, wall)


def shape_problem(data: Any) -> str | None:
    """Why `data` is not a workloads file this version writes; None when it is."""
    if not isinstance(data, dict) or data.get("version") != VERSION or not isinstance(data.get("workloads"), dict):
        return f"not a version {VERSION} workloads file"
    for key, s in data["workloads"].items():
        ok = (isinstance(key, str) and isinstance(s, dict)
              and all(isinstance(s.get(k), (int, float)) and not isinstance(s.get(k), bool)
                      for k in ("instances", "killed", "peak", "peak_age_s"))
              and isinstance(s.get("by_age"), list) and len(s["by_age"]) == len(AGES)
              and all(isinstance(v, (int, float)) and math.isfinite(v) for v in s["by_age"])
              and isinstance(s.get("risk_said", 0.0), (int, float)) and not isinstance(s.get("risk_said"), bool))
        if not ok:
            return f"workload {key!r} is not of the shape oomguard writes"
    return None


def _set_aside(path: Path, problem: str) -> None:
    where = set_aside(path, f"bad-{int(time.time())}")
    log.error("%s is %s: %s; workloads are learnt afresh (earlier instances forgotten)", path, problem, where)
