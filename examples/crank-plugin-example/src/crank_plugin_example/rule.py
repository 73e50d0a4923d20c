"""Lint rule EXA001: a service checked over HTTP says how to start it.

A test that depends on the service skips with the dependency's ``hint``; without
one the skip cannot tell anybody what to do.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from crank.plugin import FunctionRule
from crank_plugin_example.services import is_service_check

if TYPE_CHECKING:
    from collections.abc import Iterator

    from crank.plugin import Finding, LintContext


def http_dependency_has_hint(ctx: LintContext) -> Iterator[Finding]:
    # the document may break the schema: read it defensively
    deps = ctx.data.get("dependencies")
    system = deps.get("system") if isinstance(deps, dict) else None
    for i, entry in enumerate(system if isinstance(system, list) else []):
        if not isinstance(entry, dict) or not is_service_check(entry.get("check")):
            continue
        if not entry.get("hint"):
            yield ctx.finding(
                "EXA001",
                ("dependencies", "system", i),
                f"service {entry.get('name')!r} is checked at {entry['check']} but has no "
                "hint: a test that skips on it cannot say how to start it",
                hint="add `hint:` saying how to start the service, "
                "e.g. `docker compose up -d search`",
                severity="warning",
            )


HTTP_DEPENDENCY_HINT = FunctionRule(
    "EXA001", "a service checked over HTTP says how to start it", http_dependency_has_hint
)
