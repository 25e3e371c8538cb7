"""Serve the HTTP API (FastAPI on uvicorn)."""

from __future__ import annotations

import argparse


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", help="address to listen on (default: settings api.host)")
    parser.add_argument("--port", type=int, help="port to listen on (default: settings api.port)")
    parser.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")


def build() -> object:
    """The application for uvicorn's factory mode, from the settings of the environment."""
    from api.app import create_app
    from vigil.config import get_settings

    return create_app(get_settings())


def run(args: argparse.Namespace) -> int:
    import uvicorn

    from vigil.config import get_settings

    settings = get_settings()
    uvicorn.run(
        "api.cli:build",
        factory=True,
        host=args.host or settings.api.host,
        port=args.port or settings.api.port,
        workers=args.workers,
        log_level=settings.log_level.lower(),
        proxy_headers=False,
        server_header=False,
    )
    return 0
