"""The fleet simulator: virtual devices with plausible physics, run through the real agent code."""
