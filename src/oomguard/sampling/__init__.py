"""Sampling: each tick, the kernel's per-process maps become allocation rates (numpy), and the 1-in-N
sample rate in the kernel's array map is adapted to the event volume."""
