"""Evidence: for the cgroups an alert is about, the call sites of their sampled allocations (stacks named
in a child process) and their memory breakdown, saved with the alert."""
