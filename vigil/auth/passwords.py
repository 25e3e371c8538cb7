"""Argon2id password hashes (argon2-cffi), and the passwords Vigil generates itself."""

from __future__ import annotations

import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

# Argon2id at OWASP's recommended minimum (19 MiB, 2 passes, 1 lane): about 0.1 s a check on
# one core. RFC 9106's 64 MiB profile took 0.6 s here, too much CPU for sign-in bursts.
_hasher = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)
# Checked when the user does not exist, so an unknown name takes as long as a wrong password.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))

MIN_PASSWORD_CHARS = 12
MAX_PASSWORD_CHARS = 256


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    """True if ``password`` matches; an empty or damaged hash matches nothing."""
    try:
        return _hasher.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    """True when the hash was made with weaker parameters than today's."""
    return _hasher.check_needs_rehash(password_hash)


def generate_password() -> str:
    """A password of about 128 random bits, printable and free of look-alike confusion."""
    return secrets.token_urlsafe(16)
