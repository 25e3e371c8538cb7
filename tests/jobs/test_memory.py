"""A worker hands the memory its passes freed back to the system."""

from __future__ import annotations

import logging

import pytest

from analytics.jobs.metrics import JobMetrics
from analytics.jobs.runner import Worker
from vigil.config import JobsSettings
from vigil.memory import MemoryRelease, glibc_trim, resident_bytes

MB = 2**20


def worker(factory, store, memory: MemoryRelease, tasks) -> Worker:
    settings = JobsSettings(intervals_s={"scoring": 60.0})
    return Worker(factory=factory, store=store, settings=settings, local_tasks=tasks,
                  metrics=JobMetrics(), memory=memory)


def fragmenting_pass() -> dict[str, int]:
    """What a pass over frames leaves behind: 64 MB in 64 kB blocks, one in ten still held
    (a cache, a result) when it ends, so the freed blocks lie between held ones."""
    blocks = [b"\x01" * (64 * 1024) for _ in range(1024)]
    fragmenting_pass.held = blocks[::10]  # type: ignore[attr-defined]
    return {"blocks": len(blocks)}


@pytest.mark.skipif(glibc_trim() is None or resident_bytes() is None,
                    reason="needs glibc and /proc")
def test_memory_a_pass_freed_between_held_blocks_is_handed_back(factory, embedded, caplog
                                                                ) -> None:
    w = worker(factory, embedded, MemoryRelease.here(), {"frames": fragmenting_pass})
    with caplog.at_level(logging.INFO, logger="analytics.jobs"):
        report = w.run("frames")
    assert report.units == 1
    returned = w.metrics.registry.get_sample_value("vigil_job_memory_returned_bytes_total",
                                                   {"job": "frames"})
    # 58 MB were freed in holes the allocator keeps without the trim.
    assert returned is not None and returned >= 40 * MB
    resident = w.metrics.registry.get_sample_value("vigil_job_resident_memory_bytes")
    assert resident is not None and resident > 0
    assert "MB returned" in caplog.text


def test_only_a_pass_that_did_work_is_followed_by_a_trim(factory, embedded) -> None:
    trims: list[int] = []
    sizes = iter([300 * MB, 250 * MB])

    def trim() -> bool:
        trims.append(1)
        return True

    memory = MemoryRelease(trim=trim, resident=lambda: next(sizes))
    w = worker(factory, embedded, memory, {"idle": dict, "busy": lambda: {"sent": 3}})
    assert w.run("idle").units == 0
    assert trims == []
    assert w.run("busy").units == 1
    assert trims == [1]
    metric = w.metrics.registry.get_sample_value
    assert metric("vigil_job_memory_returned_bytes_total", {"job": "busy"}) == 50 * MB
    assert metric("vigil_job_resident_memory_bytes") == 250 * MB


def test_without_glibc_nothing_is_trimmed_and_the_size_is_still_reported() -> None:
    memory = MemoryRelease(trim=None, resident=lambda: 123 * MB)  # musl or macOS: no trim
    released = memory.after_pass()
    assert released is not None and (released.before, released.returned) == (123 * MB, 0)


THREAD_PASS = """
import sys, threading
import numpy as np
from vigil.memory import MemoryRelease
memory = MemoryRelease.here() if sys.argv[1] == "here" else MemoryRelease(trim=None)
del memory  # the setting stays; a fresh one measures below
freed = np.ones(20 * 2**20 // 8)
del freed  # NumPy freed a 20 MB block: glibc now keeps up to 40 MB at an arena's top
def work():
    blocks = [b"\\x01" * 65536 for _ in range(480)]  # 30 MB, all freed when the pass ends
    del blocks
thread = threading.Thread(target=work)
thread.start()
thread.join()
released = MemoryRelease.here().after_pass()
print(released.returned)
"""


@pytest.mark.skipif(glibc_trim() is None or resident_bytes() is None,
                    reason="needs glibc and /proc")
def test_memory_a_pass_freed_on_a_pool_thread_is_handed_back(tmp_path) -> None:
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(root)}

    def returned(how: str) -> int:
        out = subprocess.run([sys.executable, "-c", THREAD_PASS, how], env=env, check=True,
                             capture_output=True, text=True, timeout=120)
        return int(out.stdout.split()[-1])

    # Without one arena the thread's 30 MB stay at its arena's top, out of the trim's reach.
    assert returned("here") >= 20 * MB
    assert returned("default") < 15 * MB
