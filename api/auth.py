"""Who is calling: API keys (Bearer) with roles, and reservation tokens.

API keys are kept only as SHA-256 digests and compared in constant time, so neither a memory dump
nor response timing gives a key away. A reservation token is "<incarnation>.<mac>", the mac
HMAC-SHA256(token_secret, id and incarnation): the server stores nothing per cart but the
incarnation (a nonce the reservation gets at creation), and without the secret a token for
another id or another incarnation cannot be made. An id reused after its retention window is a
new incarnation, so the earlier owner's token no longer matches it.
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

    def issue(self, reservation_id: str, incarnation: str = "") -> str:
        # "" is a reservation made before incarnations existed: it keeps the token it was given.
        if not incarnation:
            return self._mac(reservation_id.encode())
        # Ids never hold a "\n", so no other (id, incarnation) pair gives the same message.
        mac = self._mac(f"{reservation_id}\n{incarnation}".encode())
        return f"{incarnation}.{mac}"

    def incarnation_of(self, reservation_id: str, token: str | None) -> str | None:
        """The incarnation a genuine token for this id names; None for any other token.

        Whether that incarnation is the reservation's current one is for the caller to check.
        """
        if not token:
            return None
        incarnation = token.split(".", 1)[0] if "." in token else ""
        if hmac.compare_digest(self.issue(reservation_id, incarnation).encode(), token.encode()):
            return incarnation
        return None

    def verify(self, reservation_id: str, token: str | None, incarnation: str = "") -> bool:
        return self.incarnation_of(reservation_id, token) == incarnation

    def _mac(self, message: bytes) -> str:
        mac = hmac.new(self._secret, message, hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()
