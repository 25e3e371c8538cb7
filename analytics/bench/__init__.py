"""Benchmarks of the analytics against public data sets, run by `vigil bench NAME`."""
