"""``crank status``: the system health report of a running crank."""

from __future__ import annotations

import json
from typing import Any

import click
import httpx

from crank.cli.options import api_token, url_option, url_without_password
from crank.errors import ExitCode, NothingListening, UsageError


def fetch_status(url: str, token: str | None, timeout_s: float = 10.0) -> dict[str, Any]:
    # every message names the URL without the password of its user:password@
    shown = url_without_password(url)
    endpoint = shown.rstrip("/") + "/v1/status"
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        response = httpx.get(url.rstrip("/") + "/v1/status", headers=headers, timeout=timeout_s)
    except httpx.HTTPError as exc:
        raise NothingListening(
            f"no crank server answers at {shown} ({type(exc).__name__})",
            hint="start one with `crank run`, or pass --url of the running server",
            subject=shown,
        ) from None
    if response.status_code == 401 and token:
        raise UsageError(
            f"{endpoint} refused the bearer token in CRANK_API_TOKEN",
            hint="check CRANK_API_TOKEN: it must be the token the server was started "
            "with (its CRANK_API_TOKEN)",
            subject=shown,
        )
    if response.status_code == 401:
        raise UsageError(
            f"{endpoint} wants a bearer token",
            hint="set CRANK_API_TOKEN to the server's token",
            subject=shown,
        )
    try:
        doc = response.json()
    except ValueError:
        doc = None
    if response.status_code != 200 or not isinstance(doc, dict):
        raise NothingListening(
            f"{endpoint} answered HTTP {response.status_code} without a health report",
            hint="is this a crank server? check --url",
            subject=shown,
        )
    return doc


@click.command("status")
@url_option
def status(url: str) -> ExitCode:
    """Print the system health report (JSON) of a running crank; exit 1 when critical."""
    report = fetch_status(url, api_token())
    click.echo(json.dumps(report, indent=2, sort_keys=True))
    return ExitCode.FINDINGS if report.get("overall_health") == "critical" else ExitCode.OK


__all__ = ["fetch_status", "status"]
