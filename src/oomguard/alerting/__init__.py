"""Alerting: the alert lifecycle (pre-OOM, escalated, confirmed, cleared, unforeseen), the words of each
message, and their delivery through a spool to apprise and Alertmanager."""
