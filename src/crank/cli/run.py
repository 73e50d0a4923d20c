"""``crank run``: serve workers over HTTP and from a durable queue."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from crank.cli.plugins import idle_note
from crank.cli.routing import once_each, worker_manifest_file
from crank.errors import ExitCode, UsageError
from crank.manifest.reading import check_replacements, load_servable_manifest
from crank.plugins import get_plugin_manager
from crank.runtime.config import (
    AUTO,
    DEFAULT_REPLACE_UNLIVE_S,
    MAX_HTTP_PROCESSES,
    auto_http_processes,
    build_config,
)
from crank.runtime.serve import serve

if TYPE_CHECKING:
    from crank.manifest import Manifest


def resolve_workers(names: tuple[str, ...]) -> tuple[list[Manifest], list[str]]:
    """Manifests to serve, plus folders worker processes must be able to import from.

    A name is a path (a crank.yaml, a folder holding one, or a worker project's folder)
    or the ``metadata.name`` of an installed worker; no names means every installed
    worker.
    """
    installed: list[Manifest] | None = None

    def all_installed() -> list[Manifest]:
        nonlocal installed
        if installed is None:
            manager = get_plugin_manager()
            paths = manager.manifest_paths()
            # a worker package that failed to import is still served: its worker
            # processes report why it cannot load, and its capabilities answer 503
            paths += [
                r.manifest_path
                for r in manager.failed()
                if r.manifest_path is not None and r.manifest_path not in paths
            ]
            installed = [load_servable_manifest(p) for p in paths]
        return installed

    if not names:
        found = all_installed()
        if not found:
            idle = get_plugin_manager().idle()
            raise UsageError(
                "no installed worker to serve"
                + "".join(f"; {idle_note(record)}" for record in idle),
                hint="pip install a worker package, or name one with --worker PATH/TO/crank.yaml",
            )
        check_replacements(found, lambda: get_plugin_manager().manifest_paths())
        return found, []
    manifests: list[Manifest] = []
    import_paths: list[str] = []
    for name in names:
        given = worker_manifest_file(Path(name))
        if given is not None:
            manifests.append(load_servable_manifest(given[0]))
            import_paths.append(str(given[1]))
            continue
        match = [m for m in all_installed() if m.name == name]
        if not match:
            known = ", ".join(sorted(m.name for m in all_installed())) or "none installed"
            raise UsageError(
                f"--worker {name!r} is neither a crank.yaml, its folder or its worker "
                "project, nor an installed worker",
                hint=f"installed workers: {known}",
                subject=name,
            )
        manifests.extend(match)
    unique = once_each(manifests)
    check_replacements(unique, lambda: get_plugin_manager().manifest_paths())
    return unique, import_paths


def _http_processes(ctx: click.Context, param: click.Parameter, value: str | None) -> int | None:
    """``--http-processes``: a whole number from 1 to 64, or ``auto``."""
    if value is None:
        return None
    if (processes := auto_http_processes(value)) is not None:
        return processes
    try:
        number = int(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is neither a whole number nor {AUTO!r}") from None
    return int(click.IntRange(1, MAX_HTTP_PROCESSES).convert(number, param, ctx))


def _seconds(ctx: click.Context, param: click.Parameter, value: float | None) -> float | None:
    """A finite number of seconds, 0 or more."""
    if value is not None and not (math.isfinite(value) and value >= 0):
        raise click.BadParameter(f"{value} is not a number of seconds, 0 or more")
    return value


@click.command("run")
@click.option(
    "--broker",
    "broker_url",
    metavar="URL",
    help="sqlite:///PATH (default sqlite:///crank-queue.db) or redis://HOST:PORT/DB.",
)
@click.option(
    "--host", default="127.0.0.1", show_default=True, help="Interface the HTTP server listens on."
)
@click.option(
    "--port", default=8080, show_default=True, type=click.IntRange(1, 65535), help="HTTP port."
)
@click.option(
    "--min-workers",
    type=click.IntRange(0, 1000),
    help="Fewest worker processes (default: the manifests' scaling).",
)
@click.option(
    "--max-workers",
    type=click.IntRange(0, 1000),
    help="Most worker processes (default: the manifests' scaling).",
)
@click.option(
    "--worker",
    "workers",
    multiple=True,
    metavar="NAME|PATH",
    help="Serve only these workers (repeatable; default: all installed).",
)
@click.option(
    "--mode",
    type=click.Choice(["dev", "prod"]),
    default="prod",
    show_default=True,
    help="dev: fixed small pool, readable verbose logs; prod: dynamic pool, logs at INFO "
    "(JSON lines, or readable lines on a terminal: CRANK_LOG_FORMAT).",
)
@click.option(
    "--http-processes",
    metavar="N|auto",
    callback=_http_processes,
    help="Processes serving the HTTP port, 1 to 64 (default 1, or CRANK_HTTP_PROCESSES); "
    "auto: one per CPU this process may use (its affinity, a container's CPU quota). More "
    "than one puts the supervisor in a process of its own.",
)
@click.option(
    "--replace-unlive-after",
    "replace_unlive_s",
    type=float,
    metavar="SECONDS",
    callback=_seconds,
    help="Seconds a worker process may stay not live (a handler far past its deadline, "
    "no health report) before it is stopped and replaced "
    f"(default {DEFAULT_REPLACE_UNLIVE_S:g}, or CRANK_REPLACE_UNLIVE_S); 0: never, "
    "leaving it to an outside probe of /health.",
)
def run(
    broker_url: str | None,
    host: str,
    port: int,
    min_workers: int | None,
    max_workers: int | None,
    workers: tuple[str, ...],
    mode: str,
    http_processes: int | None,
    replace_unlive_s: float | None,
) -> ExitCode:
    """Serve workers over HTTP and from a durable queue, with a supervised process pool.

    Stops gracefully on SIGTERM/SIGINT: in-flight tasks finish within the grace
    period (CRANK_GRACE_S, default 10 s), the rest go back to the queue.
    """
    manifests, import_paths = resolve_workers(workers)
    pythonpath = os.pathsep.join([*import_paths, os.environ.get("PYTHONPATH", "")]).strip(
        os.pathsep
    )
    overrides: dict[str, Any] = {}
    if http_processes is not None:
        overrides["http_processes"] = http_processes
    if replace_unlive_s is not None:
        overrides["replace_unlive_s"] = replace_unlive_s
    config = build_config(
        manifests,
        broker_url=broker_url,
        host=host,
        port=port,
        min_workers=min_workers,
        max_workers=max_workers,
        mode="dev" if mode == "dev" else "prod",
        worker_env={"PYTHONPATH": pythonpath} if import_paths else {},
        **overrides,
    )
    return ExitCode.OK if serve(config, manifests) == 0 else ExitCode.FAILED


__all__ = ["resolve_workers", "run"]
