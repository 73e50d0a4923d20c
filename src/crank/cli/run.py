"""``crank run`` (serve workers) and ``crank status`` (health report of a running crank)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from crank.errors import CrankError, ExitCode, UsageError

if TYPE_CHECKING:
    from crank.manifest import Manifest


class NothingListening(CrankError):
    """``crank status`` found no server at the URL."""

    exit_code = ExitCode.UNAVAILABLE


def _manifest_file(path: Path) -> Path | None:
    if path.is_file():
        return path
    candidate = path / "crank.yaml"
    return candidate if candidate.is_file() else None


def resolve_workers(names: tuple[str, ...]) -> tuple[list[Manifest], list[str]]:
    """Manifests to serve, plus folders worker processes must be able to import from.

    A name is a path (a crank.yaml, or a folder holding one) or the
    ``metadata.name`` of an installed worker; no names means every installed worker.
    """
    from crank.manifest import load_manifest
    from crank.plugins import get_plugin_manager

    installed: list[Manifest] | None = None

    def all_installed() -> list[Manifest]:
        nonlocal installed
        if installed is None:
            installed = [load_manifest(p) for p in get_plugin_manager().manifest_paths()]
        return installed

    if not names:
        found = all_installed()
        if not found:
            raise UsageError(
                "no installed worker to serve",
                hint="pip install a worker package, or name one with --worker PATH/TO/crank.yaml",
            )
        return found, []
    manifests: list[Manifest] = []
    import_paths: list[str] = []
    for name in names:
        file = _manifest_file(Path(name))
        if file is not None:
            manifests.append(load_manifest(file))
            import_paths.append(str(file.resolve().parent))
            continue
        match = [m for m in all_installed() if m.name == name]
        if not match:
            known = ", ".join(sorted(m.name for m in all_installed())) or "none installed"
            raise UsageError(
                f"--worker {name!r} is neither a crank.yaml/folder nor an installed worker",
                hint=f"installed workers: {known}",
                subject=name,
            )
        manifests.extend(match)
    return manifests, import_paths


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
    help="dev: fixed small pool, readable verbose logs; prod: dynamic pool, JSON logs.",
)
def run(
    broker_url: str | None,
    host: str,
    port: int,
    min_workers: int | None,
    max_workers: int | None,
    workers: tuple[str, ...],
    mode: str,
) -> int:
    """Serve workers over HTTP and from a durable queue, with a supervised process pool.

    Stops gracefully on SIGTERM/SIGINT: in-flight tasks finish within the grace
    period (CRANK_GRACE_S, default 10 s), the rest go back to the queue.
    """
    from crank.runtime.config import build_config
    from crank.runtime.serve import serve

    manifests, import_paths = resolve_workers(workers)
    pythonpath = os.pathsep.join([*import_paths, os.environ.get("PYTHONPATH", "")]).strip(
        os.pathsep
    )
    config = build_config(
        manifests,
        broker_url=broker_url,
        host=host,
        port=port,
        min_workers=min_workers,
        max_workers=max_workers,
        mode="dev" if mode == "dev" else "prod",
        worker_env={"PYTHONPATH": pythonpath} if import_paths else {},
    )
    return serve(config, manifests)


def fetch_status(url: str, token: str | None, timeout_s: float = 10.0) -> dict[str, Any]:
    import httpx

    endpoint = url.rstrip("/") + "/v1/status"
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        response = httpx.get(endpoint, headers=headers, timeout=timeout_s)
    except httpx.HTTPError as exc:
        raise NothingListening(
            f"no crank server answers at {url} ({type(exc).__name__})",
            hint="start one with `crank run`, or pass --url of the running server",
            subject=url,
        ) from None
    if response.status_code == 401:
        raise UsageError(
            f"{endpoint} wants a bearer token",
            hint="set CRANK_API_TOKEN to the server's token",
            subject=url,
        )
    try:
        doc = response.json()
    except ValueError:
        doc = None
    if response.status_code != 200 or not isinstance(doc, dict):
        raise NothingListening(
            f"{endpoint} answered HTTP {response.status_code} without a health report",
            hint="is this a crank server? check --url",
            subject=url,
        )
    return doc


@click.command("status")
@click.option(
    "--url",
    default="http://127.0.0.1:8080",
    show_default=True,
    help="Base URL of the running crank.",
)
def status(url: str) -> None:
    """Print the system health report (JSON) of a running crank; exit 1 when critical."""
    report = fetch_status(url, os.environ.get("CRANK_API_TOKEN") or None)
    click.echo(json.dumps(report, indent=2, sort_keys=True))
    if report.get("overall_health") == "critical":
        raise click.exceptions.Exit(int(ExitCode.FINDINGS))


__all__ = ["fetch_status", "resolve_workers", "run", "status"]
