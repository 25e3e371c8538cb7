"""What the end-to-end benches ask the running services: their metrics, readiness, and waiting.

`vigil ingest` and `vigil jobs` serve Prometheus metrics and `/readyz` on a
loopback port, the API `/readyz`; the benches that run them as processes
(`vigil bench fleet`, `vigil bench soak`) poll these rather than reach inside.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable


def scrape(port: int, name: str) -> float:
    """The sum of a Prometheus metric's samples on ``port``; 0 when the process does not answer."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            text = response.read().decode()
    except (OSError, urllib.error.URLError):
        return 0.0
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(name + " ") or line.startswith(name + "{"))


def ready(port: int, path: str = "/readyz") -> bool:
    """Whether the service on ``port`` answers ready (HTTP 200 with ``ok`` or ``status``)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as response:
            body = json.loads(response.read() or b"{}")
    except (OSError, urllib.error.URLError, ValueError):
        return False
    return bool(body.get("ok", body.get("status") == "ready"))


def answers(port: int, path: str = "/metrics") -> bool:
    """Whether anything answers HTTP 200 on ``port`` and ``path``."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as response:
            return bool(response.status == 200)
    except (OSError, urllib.error.URLError):
        return False


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``condition`` until it holds; RuntimeError naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.2)
