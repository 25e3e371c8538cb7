"""Preventive maintenance and calibration: plans by calendar or usage, and their records."""
