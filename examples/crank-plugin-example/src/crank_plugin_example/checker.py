"""The ``http`` and ``https`` dependency kinds: a service is there when its URL answers.

``ensure_dependency("http://127.0.0.1:9200/health")`` (or a manifest's
``check: http://...``) is *available* when the URL answers with a success, *missing*
(a skip) when nothing answers, and *broken* (a failure) when the service answers
with an error status: it is there, but unhealthy.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from typing import TYPE_CHECKING

from crank.plugin import DependencyResult

if TYPE_CHECKING:
    from crank.plugin import DependencySpec

#: Seconds one check waits for an answer.
TIMEOUT_S = 5.0

# Declared services are reached directly: an http_proxy meant for the internet must
# not stand between a test and a service on localhost.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def check_http(spec: DependencySpec) -> DependencyResult:
    """GET the spec's URL once and say what answered."""
    if spec.url is None:
        return DependencyResult.failing(
            spec,
            f"{spec.raw!r} names no service: give its URL, e.g. http://127.0.0.1:9200/health",
            error=None,
        )
    # the spec's kind is its scheme, so this is an http:// or https:// URL, never file:
    request = urllib.request.Request(spec.url, headers={"User-Agent": "crank-plugin-example"})  # noqa: S310
    try:
        with _OPENER.open(request, timeout=TIMEOUT_S) as response:
            status = response.status
    except urllib.error.HTTPError as exc:
        return DependencyResult.failing(
            spec,
            f"{spec.name} answers, but with HTTP {exc.code} {exc.reason}",
            error=f"HTTP {exc.code}",
            hint="the service is up but unhealthy: look at its logs",
        )
    except (urllib.error.URLError, OSError) as exc:
        reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        return DependencyResult.missing(
            spec,
            f"nothing answers at {spec.name} ({reason})",
            hint="start the service, or point the URL at one that runs",
        )
    return DependencyResult.found(spec, reason=f"{spec.name} answered HTTP {status}")
