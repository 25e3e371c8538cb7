"""The device registry: customers, their sites, the devices installed there, and what devices
send that is not telemetry (fault codes, refused messages) or is said about them (predictions)."""
