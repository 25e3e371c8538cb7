"""Errors as RFC 9457 problem details, and the one table mapping domain exceptions to statuses.

Every error a client sees is ``application/problem+json`` with ``type``,
``title``, ``status`` and ``detail``; a validation error also lists each
offending field in ``errors``. An unexpected exception is logged here and
answered with a bare 500: no stack trace or internal message leaves the server.
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError, IntegrityError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.admission import Overloaded
from vigil.auth.service import Throttled, Unauthenticated
from vigil.db.base import InvalidValue
from vigil.errors import (
    Conflict,
    DomainError,
    Forbidden,
    InvalidRequest,
    InvalidTransition,
    NotFound,
)
from vigil.pdf import PdfUnavailable
from vigil.telemetry.store import StoreUnavailable, TelemetryError

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"
PROBLEM_BASE = "https://vigil.dev/problems/"

# The one place domain exceptions become HTTP statuses; the first matching class wins.
STATUS_OF: tuple[tuple[type[Exception], int, str], ...] = (
    (Unauthenticated, 401, "unauthenticated"),
    (Throttled, 429, "throttled"),
    (NotFound, 404, "not-found"),
    (Forbidden, 403, "forbidden"),
    (InvalidTransition, 409, "invalid-transition"),
    (Conflict, 409, "conflict"),
    (InvalidRequest, 422, "invalid-request"),
    (DomainError, 400, "bad-request"),
    (InvalidValue, 422, "invalid-value"),
    (TelemetryError, 422, "invalid-telemetry-request"),
    (StoreUnavailable, 503, "telemetry-unavailable"),
    (PdfUnavailable, 503, "pdf-unavailable"),
    (Overloaded, 503, "overloaded"),
)


def status_of(exc: Exception) -> tuple[int, str]:
    """The HTTP status and problem kind of an exception (500 for one not listed)."""
    for cls, status, kind in STATUS_OF:
        if isinstance(exc, cls):
            return status, kind
    return 500, "internal-error"


def problem(
    status: int,
    detail: str,
    *,
    kind: str | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    """A problem+json response; ``kind`` names the problem type (default: the status phrase)."""
    phrase = HTTPStatus(status).phrase
    body = {
        "type": PROBLEM_BASE + (kind or phrase.lower().replace(" ", "-").replace("'", "")),
        "title": phrase,
        "status": status,
        "detail": detail,
        **extra,
    }
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def _field(loc: tuple[Any, ...] | list[Any]) -> str:
    return ".".join(str(part) for part in loc)


async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = [
        {"field": _field(error.get("loc", ())), "message": str(error.get("msg", "invalid"))}
        for error in exc.errors()
    ]
    first = errors[0] if errors else {"field": "request", "message": "invalid"}
    return problem(422, f"{first['field']}: {first['message']}", kind="validation-error",
                   errors=errors)


async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    detail = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
    return problem(exc.status_code, detail, headers=dict(exc.headers or {}))


async def _domain(request: Request, exc: Exception) -> JSONResponse:
    for cls, status, kind in STATUS_OF:
        if isinstance(exc, cls):
            headers = {}
            if isinstance(exc, Throttled | Overloaded):
                headers["Retry-After"] = str(exc.retry_after)
            if isinstance(exc, Unauthenticated):
                headers["WWW-Authenticate"] = 'Bearer realm="vigil"'
            if isinstance(exc, StoreUnavailable):
                return problem(status, "the telemetry store is unavailable", kind=kind)
            if isinstance(exc, PdfUnavailable):
                log.error("PDF output failed on %s %s: %s", request.method, request.url.path,
                          exc)
                return problem(status, "PDF output is unavailable on this server; ask for "
                                       "HTML", kind=kind)
            return problem(status, str(exc) or HTTPStatus(status).phrase, kind=kind,
                           headers=headers)
    return await _unexpected(request, exc)


async def _integrity(request: Request, exc: IntegrityError) -> JSONResponse:
    log.info("integrity error on %s %s: %s", request.method, request.url.path, exc.orig)
    return problem(409, "the request conflicts with existing data (a duplicate or a reference "
                        "to something that does not exist)", kind="conflict")


async def _data(request: Request, exc: DataError) -> JSONResponse:
    log.warning("value refused by the database on %s %s: %s", request.method, request.url.path,
                exc.orig)
    return problem(422, "a value is out of the range the database can hold",
                   kind="invalid-value")


async def _database(request: Request, exc: OperationalError) -> JSONResponse:
    log.error("database error on %s %s: %s", request.method, request.url.path, exc.orig)
    return problem(503, "the database is unavailable; try again", kind="database-unavailable")


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return problem(500, "an internal error occurred; it has been logged", kind="internal-error")


def install(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _validation)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, _http)  # type: ignore[arg-type]
    for cls, _status, _kind in STATUS_OF:
        app.add_exception_handler(cls, _domain)
    app.add_exception_handler(IntegrityError, _integrity)  # type: ignore[arg-type]
    app.add_exception_handler(DataError, _data)  # type: ignore[arg-type]
    app.add_exception_handler(OperationalError, _database)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, _unexpected)


PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string", "format": "uri"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"field": {"type": "string"}, "message": {"type": "string"}},
            },
        },
    },
}


def responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI descriptions of the problem answers a route may give."""
    return {
        status: {
            "description": HTTPStatus(status).phrase,
            "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}},
        }
        for status in statuses
    }
