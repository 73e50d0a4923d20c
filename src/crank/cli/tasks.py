"""``crank tasks``: look at and act on the tasks of a running crank, over HTTP.

Every subcommand talks to ``crank run``'s API through crank's Python client
(:class:`crank.client.Client`), with ``CRANK_API_TOKEN`` as its bearer token, and
turns the client's errors into the CLI's exit statuses (see :func:`_answers`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import os
from typing import TYPE_CHECKING, Any

import click

from crank.cli.options import format_option, url_option
from crank.client import (
    ApiError,
    CancelNotSupported,
    Client,
    ServerUnreachable,
    TaskInfo,
    TaskNotFound,
)
from crank.errors import BrokerError, ExitCode, NothingListening, NothingToDo, UsageError
from crank.runtime.brokers.contract import TASK_STATUSES

if TYPE_CHECKING:
    from collections.abc import Iterator


@contextlib.contextmanager
def _answers(url: str) -> Iterator[None]:
    """The client's errors as the CLI's: no server 3, a refused request 2, a broker that
    is down 3, a task in the wrong state 1 (see ``crank tasks --help``)."""
    try:
        yield
    except ServerUnreachable as exc:
        raise NothingListening(
            f"no crank server answers at {url}",
            hint="start one with `crank run`, or pass --url of the running server",
            subject=url,
        ) from exc
    except TaskNotFound as exc:
        raise UsageError(
            exc.message, hint="tasks expire after their result TTL; `crank tasks list` shows them"
        ) from None
    except CancelNotSupported as exc:
        raise UsageError(exc.message, hint=exc.hint) from None
    except ApiError as exc:
        if exc.status == 401:
            raise UsageError(
                f"{url} wants a bearer token", hint="set CRANK_API_TOKEN to the server's token"
            ) from None
        if exc.status == 409:
            raise NothingToDo(exc.message, hint=exc.hint) from None
        if exc.status in (429, 503):
            raise BrokerError(exc.message, hint=exc.hint or "try again in a moment") from None
        raise UsageError(exc.message, hint=exc.hint) from None


def _client(url: str) -> Client:
    return Client(url, token=os.environ.get("CRANK_API_TOKEN") or None, timeout=30.0)


def _when(seconds: float) -> str:
    if not seconds:
        return "-"
    return dt.datetime.fromtimestamp(seconds, dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


def _doc(info: TaskInfo) -> dict[str, Any]:
    return dataclasses.asdict(info)


@click.group("tasks")
def tasks() -> None:
    """Look at and act on the tasks of a running crank (over its HTTP API).

    The bearer token is read from CRANK_API_TOKEN. Exit status: 0 done; 1 nothing
    to do (the task had ended, or is no dead letter); 2 a bad argument, an unknown
    task or a missing token; 3 no server at --url, or its broker is down.
    """


@tasks.command("list")
@url_option
@click.option("--status", type=click.Choice(TASK_STATUSES), help="Only tasks in this status.")
@click.option("--capability", help="Only tasks of this capability.")
@click.option("--caller", help="Only tasks this caller submitted (its X-Crank-Caller).")
@click.option(
    "--limit", type=click.IntRange(1, 500), default=50, show_default=True, help="Tasks per page."
)
@click.option("--cursor", help="Start after this cursor (printed under a full page).")
@format_option("text", "json")
def list_tasks(
    url: str,
    status: str | None,
    capability: str | None,
    caller: str | None,
    limit: int,
    cursor: str | None,
    output_format: str,
) -> ExitCode:
    """List tasks, newest first, one page at a time."""
    with _client(url) as client, _answers(url):
        page = client.list_tasks(
            status=status, capability=capability, caller=caller, cursor=cursor, limit=limit
        )
    if output_format == "json":
        rows = [{**_doc(t), "caller": page.callers.get(t.id)} for t in page.tasks]
        click.echo(json.dumps({"tasks": rows, "next_cursor": page.next_cursor}, indent=2))
        return ExitCode.OK
    if not page.tasks:
        click.echo("no tasks")
    for task in page.tasks:
        code = (task.error or {}).get("code", "")
        click.echo(
            f"{task.id}  {task.status:<9}  {task.capability}  "
            f"attempts {task.attempts}/{task.max_attempts}  "
            f"{_when(task.updated_at)}  {page.callers.get(task.id, '-')}  {code}".rstrip()
        )
    if page.next_cursor:
        click.echo(f"more: --cursor {page.next_cursor}", err=True)
    return ExitCode.OK


@tasks.command("show")
@url_option
@click.argument("task_id")
@format_option("text", "json")
def show(url: str, task_id: str, output_format: str) -> ExitCode:
    """Show one task: its status, attempts, result or error."""
    with _client(url) as client, _answers(url):
        info = client.task(task_id).status()
    if output_format == "json":
        click.echo(json.dumps(_doc(info), indent=2))
        return ExitCode.OK
    lines = [
        ("id", info.id),
        ("capability", info.capability),
        ("requested as", info.requested),
        ("status", info.status),
        ("attempts", f"{info.attempts}/{info.max_attempts}"),
        ("priority", str(info.priority)),
        ("created", _when(info.created_at)),
        ("updated", _when(info.updated_at)),
    ]
    if info.cancel_requested_at:
        lines.append(("cancel asked", _when(info.cancel_requested_at)))
    for name, value in lines:
        click.echo(f"{name + ':':<14}{value}")
    if info.status == "succeeded":
        click.echo("result:")
        click.echo(json.dumps(info.result, indent=2))
    if info.error:
        click.echo("error:")
        click.echo(json.dumps(info.error, indent=2))
    return ExitCode.OK


@tasks.command("cancel")
@url_option
@click.argument("task_id")
def cancel(url: str, task_id: str) -> ExitCode:
    """Cancel a task: a waiting one never runs; a running one is told to stop.

    Exit status 1 when the task had ended already.
    """
    with _client(url) as client, _answers(url):
        info = client.task(task_id).cancel()
    if info.status == "cancelled":
        click.echo(f"{task_id}: cancelled before it ran; it will never run")
    else:
        click.echo(
            f"{task_id}: {info.status}; its worker was told to stop (ctx.cancelled): it ends "
            "cancelled when its handler stops, at its deadline at the latest"
        )
    return ExitCode.OK


@tasks.command("redrive")
@url_option
@click.argument("task_ids", nargs=-1)
@click.option(
    "--capability", help="Redrive every dead letter of this capability (instead of TASK_IDS)."
)
def redrive(url: str, task_ids: tuple[str, ...], capability: str | None) -> ExitCode:
    """Put dead letters back on their queue: they run again.

    Give TASK_IDS, or --capability for all of one capability. Exit status 1 when a task
    given is not a dead letter (the others are still redriven).
    """
    if bool(task_ids) == bool(capability):
        raise UsageError(
            "give the ids of dead letters, or --capability, not both and not neither",
            hint="e.g. `crank tasks redrive 9f0c...` or "
            "`crank tasks redrive --capability email.classify`",
        )
    with _client(url) as client:
        if capability:
            with _answers(url):
                count = client.redrive_dead_letters(capability)
            click.echo(f"{count} dead letter(s) of {capability} back on the queue")
            return ExitCode.OK
        status = ExitCode.OK
        for task_id in task_ids:
            try:
                with _answers(url):
                    client.redrive(task_id)
            except NothingToDo as exc:
                click.echo(f"error: {exc.message}", err=True)
                status = ExitCode.FINDINGS
                continue
            click.echo(f"{task_id}: back on the queue (pending)")
    return status


__all__ = ["tasks"]
