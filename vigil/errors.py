"""The exceptions every domain service raises, so callers (the API, the jobs) need know only these.

The API maps each class to one HTTP status in one place; a message is for
people and says what was wrong, never how the code works.
"""

from __future__ import annotations


class DomainError(Exception):
    """A request the domain refuses; nothing was changed."""


class NotFound(DomainError):
    """The object does not exist (or the caller may not know that it does)."""


class Forbidden(DomainError):
    """The actor may not do this."""


class InvalidTransition(DomainError):
    """The object's state does not allow this move, or a guard of the move is not met."""


class Conflict(DomainError):
    """The request contradicts the current state (a duplicate, a stale update)."""


class InvalidRequest(DomainError):
    """A value the domain cannot accept (the message names it)."""
