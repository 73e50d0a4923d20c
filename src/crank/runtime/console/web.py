"""What every console page and action goes through: session, login, CSRF, rendering.

:meth:`ConsoleWeb.page` wraps a page (GET): a browser that has not logged in (when
``CRANK_API_TOKEN`` is set) is sent to the login form. :meth:`ConsoleWeb.action`
wraps an action (POST): refused with 403 before it runs when the browser has not
logged in, when the console is read-only, when the request comes from another site
(``Sec-Fetch-Site``) or when its form lacks this session's CSRF token. Every answer
carries headers that keep the console out of frames, caches and other origins'
scripts, and no page or action ever logs a form's content. A broker that does not
answer (:class:`~crank.errors.BrokerError`) makes any page or action a 503 page saying
so, with one warning line in the log.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, quote, urlsplit

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from starlette.responses import HTMLResponse, RedirectResponse, Response

from crank import __version__
from crank.errors import BrokerError
from crank.runtime.console.session import (
    COOKIE_NAME,
    CSRF_FIELD,
    SESSION_MAX_AGE_S,
    Session,
    SessionSigner,
    session_key,
)
from crank.runtime.http.limits import BodyTooLarge, read_body
from crank.runtime.logs import get_logger

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from starlette.requests import Request

    from crank.runtime.http.services import RuntimeServices

#: where the console is served.
CONSOLE_PREFIX = "/ui"
#: the caller name the console's own calls carry (deprecated-call counts, task lists).
CONSOLE_CALLER = "console"
#: the pages in the navigation bar: (path, label).
NAVIGATION = (
    ("/ui", "Overview"),
    ("/ui/capabilities", "Capabilities"),
    ("/ui/deprecated", "Deprecated ids"),
    ("/ui/tasks", "Tasks"),
    ("/ui/dead-letters", "Dead letters"),
)
#: no script at all, styles and forms from here only, never in a frame.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
#: the most fields a console form may have (each form has a handful).
MAX_FORM_FIELDS = 50


def _jsonable(value: Any) -> Any:
    return dict(value) if isinstance(value, Mapping) else str(value)


def _utf8(text: str) -> str:
    """``text``, a lone UTF-16 surrogate in it written as its JSON escape (``\\ud800``):
    a task's result may hold one, and the page is sent as UTF-8, which has no form for it."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def pretty_json(value: Any) -> str:
    """``value`` as indented JSON for a ``<pre>`` (the template escapes it)."""
    return _utf8(json.dumps(value, indent=2, ensure_ascii=False, default=_jsonable))


def compact_json(value: Any) -> str:
    """``value`` as JSON on one line."""
    return _utf8(json.dumps(value, ensure_ascii=False, default=_jsonable))


def utc_time(timestamp: float | None) -> str:
    """A Unix time as ``2026-12-05 07:12:03 UTC`` (empty for none)."""
    if not timestamp:
        return ""
    return dt.datetime.fromtimestamp(timestamp, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def duration(seconds: float) -> str:
    """``42 s``, ``3 min``, ``5 h``, ``2 days``: how long, in the largest whole unit."""
    seconds = max(0.0, seconds)
    for size, unit in ((86400, "days"), (3600, "h"), (60, "min")):
        if seconds >= 2 * size or (unit != "days" and seconds >= size):
            return f"{seconds / size:.0f} {unit}"
    return f"{seconds:.0f} s"


def age(timestamp: float | None) -> str:
    """How long ago a Unix time was (``12 s ago``)."""
    return "" if not timestamp else f"{duration(time.time() - timestamp)} ago"


@dataclass
class Visit:
    """One request to the console: its session and, for an action, its form."""

    request: Request
    session: Session
    #: the cookie must be (re)sent: a new session, or its flash message was shown.
    changed: bool = False
    form: Mapping[str, str] = field(default_factory=dict)

    def take_flash(self) -> str | None:
        message = self.session.flash
        if message is not None:
            self.session = self.session.with_flash(None)
            self.changed = True
        return message


class ConsoleWeb:
    """Sessions, templates and the checks every page and action passes."""

    def __init__(self, services: RuntimeServices) -> None:
        self.s = services
        self.token = services.config.api_token
        self.readonly = services.config.ui == "readonly"
        key = services.session_key
        self.signer = SessionSigner(key if key is not None else session_key(self.token))
        self.templates = Environment(
            loader=PackageLoader("crank.runtime.console", "templates"),
            autoescape=select_autoescape(default=True, default_for_string=True),
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.templates.filters.update(
            json=pretty_json, compact=compact_json, utc=utc_time, ago=age, duration=duration
        )
        self.log = get_logger("crank.runtime.console")

    # -- sessions ----------------------------------------------------------------

    def visit(self, request: Request) -> Visit:
        session = self.signer.loads(request.cookies.get(COOKIE_NAME))
        if session is None:
            return Visit(request, self.signer.new(), changed=True)
        return Visit(request, session)

    def signed_in(self, visit: Visit) -> bool:
        """True when no token is set (the console is as open as the API) or it logged in."""
        return self.token is None or visit.session.authenticated

    def finish(self, visit: Visit, response: Response) -> Response:
        """The answer with the session cookie (when it changed) and the security headers."""
        if visit.changed:
            response.set_cookie(
                COOKIE_NAME,
                self.signer.dumps(visit.session),
                max_age=SESSION_MAX_AGE_S,
                path=CONSOLE_PREFIX,
                httponly=True,
                samesite="strict",
                secure=visit.request.url.scheme == "https",
            )
        response.headers.update(SECURITY_HEADERS)
        return response

    # -- answers -------------------------------------------------------------------

    def render(self, visit: Visit, template: str, *, status: int = 200, **context: Any) -> Response:
        """A page of the console: ``template`` with the layout's context."""
        flash = visit.take_flash()
        html = self.templates.get_template(template).render(
            navigation=NAVIGATION,
            active=context.pop("active", ""),
            csrf_field=CSRF_FIELD,
            csrf_token=visit.session.csrf,
            readonly=self.readonly,
            show_logout=self.token is not None and visit.session.authenticated,
            flash=flash,
            version=__version__,
            broker=self.s.config.public()["broker_url"],
            refresh=context.pop("refresh", None),
            **context,
        )
        return self.finish(visit, HTMLResponse(html, status_code=status))

    def redirect(self, visit: Visit, url: str, *, flash: str | None = None) -> Response:
        """303 to ``url`` (after an action: the browser then GETs the page)."""
        if flash is not None:
            visit.session = visit.session.with_flash(flash)
            visit.changed = True
        return self.finish(visit, RedirectResponse(url, status_code=303))

    def refuse(self, visit: Visit, status: int, title: str, message: str, hint: str) -> Response:
        """An error page: what happened, and what to do about it."""
        return self.render(
            visit, "error.html", status=status, title=title, message=message, hint=hint
        )

    def broker_unreachable(self, visit: Visit, exc: Exception, *, outcome: str = "") -> Response:
        """503: the broker did not answer (or failed), said as the broker said it, with
        one warning line in the log and no traceback: an outage is no bug of crank's.
        ``outcome`` says what became of an action."""
        message = f"the task broker failed: {type(exc).__name__}"
        hint = "check that the broker (SQLite file or Redis) is reachable, then try again"
        if isinstance(exc, BrokerError):
            message, hint = exc.message, exc.hint or hint
        self.log.warning("console_broker_unreachable", path=visit.request.url.path, error=message)
        return self.refuse(visit, 503, "Broker unreachable", f"{outcome} {message}".strip(), hint)

    def to_login(self, visit: Visit) -> Response:
        target = visit.request.url.path
        if visit.request.url.query:
            target += "?" + visit.request.url.query
        return self.redirect(visit, f"{CONSOLE_PREFIX}/login?next={quote(target, safe='')}")

    # -- wrappers --------------------------------------------------------------------

    def page(
        self, handler: Callable[[ConsoleWeb, Visit], Awaitable[Response]]
    ) -> Callable[[Request], Awaitable[Response]]:
        """A GET endpoint: the login form first, when a token is set and not given yet."""

        async def endpoint(request: Request) -> Response:
            visit = self.visit(request)
            if not self.signed_in(visit):
                return self.to_login(visit)
            try:
                return await handler(self, visit)
            except BrokerError as exc:
                return self.broker_unreachable(visit, exc)

        endpoint.__name__ = handler.__name__
        return endpoint

    def action(
        self,
        handler: Callable[[ConsoleWeb, Visit], Awaitable[Response]],
        *,
        changes_tasks: bool = True,
        needs_login: bool = True,
    ) -> Callable[[Request], Awaitable[Response]]:
        """A POST endpoint, run only for a logged-in browser of this site with this
        session's CSRF token; ``changes_tasks`` actions are refused when read-only."""

        async def endpoint(request: Request) -> Response:
            visit = self.visit(request)
            refusal = await self._check_action(visit, changes_tasks, needs_login)
            if refusal is not None:
                return refusal
            try:
                return await handler(self, visit)
            except BrokerError as exc:
                return self.broker_unreachable(
                    visit, exc, outcome="It is unknown whether the action was carried out:"
                )

        endpoint.__name__ = handler.__name__
        return endpoint

    async def _check_action(
        self, visit: Visit, changes_tasks: bool, needs_login: bool
    ) -> Response | None:
        request = visit.request
        if needs_login and not self.signed_in(visit):
            return self.refuse(
                visit,
                403,
                "Log in first",
                "This action needs the console's login: it was not carried out.",
                f"log in at {CONSOLE_PREFIX}/login with the server's CRANK_API_TOKEN",
            )
        if changes_tasks and self.readonly:
            return self.refuse(
                visit,
                403,
                "Read-only console",
                "This console is read-only (CRANK_UI=readonly): the action was not carried out.",
                "use the HTTP API or the crank CLI, or restart crank run with CRANK_UI=on",
            )
        site = request.headers.get("sec-fetch-site")
        if site not in (None, "same-origin", "none"):
            return self.refuse(
                visit,
                403,
                "Refused: another site sent this",
                f"The browser says this request came from a {site} page; it was not carried out.",
                "use the console's own buttons and forms",
            )
        content_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
        if content_type != "application/x-www-form-urlencoded":
            return self.refuse(
                visit,
                415,
                "Not a console form",
                "The console's actions take an HTML form (application/x-www-form-urlencoded).",
                "use the console's own forms, or the HTTP API for programs",
            )
        try:
            body = await read_body(request, self.s.config.max_body_bytes)
            fields = parse_qsl(
                body.decode("utf-8"),
                keep_blank_values=True,
                strict_parsing=False,
                max_num_fields=MAX_FORM_FIELDS,
            )
        except BodyTooLarge as exc:
            return self.refuse(visit, 413, "Form too large", exc.message, exc.hint or "")
        except ValueError:  # not UTF-8, or too many fields
            return self.refuse(
                visit,
                400,
                "Unreadable form",
                "The form could not be read (not UTF-8, or too many fields).",
                "use the console's own forms",
            )
        visit.form = dict(fields)
        if len(visit.form) < len(fields):
            # no console form repeats a field: which one would be meant (a bulk action's
            # capability, the token) is a guess, so nothing is done
            names = [name for name, _ in fields]
            repeated = sorted({name for name in names if names.count(name) > 1})
            return self.refuse(
                visit,
                400,
                "Unreadable form",
                f"The form names {', '.join(repeated)} more than once: nothing was done.",
                "use the console's own forms",
            )
        if not visit.session.csrf_matches(visit.form.get(CSRF_FIELD)):
            return self.refuse(
                visit,
                403,
                "Form expired",
                "This form does not carry this session's security token (it came from an "
                "older session, another browser or another site): nothing was done.",
                "reload the page and send the form again",
            )
        return None


def safe_next(target: str | None) -> str:
    """Where to go after logging in: a console path, never another site."""
    if not target:
        return CONSOLE_PREFIX
    parts = urlsplit(target)
    inside = parts.path == CONSOLE_PREFIX or parts.path.startswith(f"{CONSOLE_PREFIX}/")
    if parts.scheme or parts.netloc or not inside or "\\" in target or "//" in target:
        return CONSOLE_PREFIX
    if target.startswith(f"{CONSOLE_PREFIX}/login"):
        return CONSOLE_PREFIX
    return target


__all__ = [
    "CONSOLE_CALLER",
    "CONSOLE_PREFIX",
    "NAVIGATION",
    "SECURITY_HEADERS",
    "ConsoleWeb",
    "Visit",
    "pretty_json",
    "safe_next",
]
