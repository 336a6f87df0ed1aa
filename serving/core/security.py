"""API keys: the ``X-API-Key`` header checked in constant time against every configured key.

Each key is kept as its SHA-256 digest only, and a request's key is hashed the same way, so every
comparison is between two 32-byte strings: ``hmac.compare_digest`` then takes the same time
whatever the key's length or how much of it matches. All configured keys are compared on every
request (no early exit), so the time does not tell which key matched either.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from serving.core.config import Settings

API_KEY_HEADER = "X-API-Key"


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8")).digest()


@dataclass(frozen=True)
class ApiKeys:
    """The accepted keys (as digests), or ``disabled`` for a local demo."""

    digests: tuple[bytes, ...]
    disabled: bool = False

    @classmethod
    def from_settings(cls, settings: Settings) -> ApiKeys:
        """The keys of validated settings (which refuse no keys unless explicitly disabled)."""
        return cls(
            digests=tuple(_digest(k.get_secret_value()) for k in settings.api_keys),
            disabled=settings.auth_disabled,
        )

    def accepts(self, key: str | None) -> bool:
        """True when auth is disabled or ``key`` is one of the keys (constant time)."""
        if self.disabled:
            return True
        if not key:
            return False
        given = _digest(key)
        matched = False
        for digest in self.digests:
            matched |= hmac.compare_digest(given, digest)
        return matched
