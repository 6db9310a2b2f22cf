"""Allocation call sites: sampled stacks of a suspect's allocations, named and ranked by bytes (pure).

A site is where the memory was asked for, in the words an operator greps
for: for a page fault (a program touching new memory), the user function
that touched it; for kernel memory (a slab or page the kernel allocated on
a process's behalf: pipes, sockets, dentries), the first kernel function
outside the allocator, with the user code that called into it. Bytes are
the sampled bytes times their weights: an unbiased estimate of what each
site *allocated* over the alert's life (frees are not traced: a site that
allocates and frees a lot ranks by what it allocated).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..text import untrusted
from ..units import format_bytes

# The allocator's and the tracing machinery's own frames: never the answer to "who asked".
ALLOCATOR_PREFIXES = (
    "bpf_", "__bpf", "trace_", "__traceiter", "perf_", "__alloc_pages", "alloc_pages", "__folio_alloc",
    "folio_alloc", "vma_alloc_folio", "__kmalloc", "kmalloc", "__kmem_cache_alloc", "kmem_cache_alloc",
    "slab_", "___slab", "__slab", "kzalloc", "kvmalloc", "__kvmalloc", "kcalloc", "new_slab", "allocate_slab",
    "get_page_from_freelist", "rmqueue", "__get_free_pages", "get_zeroed_page", "alloc_slab", "__alloc_skb",
    "kmalloc_reserve", "__kmalloc_node", "kmalloc_node", "kmalloc_large", "__do_kmalloc", "memcg_",
    "obj_cgroup_", "__memcg", "pte_alloc", "__pte_alloc", "alloc_anon_folio", "__get_user_pages",
    "__alloc_frozen_pages", "alloc_frozen_pages", "folio_prealloc", "___kmalloc",
)
# 6.10+ names the allocators' entry points *_noprof (memory allocation profiling wraps each): all allocator.
ALLOCATOR_SUFFIX = "_noprof"
# A user page fault: the kernel frames say only "a fault"; the user frame that faulted is the site.
FAULT_FUNCTIONS = frozenset((
    "do_anonymous_page", "__handle_mm_fault", "handle_mm_fault", "do_user_addr_fault", "exc_page_fault",
    "asm_exc_page_fault", "do_huge_pmd_anonymous_page", "__do_fault", "do_fault", "wp_page_copy", "do_wp_page",
    "do_read_fault", "do_cow_fault", "do_pte_missing", "handle_pte_fault", "__do_huge_pmd_anonymous_page",
))
NOT_KEPT = "[stack not kept]"  # the kernel could not walk the user stack (bpf_get_stack failed)


def kernel_site(kernel_frames: list[str]) -> str | None:
    """The first kernel function outside the allocator; None for a user page fault (or no kernel stack)."""
    for frame in kernel_frames:
        name = frame.split("+", 1)[0]
        if name.startswith(ALLOCATOR_PREFIXES) or name.endswith(ALLOCATOR_SUFFIX):
            continue
        return None if name in FAULT_FUNCTIONS else name
    return None


def site_name(user_frames: list[str], kernel_frames: list[str]) -> str:
    """One site's name: `func [module]` of the faulting user code, or `kernel: func <- func [module]`."""
    in_kernel = kernel_site(kernel_frames)
    user = user_frames[0] if user_frames else NOT_KEPT
    if in_kernel is None:
        return user
    return f"kernel: {in_kernel} <- {user}"


@dataclass(frozen=True)
class Site:
    name: str
    bytes: float
    share: float  # of all sampled bytes of the suspect
    stack: tuple[str, ...] = ()  # the heaviest full stack seen for it (user frames, then kernel frames)


@dataclass
class CallSites:
    """Bytes per site over the alert's life, with each site's heaviest stack for the full report."""

    bytes_by_site: dict[str, float] = field(default_factory=dict)
    heaviest: dict[str, tuple[float, tuple[str, ...]]] = field(default_factory=dict)
    samples: int = 0  # stacks taken

    def add(self, user_frames: list[str], kernel_frames: list[str], sampled_bytes: float, samples: int = 1) -> None:
        name = site_name(user_frames, kernel_frames)
        self.bytes_by_site[name] = self.bytes_by_site.get(name, 0.0) + sampled_bytes
        self.samples += samples
        if sampled_bytes > self.heaviest.get(name, (0.0, ()))[0]:
            self.heaviest[name] = (sampled_bytes, tuple(user_frames) + tuple(f"{k} [kernel]" for k in kernel_frames))

    def ranked(self, n: int | None = None) -> list[Site]:
        total = sum(self.bytes_by_site.values()) or 1.0
        order = sorted(self.bytes_by_site.items(), key=lambda kv: -kv[1])[:n]
        return [Site(name, b, b / total, self.heaviest.get(name, (0.0, ()))[1]) for name, b in order]


def compact(sites: list[Site]) -> str:
    """A few sites on one line each, for a message: `  81% 40.0MiB  leak_here [app]`. Names come from the
    program's own symbols and file names: marked untrusted (text.py), rendered per receiver."""
    return "\n".join(f"  {s.share:.0%} {format_bytes(s.bytes)}  {untrusted(s.name)}" for s in sites)
