"""An application served for real: uvicorn in a thread, on a free loopback port.

For tests that need real sockets and a real event loop (a browser, many
concurrent clients), where ``TestClient`` would serialise the requests.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

import uvicorn
from starlette.types import ASGIApp

from vigil.servers import LOOPBACK, free_port


@contextmanager
def served(app: ASGIApp, *, lifespan: Literal["on", "off"] = "on",
           start_timeout_s: float = 30) -> Iterator[str]:
    """The app's base URL while uvicorn serves it; stopped (connections closed) on exit.

    ``lifespan="off"`` for an app whose engine or background work outlives the server.
    """
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host=LOOPBACK, port=port, log_level="warning",
                                           lifespan=lifespan, access_log=False))
    thread = threading.Thread(target=server.run, name=f"uvicorn-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + start_timeout_s
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            server.should_exit = True
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    try:
        yield f"http://{LOOPBACK}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
