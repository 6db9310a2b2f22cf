"""Kills: the kernel's OOM kill events (ring buffer) paired with its log lines (/dev/kmsg) and attributed
to the victim's container."""
