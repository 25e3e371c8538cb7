"""Preventive maintenance and calibration: plans by calendar or usage, and their records.

``rules`` (due dates, tolerances) is pure; ``service`` opens tickets a lead time
ahead, escalates overdue work and records completions; ``scheduled`` runs it.
"""
