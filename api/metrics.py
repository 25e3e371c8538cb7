"""Request metrics for Prometheus: counts and latency per route template, method and status.

Routes are labelled by their template (``/api/v1/devices/{device_id}``), never
the raw path, so a client cannot grow the label set without bound.
"""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class ApiMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.requests = Counter(
            "vigil_api_requests", "Requests answered, by route, method and status",
            ["route", "method", "status"], registry=self.registry,
        )
        self.seconds = Histogram(
            "vigil_api_request_seconds", "Time to answer a request, by route and method",
            ["route", "method"],
            buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=self.registry,
        )


def _template(scope: Scope, prefix: str) -> str:
    """The matched route's path template; routers included under ``prefix`` omit it there."""
    template = getattr(scope.get("route"), "path", None)
    if not template:
        return "unmatched"
    if scope["path"].startswith(prefix + "/") and not template.startswith(prefix + "/"):
        return prefix + template
    return template


class MetricsMiddleware:
    """Plain ASGI (not BaseHTTPMiddleware), so it adds little to each request."""

    def __init__(self, app: ASGIApp, metrics: ApiMetrics, prefix: str) -> None:
        self.app = app
        self.metrics = metrics
        self.prefix = prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            label = _template(scope, self.prefix)
            method = scope["method"]
            self.metrics.requests.labels(label, method, str(status)).inc()
            self.metrics.seconds.labels(label, method).observe(time.perf_counter() - started)
