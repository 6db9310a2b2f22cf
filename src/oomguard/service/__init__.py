"""The service: the daemon that runs the stages each tick, its policy reloads, signals, systemd
notifications, status file, metrics exporter and recordings."""
