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
from typing import TYPE_CHECKING, Any

import click

from crank.cli.group import report_error
from crank.cli.options import (
    api_token,
    format_option,
    hide_password,
    url_option,
    url_without_password,
)
from crank.client import (
    ApiError,
    CancelNotSupported,
    Client,
    InvalidTask,
    ServerUnreachable,
    TaskInfo,
    TaskNotFound,
)
from crank.errors import (
    BrokerError,
    CrankError,
    ExitCode,
    NothingListening,
    NothingToDo,
    UsageError,
)
from crank.runtime.brokers.contract import TASK_STATUSES

if TYPE_CHECKING:
    from collections.abc import Iterator

    from crank.client import ClientError


#: what a server that is not crank (or a proxy in front of one) answers with
_NOT_CRANK = "is this a crank server? check --url"


def _token() -> str | None:
    return api_token()


def _cli_error(exc: ClientError, url: str) -> CrankError:
    """The CLI's error for what the client raised: no server 3, a refused request 2, a
    broker that is down 3, a task in the wrong state 1 (see ``crank tasks --help``).

    The URL a message names never shows the password of --url, nor does a message of
    the client that quotes it."""
    raw, url = url, url_without_password(url)
    message = hide_password(exc.message, raw)
    hint = hide_password(exc.hint, raw) if exc.hint else exc.hint
    if isinstance(exc, ServerUnreachable):
        return NothingListening(
            f"no crank server answers at {url}",
            hint="start one with `crank run`, or pass --url of the running server",
            subject=url,
        )
    if isinstance(exc, TaskNotFound):
        return UsageError(
            message,
            hint="tasks expire after their result TTL; `crank tasks list` shows them",
            subject=exc.task_id,
        )
    if not isinstance(exc, ApiError):
        return UsageError(message, hint=hint, subject=exc.subject)
    if exc.status == 401:
        if _token() is not None:
            return UsageError(
                f"{url} refused the bearer token in CRANK_API_TOKEN",
                hint="check CRANK_API_TOKEN: it must be the token the server was started "
                "with (its CRANK_API_TOKEN)",
                subject=url,
            )
        return UsageError(
            f"{url} wants a bearer token", hint="set CRANK_API_TOKEN to the server's token"
        )
    if exc.code == f"HTTP_{exc.status}":  # no crank error document in the answer
        return NothingListening(
            f"{url} answered HTTP {exc.status} without a crank error", hint=_NOT_CRANK, subject=url
        )
    if exc.code == "UNEXPECTED_ANSWER":  # a 2xx that is not what crank sends
        return NothingListening(
            f"{url} answered, but not with what a crank server sends", hint=_NOT_CRANK, subject=url
        )
    if exc.status == 409:
        return NothingToDo(message, hint=hint)
    if exc.status in (429, 503):
        return BrokerError(message, hint=hint or "try again in a moment")
    return UsageError(message, hint=hint)


@contextlib.contextmanager
def _answers(url: str) -> Iterator[None]:
    """The client's errors as the CLI's (:func:`_cli_error`); an answer that is not the
    JSON crank sends means something else answers at ``url``."""
    try:
        yield
    # InvalidTask: a task id or capability the client refuses to put in a URL
    except (CancelNotSupported, InvalidTask, ServerUnreachable, TaskNotFound, ApiError) as exc:
        raise _cli_error(exc, url) from None
    except (ValueError, KeyError, TypeError, AttributeError):  # reading the answer
        shown = url_without_password(url)
        raise NothingListening(
            f"{shown} answered, but not with what a crank server sends",
            hint=_NOT_CRANK,
            subject=shown,
        ) from None


def _task_id(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    """TASK_ID(S) as given; a bad parameter (exit status 2) for an empty one, which would
    name the tasks collection instead of a task."""
    for task_id in value if isinstance(value, tuple) else (value,):
        if not task_id.strip():
            raise click.BadParameter("a task id cannot be empty (`crank tasks list` shows the ids)")
        if task_id in (".", "..") or "/" in task_id:
            # it would be read as part of the URL's path, naming another resource
            raise click.BadParameter(
                f"{task_id!r:.80} is no task id: a task id is not '.' or '..' and holds no "
                "'/' (`crank tasks list` shows the ids)"
            )
    return value


def _client(url: str) -> Client:
    return Client(url, token=_token(), timeout=30.0)


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
    task, a missing or refused token; 3 no crank server at --url, or its broker is
    down.
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
@click.argument("task_id", callback=_task_id)
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
@click.argument("task_id", callback=_task_id)
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
@click.argument("task_ids", nargs=-1, callback=_task_id)
@click.option(
    "--capability", help="Redrive every dead letter of this capability (instead of TASK_IDS)."
)
def redrive(url: str, task_ids: tuple[str, ...], capability: str | None) -> ExitCode:
    """Put dead letters back on their queue: they run again.

    Give TASK_IDS, or --capability for all of one capability. Each task that cannot be
    redriven is reported and the others are still redriven; exit status 2 when one is
    unknown, else 1 when one is not a dead letter (or the capability has none).
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
            if not count:  # nothing changed: as a task that is no dead letter
                raise NothingToDo(
                    f"no dead letter of {capability} to redrive",
                    hint="`crank tasks list --status dead` shows the dead letters; "
                    "`crank routes` the capability ids",
                    subject=capability,
                )
            click.echo(f"{count} dead letter(s) of {capability} back on the queue")
            return ExitCode.OK
        status = ExitCode.OK
        with _answers(url):
            for task_id in task_ids:
                try:
                    client.redrive(task_id)
                except (TaskNotFound, ApiError) as exc:
                    if isinstance(exc, ApiError) and exc.status != 409:
                        raise  # not about this task: the next one would fail the same way
                    failure = _cli_error(exc, url)
                    report_error(failure)
                    status = max(status, failure.exit_code)
                    continue
                click.echo(f"{task_id}: back on the queue (pending)")
    return status


__all__ = ["tasks"]
