"""Scheduled jobs' shared tables: leases, scoring state, alarms and the model registry."""
