"""The web console, served by the API's application (see ``views``)."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from api.console.views import PREFIX, root, router

STATIC = Path(__file__).parent / "static"


def install(app: FastAPI) -> None:
    """Add the console's pages and its static files (vendored scripts included) to ``app``."""
    app.mount(f"{PREFIX}/static", StaticFiles(directory=STATIC), name="console-static")
    app.include_router(router)
    app.include_router(root)
