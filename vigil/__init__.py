"""Vigil: what the services share (configuration, domain model, stores, command line)."""
