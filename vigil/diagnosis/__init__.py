"""Remote-diagnosis sessions: an engineer, a device, the commands sent and what came back."""
