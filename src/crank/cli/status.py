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
    return _health_report(doc, endpoint, shown)


#: the fields every crank health report has held (``health_report()`` of the runtime),
#: with their JSON types: any JSON object is not a report, and `{"tasks": "x"}` read
#: as one exited 0, as a healthy crank would
REPORT_FIELDS: dict[str, type] = {
    "overall_health": str,
    "problems": list,
    "worker_pool_health": dict,
    "queue_health": dict,
}
#: the values of ``overall_health``; the exit status is decided by them
HEALTH_LEVELS = ("healthy", "degraded", "critical")


def _health_report(doc: dict[str, Any], endpoint: str, shown: str) -> dict[str, Any]:
    """``doc`` when it is a crank health report; else what answers at --url is not a
    crank server, or not one whose report this crank can judge (exit status 3)."""
    wrong = [name for name, kind in REPORT_FIELDS.items() if not isinstance(doc.get(name), kind)]
    if wrong:
        raise NothingListening(
            f"{endpoint} answered a JSON object that is not a crank health report: "
            f"{', '.join(wrong)} missing or not of the right type",
            hint="is this a crank server? check --url",
            subject=shown,
        )
    if doc["overall_health"] not in HEALTH_LEVELS:
        raise NothingListening(
            f"{endpoint} reports overall_health {doc['overall_health']!r:.60}, which this "
            f"crank does not know ({', '.join(HEALTH_LEVELS)})",
            hint="the server runs another version of crank: use the crank command of that "
            "version, or read the report with `curl`",
            subject=shown,
        )
    return doc


@click.command("status")
@url_option
def status(url: str) -> ExitCode:
    """Print the system health report (JSON) of a running crank; exit 1 when critical.

    Exit status: 0 healthy or degraded; 1 critical; 2 a missing or refused token
    (CRANK_API_TOKEN); 3 nothing answers at --url, or what answers is not a crank
    server, or reports a health this crank does not know (another version).
    """
    report = fetch_status(url, api_token())
    click.echo(json.dumps(report, indent=2, sort_keys=True))
    return ExitCode.FINDINGS if report.get("overall_health") == "critical" else ExitCode.OK


__all__ = ["fetch_status", "status"]
