"""Identity: who each process is (command, memory cgroup, container, pod, namespace) and which processes
are watched, read once per process from /proc and cgroupfs, as bytes decoded at the edge."""
