"""Which processes oomguard watches: include/exclude by cgroup path prefix and by command.

The user-space filter is the reference and always applies. Where the host has
cgroup v2, the cgroup part is also enforced in the kernel (see
kernel_cgroup_filter), so excluded processes cost no map updates at all.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..bpf.events import CGROUP_FILTER_SLOTS, FILTER_EXCLUDE, FILTER_INCLUDE, FILTER_OFF, Departed
from ..config import SelectionConfig
from ..sampling.rates import Rates
from .attribution import under_cgroup
from .cgroup import cgroup2_mount
from .procfs import Identity, ProcessDirectory

log = logging.getLogger("oomguard")




@dataclass(frozen=True)
class ProcessFilter:
    include_cgroups: tuple[str, ...] = ()
    exclude_cgroups: tuple[str, ...] = ()
    include_commands: tuple[str, ...] = ()
    exclude_commands: tuple[str, ...] = ()

    @classmethod
    def from_policy(cls, policy: SelectionConfig) -> ProcessFilter:
        return cls(policy.include_cgroups, policy.exclude_cgroups, policy.include_commands, policy.exclude_commands)

    @property
    def active(self) -> bool:
        return any((self.include_cgroups, self.exclude_cgroups, self.include_commands, self.exclude_commands))

    def allows(self, who: Identity) -> bool:
        """Included (or no include list) and not excluded. An unknown cgroup matches no prefix."""
        path = who.cgroup.path if who.cgroup else None

        def in_cgroups(prefixes: tuple[str, ...]) -> bool:
            return path is not None and any(under_cgroup(path, p) for p in prefixes)

        if self.include_cgroups and not in_cgroups(self.include_cgroups):
            return False
        if self.include_commands and who.command not in self.include_commands:
            return False
        return not in_cgroups(self.exclude_cgroups) and who.command not in self.exclude_commands


def kernel_cgroup_filter(rules: ProcessFilter, mount: Path | None) -> tuple[int, list[Path]]:
    """(mode, v2 cgroup directories) for the kernel-side filter; FILTER_OFF where it cannot be exact.

    Include lists win over exclude lists (the user-space filter still applies
    both). The kernel filter is off when a listed cgroup is not a directory
    of the v2 hierarchy (a v1-only host), or there are more than the slots.
    """
    mode, prefixes = ((FILTER_INCLUDE, rules.include_cgroups) if rules.include_cgroups
                      else (FILTER_EXCLUDE, rules.exclude_cgroups))
    if not prefixes or mount is None or len(prefixes) > CGROUP_FILTER_SLOTS:
        return FILTER_OFF, []
    directories = [mount / p.strip("/") for p in prefixes]
    if not all(d.is_dir() for d in directories):
        return FILTER_OFF, []
    return mode, directories


class Selection:
    """The policy's process selection over the pids the kernel reports: each judged once, at first sight.

    Also keeps the identity cache in step with the maps: new pids are
    identified (one /proc read each), exited ones forgotten.
    """

    def __init__(self, directory: ProcessDirectory, policy: SelectionConfig):
        self.directory = directory
        self.rules = ProcessFilter.from_policy(policy)
        self._excluded = np.zeros(0, dtype=np.uint32)  # pids the rules rejected, sorted
        self._dying = np.zeros(0, dtype=np.uint32)  # known pids found dead this tick: forgotten at the next

    def reconfigure(self, policy: SelectionConfig) -> None:
        """New rules apply at once, to every process known."""
        self.rules = ProcessFilter.from_policy(policy)
        self._excluded = np.zeros(0, dtype=np.uint32)
        self._judge(np.array(sorted(self.directory.pids()), dtype=np.uint32))

    def admit(self, rates: Rates | None, seen: np.ndarray, live: np.ndarray,
              departed: dict[int, Departed] | None = None) -> Rates | None:
        """`rates` without the excluded processes. Learns the live pids in `seen` it has not met (their
        identity, once); forgets every pid no longer alive, so the cache holds live processes only;
        hands the directory the kernel's names of this tick's exits."""
        # Dead since the last tick: forgotten now, so this tick could still name them in its output.
        self.directory.forget(self._dying)
        self.directory.departed(departed or {})
        self._judge(self.directory.learn(np.intersect1d(seen, live, assume_unique=True)))
        if rates is not None and len(self._excluded):
            rates = rates.select(~np.isin(rates.pid, self._excluded))
        self._dying = self.directory.not_in(live)
        self._excluded = np.intersect1d(self._excluded, live, assume_unique=True)
        return rates

    def _judge(self, new_pids: np.ndarray) -> None:
        if not self.rules.active or not len(new_pids):
            return
        rejected = [pid for pid in new_pids.tolist() if not self.rules.allows(self.directory.identity(pid))]
        if rejected:
            self._excluded = np.union1d(self._excluded, np.array(rejected, dtype=np.uint32))


def kernel_filter_for(rules: ProcessFilter, mounts: Path = Path("/proc/self/mounts")) -> tuple[int, list[Path]]:
    """The in-kernel filter for these rules on this host (see kernel_cgroup_filter), logged when active."""
    mode, directories = kernel_cgroup_filter(rules, cgroup2_mount(mounts.read_text()))
    if rules.active:
        log.info("process selection: %s; in the kernel: %s", rules,
                 "off (filtering in user space)" if mode == FILTER_OFF else ", ".join(map(str, directories)))
    return mode, directories
