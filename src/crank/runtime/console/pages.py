"""The console's overview, capability and deprecated-id pages, and the try-it form.

The try-it form calls a capability the way ``POST /v1/capabilities/{id}`` does (the
same gateway: routing, budget, input validation, queue bound), as the caller
``console``, and shows the task's outcome; or queues it and opens the task's page.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from crank.errors import ValidationFailed
from crank.runtime.console.overview import gather_overview
from crank.runtime.console.web import CONSOLE_CALLER, CONSOLE_PREFIX
from crank.runtime.http.answers import error_for, rejection_reason
from crank.runtime.http.request_parsing import parse_json

if TYPE_CHECKING:
    import datetime as dt

    from starlette.responses import Response

    from crank.manifest import Capability, Deprecation
    from crank.routing import Route
    from crank.runtime.brokers.contract import TaskRecord
    from crank.runtime.concurrency import Admitted
    from crank.runtime.console.throughput import OutcomeWindow
    from crank.runtime.console.web import ConsoleWeb, Visit
    from crank.runtime.worker_reports import WorkerHealth

#: seconds between reloads of the overview when the operator asks for it (?refresh=1).
REFRESH_S = 5


async def overview(web: ConsoleWeb, visit: Visit, window: OutcomeWindow) -> Response:
    view = await gather_overview(web.s, window)
    refresh = REFRESH_S if visit.request.query_params.get("refresh") == "1" else None
    return web.render(
        visit, "overview.html", title="Overview", active="/ui", view=view, refresh=refresh
    )


# -- capabilities -----------------------------------------------------------------------


def _aliases(web: ConsoleWeb) -> dict[str, list[str]]:
    """Live capability id -> the deprecated ids that route to it."""
    found: dict[str, list[str]] = {}
    for dep in web.s.router.deprecations():
        for target in dep.replaced_by:
            found.setdefault(target, []).append(dep.id)
    return found


def _unavailable(web: ConsoleWeb) -> dict[str, WorkerHealth]:
    """Capability id -> its worker, where that worker failed to load or is not ready:
    the API answers its calls 503 WORKER_UNAVAILABLE."""
    found: dict[str, WorkerHealth] = {}
    for route in web.s.router.routes():
        if (worker := web.s.status.unavailable(route.capability_id)) is not None:
            found[route.capability_id] = worker
    return found


async def capabilities(web: ConsoleWeb, visit: Visit) -> Response:
    paused = web.s.status.paused(wait=False)
    return web.render(
        visit,
        "capabilities.html",
        title="Capabilities",
        active="/ui/capabilities",
        routes=web.s.router.routes(),
        paused=paused,
        unavailable=_unavailable(web),
        aliases=_aliases(web),
    )


@dataclass(frozen=True)
class Answer:
    """What a call from the try-it form came to."""

    #: the HTTP status ``POST /v1/capabilities/{id}`` would have answered.
    status: int
    #: the body it would have answered (a refusal), or None when a task ran.
    refusal: dict[str, Any] | None = None
    task: TaskRecord | None = None


def _example_input(capability: Capability, choice: str | None) -> str:
    examples = capability.examples
    index = int(choice) if choice is not None and choice.isdigit() else 0
    if not examples:
        return "{}"
    return json.dumps(dict(examples[min(index, len(examples) - 1)].input), indent=2)


def _capability_page(
    web: ConsoleWeb,
    visit: Visit,
    route: Route,
    *,
    input_text: str,
    answer: Answer | None = None,
    status: int = 200,
) -> Response:
    return web.render(
        visit,
        "capability.html",
        status=status,
        title=route.capability_id,
        active="/ui/capabilities",
        route=route,
        capability=route.capability,
        paused=route.capability_id in web.s.status.paused(wait=False),
        unavailable=web.s.status.unavailable(route.capability_id),
        aliases=_aliases(web).get(route.capability_id, []),
        input_text=input_text,
        answer=answer,
    )


def _no_capability(web: ConsoleWeb, visit: Visit, capability_id: str) -> Response:
    router = web.s.router
    dep = router.deprecated(capability_id)
    if dep is not None:
        # the API still answers this id (routed, or 410 after the sunset): "no worker
        # serves it" would be untrue; its facts and callers are on the deprecated page
        successors = ", ".join(dep.replaced_by)
        if router.is_gone(capability_id):
            message = (
                f"{capability_id} was retired after its sunset on {dep.sunset.isoformat()}: "
                f"calls to it answer 410. Call {successors} instead."
            )
        else:
            message = (
                f"{capability_id} is a deprecated id: calls to it are routed to {successors} "
                f"until its sunset on {dep.sunset.isoformat()}."
            )
        return web.redirect(visit, f"{CONSOLE_PREFIX}/deprecated", flash=message)
    return web.refuse(
        visit,
        404,
        "No such capability",
        f"No installed worker serves the capability {capability_id!r}.",
        f"the list at {CONSOLE_PREFIX}/capabilities shows every capability served here",
    )


async def capability(web: ConsoleWeb, visit: Visit) -> Response:
    capability_id = visit.request.path_params["capability_id"]
    route = web.s.router.route(capability_id)
    if route is None:
        return _no_capability(web, visit, capability_id)
    text = _example_input(route.capability, visit.request.query_params.get("example"))
    return _capability_page(web, visit, route, input_text=text)


def _refusal(exc: BaseException) -> Answer:
    response = error_for(exc)
    return Answer(response.status_code, refusal=json.loads(bytes(response.body)))


async def call_capability(web: ConsoleWeb, visit: Visit) -> Response:
    """Run the capability with the form's input: wait for the outcome up to its timeout,
    or (``run=queue``) queue it and open the task's page."""
    capability_id = visit.request.path_params["capability_id"]
    route = web.s.router.route(capability_id)
    if route is None:
        return _no_capability(web, visit, capability_id)
    text = visit.form.get("input", "")
    run = visit.form.get("run", "call")
    if run not in ("call", "queue"):
        return web.refuse(
            visit,
            400,
            "Unknown action",
            f"The form asked to {run[:40]!r} the capability: it can call it or queue it.",
            "use the console's own form",
        )
    try:
        # read as the API reads a body: the same refusals, with their JSON paths
        payload = parse_json(text.encode("utf-8"), "the input")
    except ValidationFailed as exc:
        answer = _refusal(exc)
        return _capability_page(web, visit, route, input_text=text, answer=answer, status=400)
    gateway = web.s.gateway
    state = visit.request.scope.get("state", {})
    meta = {"request_id": state.get("request_id"), "trace_id": state.get("trace_id")}
    admitted: Admitted | None = None
    try:
        call = gateway.prepare(capability_id, payload, caller=CONSOLE_CALLER)
        if run == "call":
            # a call waits for its outcome, as POST /v1/capabilities/{id} does: past the
            # capability's max_concurrency it is refused (429), as there, not queued
            admitted = web.s.admission.admit(call.target)
        await gateway.refresh_stats()
        record = await gateway.submit(gateway.task_spec(call, meta=meta))
    except Exception as exc:
        if admitted is not None:
            admitted.release()
        if (reason := rejection_reason(exc)) is not None:
            web.s.metrics.rejected.labels(reason).inc()
        answer = _refusal(exc)
        page = _capability_page(web, visit, route, input_text=text, answer=answer)
        page.status_code = answer.status
        return page
    web.s.metrics.submitted.labels(call.target).inc()
    if run == "queue":
        return web.redirect(
            visit, f"{CONSOLE_PREFIX}/tasks/{record.id}", flash=f"Queued task {record.id}."
        )
    try:
        done = await web.s.broker.wait_for_result_async(record.id, call.capability.timeout_s)
    finally:
        if admitted is not None:
            admitted.release()
    task = done or record
    answer = Answer(_outcome_status(call.capability, task), task=task)
    return _capability_page(web, visit, route, input_text=text, answer=answer)


def _outcome_status(capability: Capability, task: TaskRecord) -> int:
    """The status ``POST /v1/capabilities/{id}`` answers for this outcome."""
    if task.status == "succeeded":
        return 200
    if not task.done:
        return 504  # no outcome within the capability's timeout; the task goes on
    if task.status == "cancelled":
        return 409
    code = str((task.error or {}).get("code", ""))
    declared = task.status == "failed" or capability.error(code) is not None
    return 422 if declared else 502


# -- deprecated ids -------------------------------------------------------------------


@dataclass(frozen=True)
class CallerCount:
    caller: str
    routed: int
    refused: int


@dataclass(frozen=True)
class DeprecatedRow:
    deprecation: Deprecation
    #: days until the sunset (negative: it is past; the id answers 410).
    days_left: int
    gone: bool
    callers: tuple[CallerCount, ...]

    @property
    def calls(self) -> int:
        return sum(c.routed + c.refused for c in self.callers)


def deprecated_rows(web: ConsoleWeb) -> list[DeprecatedRow]:
    router = web.s.router
    today: dt.date = router.today()
    routed, refused = router.deprecated_call_counts()
    rows = []
    for dep in router.deprecations():
        names = {c for (i, c) in routed if i == dep.id} | {c for (i, c) in refused if i == dep.id}
        counts = [
            CallerCount(c, routed.get((dep.id, c), 0), refused.get((dep.id, c), 0)) for c in names
        ]
        callers = sorted(counts, key=lambda c: (-(c.routed + c.refused), c.caller))
        rows.append(
            DeprecatedRow(dep, (dep.sunset - today).days, router.is_gone(dep.id), tuple(callers))
        )
    return rows


async def deprecated(web: ConsoleWeb, visit: Visit, counting_since: str) -> Response:
    return web.render(
        visit,
        "deprecated.html",
        title="Deprecated ids",
        active="/ui/deprecated",
        rows=deprecated_rows(web),
        counting_since=counting_since,
    )


__all__ = [
    "REFRESH_S",
    "Answer",
    "CallerCount",
    "DeprecatedRow",
    "call_capability",
    "capabilities",
    "capability",
    "deprecated",
    "deprecated_rows",
    "overview",
]
