"""The console's login session: a signed, expiring cookie instead of an API key in the page.

The value is `<expiry unix seconds>.<key id>.<HMAC-SHA256 over both>`; the server stores nothing.
The key id names which admin key logged in (a digest prefix, never the key). The secret is derived
from FLASHSALE_TOKEN_SECRET under its own label, so a reservation token can never pass as a
session and the other way round; without that setting sessions last one process, like tokens.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from dataclasses import dataclass

COOKIE_NAME = "flashsale_console"
COOKIE_PATH = "/console"
SESSION_SECONDS = 8 * 3600  # one launch day's shift


@dataclass(frozen=True, slots=True)
class Session:
    key_id: str
    expires_at: int


class SessionSigner:
    def __init__(self, secret: str, lifetime_seconds: int = SESSION_SECONDS) -> None:
        self._key = hmac.new(secret.encode(), b"flashsale console session", hashlib.sha256).digest()
        self.lifetime_seconds = lifetime_seconds

    def issue(self, key_id: str, now: float | None = None) -> str:
        expires = int(now if now is not None else time.time()) + self.lifetime_seconds
        body = f"{expires}.{key_id}"
        return f"{body}.{self._mac(body)}"

    def verify(self, value: str | None, now: float | None = None) -> Session | None:
        if not value or value.count(".") != 2:
            return None
        body, _, mac = value.rpartition(".")
        if not hmac.compare_digest(self._mac(body).encode(), mac.encode()):
            return None
        expires, _, key_id = body.partition(".")
        if not expires.isdigit() or int(expires) <= (now if now is not None else time.time()):
            return None
        return Session(key_id=key_id, expires_at=int(expires))

    def _mac(self, body: str) -> str:
        digest = hmac.new(self._key, body.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
