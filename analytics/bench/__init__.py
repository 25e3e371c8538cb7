"""Benchmark commands of the analytics library."""
