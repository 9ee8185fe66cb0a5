"""Secrets: argon2id password hashes, random tokens stored as SHA-256 digests."""

from __future__ import annotations

import hashlib
import secrets
import threading

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

API_TOKEN_PREFIX = "spe_"
REFRESH_TOKEN_PREFIX = "spr_"
# Shown in listings so an admin can tell tokens apart without ever seeing a secret again.
DISPLAY_PREFIX_CHARS = 12

# argon2-cffi defaults: argon2id, 64 MiB, t=3, p=4 (RFC 9106 "second recommended" profile).
_hasher = PasswordHasher()
# Each hash takes 64 MiB and ~0.1 s of CPU: a burst of logins must not exhaust memory or
# every worker thread, so only a few hash at once and the rest wait their turn.
_hash_slots = threading.BoundedSemaphore(4)
# Verified against when the username is unknown, so both cases take the same time.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


def hash_password(password: str) -> str:
    """An argon2id hash of ``password`` (salted, parameters encoded in the string)."""
    with _hash_slots:
        return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    """True when ``password`` matches; a missing hash costs the same time and is False."""
    with _hash_slots:
        try:
            return _hasher.verify(password_hash or _DUMMY_HASH, password) and bool(password_hash)
        except (VerificationError, InvalidHashError):
            return False


def needs_rehash(password_hash: str) -> bool:
    """True when the hash was made with weaker parameters than today's."""
    return _hasher.check_needs_rehash(password_hash)


def new_secret(prefix: str) -> str:
    """A random token with a recognisable prefix (256 bits of entropy)."""
    return prefix + secrets.token_urlsafe(32)


def digest(token: str) -> str:
    """SHA-256 hex digest under which a random token is stored and looked up."""
    return hashlib.sha256(token.encode()).hexdigest()
