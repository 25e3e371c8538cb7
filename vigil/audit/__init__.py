"""The append-only audit log: who did what to which object, written in the same transaction."""
