"""``crank routes``, ``crank compat``, ``crank invoke`` and ``crank test-worker``."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from crank.cli.options import parse_today, report_format
from crank.errors import ExitCode, UsageError

if TYPE_CHECKING:
    import datetime as dt

    from crank.manifest import Manifest
    from crank.routing import Router
    from crank.worker.selftest import SelfTestReport

_TODAY_HELP = "Pretend today is this date (sunset checks)."


def _load(path: str) -> Manifest:
    from crank.manifest import load_manifest

    if not Path(path).is_file():
        raise UsageError(
            f"{path}: no such manifest file",
            hint="give the path of a crank.yaml",
            subject=path,
        )
    return load_manifest(path)


def _router(worker_paths: tuple[str, ...], today: dt.date | None) -> Router:
    from crank.routing import Router, load_router

    clock = (lambda: today) if today is not None else None
    if worker_paths:
        return Router.from_manifests([_load(p) for p in worker_paths], today=clock)
    return load_router(today=clock)


# -- crank routes -----------------------------------------------------------------


def format_routes_text(router: Router) -> str:
    rows = router.table()
    if not rows:
        return "no capabilities: no worker is installed (crank plugins lists what is)\n"
    header = ("CAPABILITY", "VERSION", "WORKER", "STATUS", "ROUTES TO", "SUNSET", "LEGACY ROUTES")
    table = [header]
    for r in rows:
        target = ", ".join(r["routes_to"]) if r["status"] != "active" else "-"
        if r["select_by"]:
            target = f"{target} (by {r['select_by']})"
        table.append(
            (
                r["capability"],
                r["version"] or "-",
                r["worker"],
                r["status"],
                target,
                r["sunset"] or "-",
                ", ".join(r["legacy_routes"]) or "-",
            )
        )
    widths = [max(len(row[i]) for row in table) for i in range(len(header) - 1)]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(row[:-1], widths, strict=True)) + "  " + row[-1]
        for row in table
    ]
    live = sum(1 for r in rows if r["status"] == "active")
    old = len(rows) - live
    lines.append(f"{live} live, {old} deprecated")
    return "\n".join(lines) + "\n"


@click.command()
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["text", "json"]),
    default="text",
    help="Output format.",
)
@click.option(
    "--worker",
    "worker_paths",
    multiple=True,
    metavar="PATH",
    help="Route these crank.yaml files instead of the installed workers (repeatable).",
)
@click.option("--today", metavar="YYYY-MM-DD", hidden=True, help=_TODAY_HELP)
def routes(output_format: str, worker_paths: tuple[str, ...], today: str | None) -> None:
    """Print the capability routing table, deprecated ids and legacy paths included."""
    router = _router(worker_paths, parse_today(today))
    if output_format == "json":
        payload = {"routes": router.table(), "legacy_routes": router.legacy_routes()}
        click.echo(json.dumps(payload, indent=2))
        return
    click.echo(format_routes_text(router), nl=False)


# -- crank compat -----------------------------------------------------------------


@click.command()
@click.argument("paths", nargs=-1, type=click.Path(path_type=str))
@click.option(
    "--against",
    "git_ref",
    metavar="GIT_REF",
    help="Compare PATH (default ./crank.yaml) with its version at this git ref.",
)
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["text", "json", "github"]),
    default=None,
    help="Output format. Default: github when GITHUB_ACTIONS=true, else text.",
)
@click.option(
    "--min-grace-days",
    type=click.IntRange(min=0),
    default=90,
    show_default=True,
    help="Shortest allowed time between deprecation (or today) and sunset.",
)
@click.option("--today", metavar="YYYY-MM-DD", hidden=True, help=_TODAY_HELP)
def compat(
    paths: tuple[str, ...],
    git_ref: str | None,
    output_format: str | None,
    min_grace_days: int,
    today: str | None,
) -> None:
    """Find manifest changes that strand clients: crank compat OLD NEW.

    With --against GIT_REF, OLD is PATH as of that ref. Each breaking change has
    a rule id (CMP001..CMP007, see docs/capabilities.md). Exit status: 0
    compatible, 1 breaking changes, 2 usage error.
    """
    from crank.errors import ManifestError
    from crank.routing.compat import compare_manifests
    from crank.routing.compat_report import render
    from crank.routing.sources import manifest_from_file, manifest_from_text, read_at_ref

    output_format = report_format(output_format)
    when = parse_today(today)
    try:
        if git_ref is not None:
            if len(paths) > 1:
                raise UsageError(
                    "--against takes at most one manifest path",
                    hint="crank compat --against origin/main path/to/crank.yaml",
                )
            new_path = Path(paths[0] if paths else "crank.yaml")
            if not new_path.is_file():
                raise UsageError(f"{new_path}: no such manifest file", subject=str(new_path))
            old_label = f"{git_ref}:{new_path}"
            text = read_at_ref(git_ref, new_path)
            if text is None:
                click.echo(
                    f"{new_path} does not exist at {git_ref}: a new worker, nothing to compare"
                )
                return
            old, old_doc = manifest_from_text(text, old_label)
        else:
            if len(paths) != 2:
                raise UsageError(
                    f"compat needs two manifests (OLD NEW), got {len(paths)}",
                    hint="crank compat old/crank.yaml new/crank.yaml, "
                    "or crank compat --against GIT_REF [PATH]",
                )
            for p in paths:
                if not Path(p).is_file():
                    raise UsageError(f"{p}: no such manifest file", subject=p)
            old_label = paths[0]
            old, old_doc = manifest_from_file(paths[0])
            new_path = Path(paths[1])
        new, new_doc = manifest_from_file(new_path)
    except ManifestError as exc:
        raise UsageError(exc.message, hint=exc.hint, subject=exc.subject) from None
    report = compare_manifests(
        old,
        new,
        today=when,
        min_grace_days=min_grace_days,
        old_document=old_doc,
        new_document=new_doc,
        old_label=old_label,
        new_label=str(new_path),
    )
    click.echo(render(report, output_format), nl=False)  # type: ignore[arg-type]
    if not report.ok:
        raise click.exceptions.Exit(int(ExitCode.FINDINGS))


# -- crank invoke -----------------------------------------------------------------


def _read_input(value: str) -> dict[str, Any]:
    source = "--input"
    text = value
    if value.startswith("@"):
        file = Path(value[1:])
        source = str(file)
        try:
            text = file.read_text(encoding="utf-8")
        except OSError as exc:
            raise UsageError(
                f"cannot read the input file {file}: {exc.strerror or exc}",
                hint="--input @path reads JSON from a file; --input '{...}' takes it inline",
                subject=str(file),
            ) from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(
            f"{source} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
            hint='pass a JSON object, e.g. --input \'{"text": "hello"}\'',
            subject=source,
        ) from None
    if not isinstance(data, dict):
        raise UsageError(
            f"{source} must be a JSON object, got {type(data).__name__}",
            hint='wrap the value in an object, e.g. {"text": "hello"}',
            subject=source,
        )
    return data


@click.command()
@click.argument("capability_id", metavar="CAPABILITY")
@click.option(
    "--input",
    "input_value",
    required=True,
    metavar="JSON|@FILE",
    help="The input as JSON, or @path to a JSON file.",
)
@click.option(
    "--worker",
    "worker_paths",
    multiple=True,
    metavar="PATH",
    help="Route through these crank.yaml files instead of the installed workers.",
)
@click.option(
    "--caller",
    default="crank-invoke",
    show_default=True,
    help="Caller name counted for deprecated capabilities.",
)
@click.option("--today", metavar="YYYY-MM-DD", hidden=True, help=_TODAY_HELP)
def invoke(
    capability_id: str,
    input_value: str,
    worker_paths: tuple[str, ...],
    caller: str,
    today: str | None,
) -> None:
    """Run CAPABILITY (id or id@MAJOR) in-process through the router; print the JSON result.

    Exit status: 0 ok, 2 invalid input or unknown capability, 4 the capability
    failed (a declared error, a worker bug, a retired capability).
    """
    from crank.errors import CrankError, ValidationFailed
    from crank.worker import CapabilityError
    from crank.worker.host import WorkerHost

    payload = _read_input(input_value)
    router = _router(worker_paths, parse_today(today))
    target = capability_id
    try:
        resolution = router.resolve(capability_id, payload, caller=caller)
        target = resolution.target
        if resolution.deprecation is not None:
            dep = resolution.deprecation
            click.echo(
                f"warning: capability {dep.id!r} is deprecated and will be retired after "
                f"{dep.sunset.isoformat()}; this call went to {resolution.target!r}: "
                "call it directly",
                err=True,
            )
        host = WorkerHost(resolution.route.manifest)
        try:
            result = host.call(resolution.target, resolution.payload)
        finally:
            host.stop()
    except ValidationFailed as exc:
        click.echo(f"error: {exc.message}", err=True)
        for err in exc.errors:
            click.echo(f"  {err['path']}: {err['message']}", err=True)
        if exc.hint:
            click.echo(f"  hint: {exc.hint}", err=True)
        raise click.exceptions.Exit(int(exc.exit_code)) from None
    except CapabilityError as exc:
        retry = "retryable" if exc.retryable else "not retryable"
        raise CrankError(
            f"{target} failed with {exc.code} ({retry}): {exc.message}",
            hint="a declared error of the capability: check the input, or retry if retryable",
            subject=target,
        ) from None
    click.echo(json.dumps(result, indent=2, ensure_ascii=False))


# -- crank test-worker ------------------------------------------------------------


def _find_worker(name: str) -> Manifest:
    from crank.plugins import get_plugin_manager

    if name.endswith((".yaml", ".yml")) or os.sep in name or Path(name).is_file():
        return _load(name)
    manager = get_plugin_manager()
    found = manager.find_worker(name)
    if found is not None:
        return found[1]
    raise UsageError(
        f"no installed worker is named {name!r}",
        hint=f"installed workers: {', '.join(manager.worker_names()) or 'none'}; "
        "or give the path of its crank.yaml",
        subject=name,
    )


_MARK = {"passed": "PASS", "failed": "FAIL", "skipped": "SKIP"}


def format_self_test(report: SelfTestReport) -> str:
    lines = [f"self-test of {report.worker} {report.version}"]
    for r in report.results:
        label = r.name if r.kind in ("example", "self_test") else f"{r.kind} {r.name}"
        detail = f": {r.detail}" if r.detail and r.status != "passed" else ""
        lines.append(f"  {_MARK[r.status]}  {label}{detail}")
        if r.hint and r.status != "passed":
            lines.append(f"        hint: {r.hint}")
    counts = ", ".join(
        f"{report.count(s)} {s}" for s in ("passed", "failed", "skipped") if report.count(s)
    )
    lines.append(f"{len(report.results)} checks: {counts or 'nothing to run'}")
    return "\n".join(lines) + "\n"


@click.command()
@click.argument("name", metavar="NAME")
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["text", "json"]),
    default="text",
    help="Output format.",
)
def test_worker(name: str, output_format: str) -> None:
    """Run a worker's declared examples and self_test() in-process.

    NAME is an installed worker's name or the path of a crank.yaml. Declared
    system dependencies are checked first: a missing optional one is skipped
    with its install hint, a missing required one fails. Exit status: 0 all
    passed or skipped, 1 a check failed, 2 unknown worker.
    """
    from crank.worker.selftest import run_self_test

    report = run_self_test(_find_worker(name))
    if output_format == "json":
        click.echo(json.dumps(report.as_dict(), indent=2))
    else:
        click.echo(format_self_test(report), nl=False)
    if not report.ok:
        raise click.exceptions.Exit(int(ExitCode.FINDINGS))
