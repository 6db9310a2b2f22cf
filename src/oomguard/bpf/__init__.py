"""The kernel stage: the BPF programs (oomguard.c), their loader, and the typed values read out of their maps
and ring buffer. It knows nothing of containers, policy or alerts."""
