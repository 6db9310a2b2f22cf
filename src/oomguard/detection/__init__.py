"""Detection: processes grouped under the memory limit that binds them, each group's climb forecast to the
limit (trend, ETA, severity), and the culprit processes named."""
