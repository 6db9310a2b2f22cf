"""Which processes oomguard watches: include/exclude by cgroup path prefix and by command.

The user-space filter is the reference and always applies. Where the host has
cgroup v2, the cgroup part is also enforced in the kernel (see
kernel_cgroup_filter), so excluded processes cost no map updates at all.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .attribution import under_cgroup
from .procfs import Identity

KERNEL_FILTER_SLOTS = 16  # size of the BPF cgroup array (MAX_CGROUP_FILTERS in oomguard.c)
MODE_OFF, MODE_INCLUDE, MODE_EXCLUDE = 0, 1, 2


under = under_cgroup  # the policy's prefixes match by whole path components


@dataclass(frozen=True)
class ProcessFilter:
    include_cgroups: tuple[str, ...] = ()
    exclude_cgroups: tuple[str, ...] = ()
    include_commands: tuple[str, ...] = ()
    exclude_commands: tuple[str, ...] = ()

    @property
    def active(self) -> bool:
        return any((self.include_cgroups, self.exclude_cgroups, self.include_commands, self.exclude_commands))

    def allows(self, who: Identity) -> bool:
        """Included (or no include list) and not excluded. An unknown cgroup matches no prefix."""
        path = who.cgroup.path if who.cgroup else None
        in_cgroups = lambda prefixes: path is not None and any(under(path, p) for p in prefixes)  # noqa: E731
        if self.include_cgroups and not in_cgroups(self.include_cgroups):
            return False
        if self.include_commands and who.command not in self.include_commands:
            return False
        return not in_cgroups(self.exclude_cgroups) and who.command not in self.exclude_commands


def cgroup2_mount(mounts_text: str) -> Path | None:
    """Where the cgroup v2 hierarchy is mounted, from /proc/self/mounts text."""
    for line in mounts_text.splitlines():
        fields = line.split()
        if len(fields) >= 3 and fields[2] == "cgroup2":
            return Path(fields[1])
    return None


def kernel_cgroup_filter(rules: ProcessFilter, mount: Path | None) -> tuple[int, list[Path]]:
    """(mode, v2 cgroup directories) for the kernel-side filter; MODE_OFF where it cannot be exact.

    Include lists win over exclude lists (the user-space filter still applies
    both). The kernel filter is off when a listed cgroup is not a directory
    of the v2 hierarchy (a v1-only host), or there are more than the slots.
    """
    mode, prefixes = ((MODE_INCLUDE, rules.include_cgroups) if rules.include_cgroups
                      else (MODE_EXCLUDE, rules.exclude_cgroups))
    if not prefixes or mount is None or len(prefixes) > KERNEL_FILTER_SLOTS:
        return MODE_OFF, []
    directories = [mount / p.strip("/") for p in prefixes]
    if not all(d.is_dir() for d in directories):
        return MODE_OFF, []
    return mode, directories
