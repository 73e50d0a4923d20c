"""Options shared by several commands, each declared once.

A command takes ``@format_option("text", "json")`` or ``@today_option`` instead of
spelling the option out, so the same option reads and behaves the same in every
command; the callbacks hand the command a parsed value.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

import click

from crank.errors import UsageError

if TYPE_CHECKING:
    from collections.abc import Callable

F = TypeVar("F", bound="Callable[..., Any]")

#: The format chosen inside GitHub Actions when a command can write annotations.
GITHUB = "github"


#: The longest grace period ``--min-grace-days`` takes: a century.
MAX_GRACE_DAYS = 36_500
#: The latest date a date option takes: crank counts grace periods (up to
#: MAX_GRACE_DAYS) forward from it, and Python's dates end with the year 9999.
LATEST_DATE = dt.date(9899, 12, 31)


def parse_date(value: str | None, option: str) -> dt.date | None:
    """The ``YYYY-MM-DD`` value of ``option``; None when not given."""
    if value is None:
        return None
    try:
        day = dt.date.fromisoformat(value)
    except ValueError:
        raise UsageError(
            f"{option} {value!r} is not a YYYY-MM-DD date",
            hint=f"e.g. {option} 2026-11-22",
            subject=value,
        ) from None
    if day > LATEST_DATE:
        raise UsageError(
            f"{option} {value} is too far ahead: crank counts grace periods of up to "
            f"{MAX_GRACE_DAYS:,} days from it, so it takes dates up to {LATEST_DATE}",
            hint=f"e.g. {option} 2026-11-22",
            subject=value,
        )
    return day


def parse_today(value: str | None) -> dt.date | None:
    """``--today YYYY-MM-DD`` (sunset checks); None when not given."""
    return parse_date(value, "--today")


def report_format(value: str | None) -> str:
    """The ``--format`` given, else ``github`` inside GitHub Actions, else ``text``."""
    if value is not None:
        return value
    return GITHUB if os.environ.get("GITHUB_ACTIONS", "").lower() == "true" else "text"


def format_option(*choices: str) -> Callable[[F], F]:
    """``--format`` among ``choices``, passed to the command as ``output_format``.

    The default is ``text``; a command that can write GitHub annotations defaults to
    ``github`` when ``GITHUB_ACTIONS=true``.
    """
    if GITHUB in choices:
        return click.option(
            "--format",
            "output_format",
            type=click.Choice(choices),
            default=None,
            callback=lambda _ctx, _param, value: report_format(value),
            help="Output format. Default: github when GITHUB_ACTIONS=true, else text.",
        )
    return click.option(
        "--format",
        "output_format",
        type=click.Choice(choices),
        default="text",
        show_default=True,
        help="Output format.",
    )


#: ``--today YYYY-MM-DD`` (hidden; tests and rehearsals of a sunset), passed as a date.
today_option = click.option(
    "--today",
    metavar="YYYY-MM-DD",
    hidden=True,
    callback=lambda _ctx, _param, value: parse_today(value),
    help="Pretend today is this date (sunset checks).",
)


def worker_paths_option(action: str) -> Callable[[F], F]:
    """``--worker PATH`` (repeatable): crank.yaml files (or folders holding one) used
    instead of the installed workers; ``action`` says what is done with them ("Route")."""
    return click.option(
        "--worker",
        "worker_paths",
        multiple=True,
        metavar="PATH",
        help=f"{action} these crank.yaml files (or folders holding one) instead of the "
        "installed workers (repeatable).",
    )


#: ``--manifest PATH``: the worker's crank.yaml when it is not found from the project.
manifest_option = click.option(
    "--manifest",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="The worker's crank.yaml (default: the project in the current folder).",
)

#: ``--project DIR``: the worker project folder.
project_option = click.option(
    "--project",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="The worker project folder (default: the current folder, or above --manifest).",
)


def api_token() -> str | None:
    """``CRANK_API_TOKEN``, the bearer token of the commands that talk to a running
    crank; None when unset or empty.

    It travels in an HTTP header, which holds printable ASCII and no whitespace at
    either end: a token with an accented letter failed deep in the HTTP library (a
    traceback), and one with a trailing space (a copy-paste) read as "no server".
    """
    token = os.environ.get("CRANK_API_TOKEN") or None
    if token is None:
        return None
    odd = next((c for c in token if not " " <= c <= "~"), None)
    if odd is not None:
        problem = f"holds {odd!r}, which is not printable ASCII"
    elif token != token.strip():
        problem = "starts or ends with a space"
    else:
        return token
    raise UsageError(
        f"CRANK_API_TOKEN {problem}: an HTTP header cannot carry it as the server's token",
        hint="set CRANK_API_TOKEN to the exact token the server was started with",
        subject="CRANK_API_TOKEN",
    )


#: where ``crank run`` answers by default (its ``--host``/``--port`` defaults).
DEFAULT_URL = "http://127.0.0.1:8080"


def _credentials(url: str) -> tuple[str, str, str, str] | None:
    """``url`` cut into (what comes before the user, user, password, what follows the
    ``@``) when it has a ``user:password@``; None when it has no password.

    Cut by hand rather than with ``urlsplit``, which refuses some URLs (an unclosed
    ``[``) that the message saying so still shows, and at the last ``@``, wherever it
    is: a password with an unescaped ``/`` (where the URL's host would end) is masked
    too, at the price of garbling a URL with an ``@`` in its path. A value with no
    ``scheme://`` (a mistake, which a message then names) is cut the same way.
    """
    scheme, sep, rest = url.partition("://")
    prefix, rest = (scheme + sep, rest) if sep else ("", url)
    userinfo, at, after = rest.rpartition("@")
    user, colon, password = userinfo.partition(":")
    return (prefix, user, password, after) if at and colon else None


def url_without_password(url: str) -> str:
    """``url`` with its password, if it has one, shown as ``***``: every message that
    names a ``--url`` shows it this way, as a terminal, a CI log or a bug report is no
    place for a password."""
    cut = _credentials(url)
    return url if cut is None else f"{cut[0]}{cut[1]}:***@{cut[3]}"


def hide_password(text: str, url: str) -> str:
    """``text`` (a message that may quote ``url``) with the password of ``url`` masked
    wherever ``url``'s ``user:password@`` appears in it."""
    cut = _credentials(url)
    if cut is None or not cut[2]:
        return text
    _, user, password, _ = cut
    return text.replace(f"{user}:{password}@", f"{user}:***@")


def _http_url(ctx: click.Context, param: click.Parameter, value: str) -> str:
    """``value`` when it is an http(s) URL with a host and a usable port; a bad
    parameter (exit status 2) saying what is wrong with it otherwise."""
    example = f"(e.g. {DEFAULT_URL})"
    shown = url_without_password(value)
    try:
        parts = urlsplit(value)
        port = parts.port  # parsed on access: a port that is no number raises here
    except ValueError as exc:  # an unclosed "[" of an IPv6 host, a port out of range
        # a password with an unescaped "/" ends the authority there: urlsplit then reads
        # part of it as the port and quotes it in its message
        cut = _credentials(value)
        pieces = [p for p in re.split(r"[/?#]", cut[2]) if p] if cut else []
        why = "" if any(p in str(exc) for p in pieces) else f": {exc}"
        raise click.BadParameter(f"{shown!r} is not a valid URL{why} {example}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise click.BadParameter(f"{shown!r} is not an http:// or https:// URL {example}")
    if port == 0:
        raise click.BadParameter(f"{shown!r} has port 0, which no server listens on {example}")
    return value


#: ``--url``: the base URL of a running crank (or ``CRANK_URL``), checked before use.
url_option = click.option(
    "--url",
    default=DEFAULT_URL,
    show_default=True,
    envvar="CRANK_URL",
    callback=_http_url,
    help="Base URL of the running crank (or CRANK_URL).",
)
