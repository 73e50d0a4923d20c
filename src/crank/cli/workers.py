"""``crank invoke`` and ``crank test-worker``: run a worker's capabilities in-process."""

from __future__ import annotations

import json
import os
import sys
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from crank.cli.options import format_option, today_option, worker_paths_option
from crank.cli.routing import build_router, load_manifest_file
from crank.errors import CrankError, ExitCode, UsageError
from crank.manifest.findings import lone_surrogate, strict_json
from crank.plugins import get_plugin_manager
from crank.runtime.task_services import RUNTIME_TASK_SERVICES
from crank.testing.selftest import run_self_test
from crank.worker import CapabilityError
from crank.worker.host import WorkerHost

if TYPE_CHECKING:
    import datetime as dt

    from crank.manifest import Manifest
    from crank.testing.selftest import SelfTestReport


# -- crank invoke -----------------------------------------------------------------

#: The most ``--input @FILE`` reads: the HTTP API's default request body limit
#: (``CRANK_MAX_BODY_BYTES``), so an input invoke takes is one a server takes too. A
#: file without end (/dev/zero, a runaway pipe) was read until memory ran out.
MAX_INPUT_BYTES = 1_048_576


def _read_input_file(file: Path) -> str:
    """The text of ``--input @FILE``; a usage error when it cannot be read, is larger
    than :data:`MAX_INPUT_BYTES` or is not UTF-8."""
    try:
        with file.open("rb") as handle:
            # one byte more than allowed tells a file at the limit from one beyond it
            data = handle.read(MAX_INPUT_BYTES + 1)
    except OSError as exc:
        raise UsageError(
            f"cannot read the input file {file}: {exc.strerror or exc}",
            hint="--input @path reads JSON from a file; --input '{...}' takes it inline",
            subject=str(file),
        ) from None
    if len(data) > MAX_INPUT_BYTES:
        raise UsageError(
            f"the input file {file} is larger than {MAX_INPUT_BYTES:,} bytes (1 MiB), the "
            "most --input takes",
            hint="pass a smaller JSON object; a call through the HTTP API has the same "
            "limit by default (CRANK_MAX_BODY_BYTES)",
            subject=str(file),
        )
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UsageError(
            f"the input file {file} is not UTF-8 text: byte {exc.start} is "
            f"{exc.object[exc.start : exc.start + 1]!r}",
            hint="save the JSON as UTF-8",
            subject=str(file),
        ) from None


def _read_input(value: str) -> dict[str, Any]:
    """``--input``: strict JSON, as the HTTP API takes it; every problem a usage error."""
    source = "--input"
    text = value
    if value.startswith("@"):
        if not value[1:]:  # Path("") is the current folder: "cannot read ... .: Is a directory"
            raise UsageError(
                "--input @ names no file",
                hint="write the path right after the @, e.g. --input @input.json",
                subject=source,
            )
        file = Path(value[1:])
        source = str(file)
        text = _read_input_file(file)
    if not text.strip():
        what = "--input" if source == "--input" else f"the input file {source}"
        raise UsageError(
            f"{what} is empty: it needs a JSON object",
            hint='pass a JSON object, e.g. --input \'{"text": "hello"}\'',
            subject=source,
        )
    try:
        data = strict_json(text)
    except json.JSONDecodeError as exc:
        raise UsageError(
            f"{source} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
            hint='pass a JSON object, e.g. --input \'{"text": "hello"}\'',
            subject=source,
        ) from None
    except (ValueError, RecursionError) as exc:
        why = "it nests too deeply" if isinstance(exc, RecursionError) else str(exc)
        raise UsageError(
            f"{source} is not valid JSON: {why}",
            hint='pass a JSON object, e.g. --input \'{"text": "hello"}\'',
            subject=source,
        ) from None
    if (lone := lone_surrogate(data)) is not None:
        raise UsageError(
            f"{source} holds a lone UTF-16 surrogate ({lone[1]!r}) at {lone[0]}: it is not "
            "a Unicode character",
            hint="a character beyond U+FFFF escaped takes both halves of its surrogate pair "
            "(\\ud83d\\ude00)",
            subject=source,
        )
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
    help="The input as JSON, or @path to a JSON file (at most 1 MiB).",
)
@worker_paths_option("Route through")
@click.option(
    "--caller",
    default="crank-invoke",
    show_default=True,
    help="Caller name counted for deprecated capabilities.",
)
@today_option
def invoke(
    capability_id: str,
    input_value: str,
    worker_paths: tuple[str, ...],
    caller: str,
    today: dt.date | None,
) -> ExitCode:
    """Run CAPABILITY (id or id@MAJOR) in-process through the router; print the JSON result.

    Exit status: 0 ok, 2 invalid input or unknown capability, 4 the capability
    failed (a declared error, a worker bug, a retired capability). A worker bug
    (an undeclared exception, invalid output) prints one error line and the
    worker's own frames, not a traceback through crank.
    """
    payload = _read_input(input_value)
    router = build_router(worker_paths, today)
    target = capability_id
    manifest: Manifest | None = None
    try:
        resolution = router.resolve(capability_id, payload, caller=caller)
        target, manifest = resolution.target, resolution.route.manifest
        if resolution.deprecation is not None:
            dep = resolution.deprecation
            click.echo(
                f"warning: capability {dep.id!r} is deprecated and will be retired after "
                f"{dep.sunset.isoformat()}; this call went to {resolution.target!r}: "
                "call it directly",
                err=True,
            )
        host = WorkerHost(resolution.route.manifest, services=RUNTIME_TASK_SERVICES)
        try:
            result = host.call(resolution.target, resolution.payload)
        finally:
            host.stop()
    except CapabilityError as exc:
        retry = "retryable" if exc.retryable else "not retryable"
        raise CrankError(
            f"{target} failed with {exc.code} ({retry}): {exc.message}",
            hint="a declared error of the capability: check the input, or retry if retryable",
            subject=target,
        ) from None
    except CrankError:
        raise
    except Exception as exc:  # the worker's own bug: its frames, not crank's or click's
        worker = repr(manifest.name) if manifest is not None else "serving it"
        raise CrankError(
            f"{target} raised {type(exc).__name__}: {exc}\n{_worker_frames(exc, manifest)}",
            hint=f"an exception the capability does not declare is a bug in the worker "
            f"{worker}; the frames above are its own",
            subject=target,
        ) from None
    # a lone surrogate in the result (UTF-8 has no form for it) is printed escaped
    text = json.dumps(result, indent=2, ensure_ascii=False)
    click.echo(text.encode("utf-8", "backslashreplace").decode("utf-8"))
    return ExitCode.OK


def _worker_frames(exc: BaseException, manifest: Manifest | None) -> str:
    """The traceback of ``exc`` cut to the frames in the worker's package (its entrypoint's
    top-level module); the innermost frame when none is there (then crank failed)."""
    top = manifest.worker.entrypoint.partition(":")[0].partition(".")[0] if manifest else ""
    module = sys.modules.get(top) if top else None
    origin = getattr(module, "__file__", None)
    if origin is None:
        home = None
    elif Path(origin).name == "__init__.py":
        home = Path(origin).parent
    else:
        home = Path(origin)
    frames = traceback.extract_tb(exc.__traceback__)
    own = [f for f in frames if home is not None and Path(f.filename).is_relative_to(home)]
    shown = traceback.format_list(own or frames[-1:])
    return "".join(shown).rstrip("\n")


# -- crank test-worker ------------------------------------------------------------


def _find_worker(name: str) -> Manifest:
    given = Path(name)
    if (
        name.endswith((".yaml", ".yml"))
        or os.sep in name
        or given.is_file()
        or (given / "crank.yaml").is_file()
        or (given / "pyproject.toml").is_file()
    ):
        return load_manifest_file(name)
    manager = get_plugin_manager()
    found = manager.find_worker(name)
    if found is not None:
        return found[1]
    if given.is_dir() or given.is_symlink():
        # the user named a folder (or a link) that holds no manifest: say that, rather
        # than that no installed worker has its name
        return load_manifest_file(name)
    raise UsageError(
        f"no installed worker is named {name!r}",
        hint=f"installed workers: {', '.join(manager.worker_names()) or 'none'}; "
        "or give the path of its crank.yaml (or of its folder)",
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
@format_option("text", "json")
def test_worker(name: str, output_format: str) -> ExitCode:
    """Run a worker's declared examples and self_test() in-process.

    NAME is an installed worker's name or the path of a crank.yaml. Declared
    system dependencies are checked first: a missing optional one is skipped
    with its install hint, a missing required one fails. Exit status: 0 all
    passed or skipped, 1 a check failed, 2 an unknown worker or an invalid
    manifest.
    """
    report = run_self_test(_find_worker(name))
    if output_format == "json":
        click.echo(json.dumps(report.as_dict(), indent=2))
    else:
        click.echo(format_self_test(report), nl=False)
    return ExitCode.OK if report.ok else ExitCode.FINDINGS
