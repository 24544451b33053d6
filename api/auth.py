"""Who is calling: API keys (Bearer) with roles, and reservation tokens.

API keys are kept only as SHA-256 digests and compared in constant time, so neither a memory dump
nor response timing gives a key away. A reservation token is HMAC-SHA256(token_secret, id): the
server stores nothing per cart, and without the secret a token for another id cannot be made.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass
from typing import Literal

Role = Literal["storefront", "admin"]


@dataclass(frozen=True, slots=True)
class Caller:
    role: Role
    key_id: str  # a short digest prefix: names the key in Redis and logs, never the key itself

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


class KeyRing:
    def __init__(self, admin_keys: list[str], storefront_keys: list[str]) -> None:
        roles: dict[bytes, Role] = {_digest(k): "storefront" for k in storefront_keys}
        roles.update({_digest(k): "admin" for k in admin_keys})  # a key in both lists is admin
        self._entries = list(roles.items())

    def __len__(self) -> int:
        return len(self._entries)

    def identify(self, presented: str) -> Caller | None:
        digest = _digest(presented)
        found: Role | None = None
        # Every entry is compared, match or not: the time taken says nothing about which matched.
        for known, role in self._entries:
            if hmac.compare_digest(known, digest):
                found = role
        if found is None:
            return None
        return Caller(role=found, key_id=digest.hex()[:16])


class ReservationTokens:
    def __init__(self, secret: str) -> None:
        self._secret = secret.encode()

    def issue(self, reservation_id: str) -> str:
        mac = hmac.new(self._secret, reservation_id.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()

    def verify(self, reservation_id: str, token: str | None) -> bool:
        if not token:
            return False
        return hmac.compare_digest(self.issue(reservation_id).encode(), token.encode())


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()
