"""Views: what a person reads: the daemon's console lines, the top-processes table, `oomguard top`."""
