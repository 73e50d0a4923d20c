"""Optional bearer-token authentication (``CRANK_API_TOKEN``)."""

from __future__ import annotations

import hmac
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Collection


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, else None."""
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def authorized(
    path: str,
    authorization: str | None,
    expected: str | None,
    public_paths: Collection[str] = (),
) -> bool:
    """True when no token is configured, the path is public, or the token matches.

    ``public_paths`` are the routes declared public in the route table (the probes
    and the metrics scrape).

    The comparison is constant-time (:func:`hmac.compare_digest`) so the answer's
    timing does not reveal how much of a guess was right.
    """
    if expected is None or path in public_paths:
        return True
    given = bearer_token(authorization)
    if given is None:
        return False
    return hmac.compare_digest(given.encode(), expected.encode())


__all__ = ["authorized", "bearer_token"]
