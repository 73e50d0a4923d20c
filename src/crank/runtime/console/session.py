"""The console's session: a signed cookie, the login it records, and its CSRF token.

The session lives entirely in one cookie (nothing is stored on the server): a JSON
document signed with HMAC-SHA256, sent ``HttpOnly``, ``SameSite=Strict``, ``Path=/ui``
(and ``Secure`` over HTTPS). It carries

* ``auth``: whether this browser logged in with ``CRANK_API_TOKEN`` (meaningless
  without a token: then everybody who reaches the port may use the console);
* ``csrf``: a random token every form of the console sends back; a state-changing
  request without it (or with another session's) is refused. ``SameSite=Strict``
  already keeps the cookie off cross-site requests; the token also holds when a
  browser ignores SameSite or a sibling subdomain is hostile;
* ``iat``: when it was issued; a session older than :data:`SESSION_MAX_AGE_S` is
  refused as if there were none;
* ``flash``: one message to show on the next page (what an action did).

The signing key is derived from the API token, so every replica of a deployment
accepts the same sessions and changing the token logs every browser out; without a
token it is random per process.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import time
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable

#: the cookie's name (its path is the console's prefix).
COOKIE_NAME = "crank_console"
#: a login lasts this long (12 hours), then the operator logs in again.
SESSION_MAX_AGE_S = 12 * 3600
#: the form field every state-changing request carries.
CSRF_FIELD = "csrf_token"
_KEY_LABEL = b"crank console session v1"


@dataclass(frozen=True)
class Session:
    """What one browser's cookie says."""

    csrf: str
    authenticated: bool = False
    issued_at: float = 0.0
    flash: str | None = None

    def as_doc(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"csrf": self.csrf, "auth": self.authenticated, "iat": self.issued_at}
        if self.flash:
            doc["flash"] = self.flash
        return doc

    def with_flash(self, message: str | None) -> Session:
        return replace(self, flash=message)

    def csrf_matches(self, given: str | None) -> bool:
        """The form's token is this session's (compared in constant time)."""
        return given is not None and hmac.compare_digest(given.encode(), self.csrf.encode())


def session_key(api_token: str | None) -> bytes:
    """The key sessions are signed with: from the token when there is one, else random."""
    if api_token is None:
        return os.urandom(32)
    return hmac.new(api_token.encode(), _KEY_LABEL, hashlib.sha256).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class SessionSigner:
    """Turns a :class:`Session` into a cookie value and back, refusing forged or old ones."""

    def __init__(
        self,
        key: bytes,
        *,
        max_age_s: float = SESSION_MAX_AGE_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._key = key
        self.max_age_s = max_age_s
        self.clock = clock

    def new(self, *, authenticated: bool = False) -> Session:
        """A fresh session with a new CSRF token (a login gets a new one: no fixation)."""
        return Session(secrets.token_urlsafe(32), authenticated, self.clock())

    def _mac(self, body: bytes) -> bytes:
        return hmac.new(self._key, body, hashlib.sha256).digest()

    def dumps(self, session: Session) -> str:
        body = json.dumps(session.as_doc(), separators=(",", ":"), sort_keys=True).encode()
        return f"{_b64(body)}.{_b64(self._mac(body))}"

    def loads(self, value: str | None) -> Session | None:
        """The session in a cookie value; None when absent, forged, malformed or expired."""
        if not value or value.count(".") != 1:
            return None
        body_b64, mac_b64 = value.split(".")
        try:
            body, mac = _unb64(body_b64), _unb64(mac_b64)
        except ValueError:
            return None
        if not hmac.compare_digest(mac, self._mac(body)):
            return None
        try:
            doc = json.loads(body)
            session = Session(
                csrf=str(doc["csrf"]),
                authenticated=doc["auth"] is True,
                issued_at=float(doc["iat"]),
                flash=str(doc["flash"]) if doc.get("flash") else None,
            )
        except (ValueError, KeyError, TypeError):
            return None
        age = self.clock() - session.issued_at
        if age < -60 or age > self.max_age_s:  # a minute of clock skew between replicas
            return None
        return session


__all__ = [
    "COOKIE_NAME",
    "CSRF_FIELD",
    "SESSION_MAX_AGE_S",
    "Session",
    "SessionSigner",
    "session_key",
]
