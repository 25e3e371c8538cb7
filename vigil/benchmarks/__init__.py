"""Benchmarks of the edge agent and the simulator.

They live on the server side because they start a local Mosquitto
(`vigil.servers`), and `edge_agent` must import nothing of ours.
"""
