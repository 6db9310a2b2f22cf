"""oomguard: a memory watchdog that traces kernel allocation with eBPF and warns before OOM kills."""

__version__ = "0.2.0"
