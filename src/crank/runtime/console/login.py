"""Logging in and out of the console (only meaningful with ``CRANK_API_TOKEN`` set).

The login form takes the API token itself: whoever may call the API may use the
console, and nobody else. A wrong token is answered 401 and logged without the
token; a right one gives the browser a new session (new CSRF token too).
"""

from __future__ import annotations

import hmac
from typing import TYPE_CHECKING

from crank.runtime.console.web import CONSOLE_PREFIX, safe_next

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response

    from crank.runtime.console.web import ConsoleWeb, Visit

TOKEN_FIELD = "token"  # noqa: S105 - the form field's name, not a secret


async def login_form(web: ConsoleWeb, request: Request) -> Response:
    """The login form; straight to the console when no login is needed or done."""
    visit = web.visit(request)
    target = safe_next(request.query_params.get("next"))
    if web.signed_in(visit):
        return web.redirect(visit, target)
    return web.render(visit, "login.html", title="Log in", next=target, failed=False)


async def log_in(web: ConsoleWeb, visit: Visit) -> Response:
    """Check the token; a new, logged-in session on success."""
    target = safe_next(visit.form.get("next"))
    if web.token is None:
        return web.redirect(visit, target)
    given = visit.form.get(TOKEN_FIELD, "")
    if not hmac.compare_digest(given.encode(), web.token.encode()):
        client = visit.request.client.host if visit.request.client else None
        web.log.warning("console_login_failed", client=client)
        return web.render(visit, "login.html", status=401, title="Log in", next=target, failed=True)
    visit.session = web.signer.new(authenticated=True).with_flash("Logged in.")
    visit.changed = True
    web.log.info("console_login")
    return web.redirect(visit, target)


async def log_out(web: ConsoleWeb, visit: Visit) -> Response:
    visit.session = web.signer.new().with_flash("Logged out.")
    visit.changed = True
    return web.redirect(visit, f"{CONSOLE_PREFIX}/login")


__all__ = ["TOKEN_FIELD", "log_in", "log_out", "login_form"]
