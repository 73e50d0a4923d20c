"""``crank new-worker``, ``crank render`` and ``crank check``: artifacts from manifests."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING, cast

import click

from crank.annotations import github_annotation
from crank.cli.options import format_option, manifest_option, project_option
from crank.errors import ExitCode, GenerateError, UsageError
from crank.generate.check import check_project
from crank.generate.project import load_project
from crank.generate.render import RenderedFile, render_one, write_files
from crank.generate.scaffold import new_worker as scaffold

if TYPE_CHECKING:
    from collections.abc import Collection

    from crank.annotations import ReportFormat
    from crank.generate.scaffold import GpuChoice

GPU_CHOICES = ("none", "optional", "required")


@click.command("new-worker")
@click.argument("name")
@click.option(
    "--capability",
    "capabilities",
    multiple=True,
    metavar="ID",
    help="Capability id to scaffold (repeatable); default <package>.echo.",
)
@click.option(
    "--gpu",
    type=click.Choice(GPU_CHOICES),
    default="none",
    show_default=True,
    help=(
        "Whether the worker needs a GPU (a CUDA base image and the gpu overlay when "
        "required; optional and none render CPU artifacts)."
    ),
)
@click.option(
    "--output-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path(),
    show_default=True,
    help="Folder the worker's folder is created in.",
)
@click.option("--description", default=None, help="One-line description of the worker.")
@click.option("--no-input", is_flag=True, help="Never prompt (the default values are used).")
@click.option(
    "--force",
    is_flag=True,
    help="Fill an existing folder: add missing files, keep every file that differs.",
)
@click.option(
    "--overwrite",
    multiple=True,
    metavar="FILE",
    help="With --force, replace this file although it differs (repeatable; a backup "
    "is kept as FILE.orig).",
)
def new_worker(
    name: str,
    capabilities: tuple[str, ...],
    gpu: str,
    output_dir: Path,
    description: str | None,
    no_input: bool,
    force: bool,
    overwrite: tuple[str, ...],
) -> ExitCode:
    """Scaffold a worker package NAME: code, manifest, tests and deployment files."""
    blank = next((c for c in capabilities if not c.strip()), None)
    if blank is not None:
        # an empty id used to be dropped, and the default capability scaffolded instead
        raise UsageError(
            f"--capability {blank!r} is empty: it needs a capability id",
            hint="name one such as text.echo, or leave --capability out for <package>.echo",
            subject="--capability",
        )
    if not capabilities and not no_input and sys.stdin.isatty():
        answer = click.prompt(
            "Capability ids (comma-separated, empty for the default)",
            default="",
            show_default=False,
        )
        capabilities = tuple(c for c in answer.split(",") if c.strip())
    result = scaffold(
        name,
        capabilities=capabilities,
        gpu=cast("GpuChoice", gpu),
        output_dir=output_dir,
        description=description,
        force=force,
        overwrite=overwrite,
    )
    if len(result.added) == len(result.files):
        click.echo(f"created {result.target} ({len(result.files)} files)")
    else:
        click.echo(
            f"updated {result.target}: {len(result.added)} added, "
            f"{len(result.unchanged)} unchanged, {len(result.overwritten)} overwritten"
        )
        for rel in result.overwritten:
            click.echo(f"  overwrote {rel} (backup {rel}.orig)")
    for failure in result.render_failures:
        click.echo(f"warning: {failure.message}; its files were not written", err=True)
    click.echo(
        f"  worker {result.names.worker}, package {result.names.package}, "
        f"capabilities {', '.join(result.capabilities)}"
    )
    click.echo("next:")
    for line in next_steps(result.target):
        click.echo(f"  {line}")
    return ExitCode.OK


def next_steps(target: Path) -> list[str]:
    """What to type after new-worker, in the environment crank is installed in.

    The worker's ``test`` extra brings pytest into that environment (a pytest from
    elsewhere cannot import crank); ``crank run`` comes last and on its own, as it
    serves until stopped, on a port the user can change.
    """
    try:
        shown = target.relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        shown = str(target)
    return [
        f"cd {shlex.quote(shown)}",
        "python -m pip install -e '.[test]'",
        "crank lint && python -m pytest",
        "crank run --port 8080    # serves until Ctrl-C; choose any free port",
    ]


@click.command("render")
@click.argument("artifact")
@manifest_option
@project_option
@click.option(
    "--output",
    "-o",
    default="-",
    show_default=True,
    help="File to write, or - for stdout (several files need a folder).",
)
def render(artifact: str, manifest: Path | None, project: Path | None, output: str) -> ExitCode:
    """Render one deployment ARTIFACT (dockerfile, dockerignore, ci, compose, k8s,
    precommit, yamllint, env, or a plugin's) from a manifest."""
    worker = load_project(project, manifest)
    files = render_one(artifact, worker)
    if not files:
        raise GenerateError(
            f"renderer {artifact!r} renders no file for worker {worker.manifest.name}",
            hint="the artifact does not apply to this worker's manifest; "
            "`crank plugins` lists the plugin that adds it",
            subject=artifact,
        )
    if output == "-":
        for file in files:
            if len(files) > 1:
                click.echo(f"--- {file.path}")
            click.echo(file.content, nl=False)
        return ExitCode.OK
    target = Path(output)
    if len(files) == 1:
        write_files(target.parent, [RenderedFile(artifact, target.name, files[0].content)])
        click.echo(f"wrote {target}", err=True)
        return ExitCode.OK
    for path in write_files(target, files):
        click.echo(f"wrote {path}", err=True)
    return ExitCode.OK


#: what to do by hand about a finding --fix leaves, by its kind
_BY_HAND: dict[str, str] = {
    "semantic": "edit the file or the manifest a semantic finding names until they agree "
    "(`crank lock` renews a stale requirements.lock)",
    "unreadable": "make each unreadable path a readable file, or move it away and run "
    "`crank check --fix` again",
    "renderer": "have the plugin its message names fixed, or disable that plugin with "
    "CRANK_DISABLE_PLUGINS",
}


def _what_to_do(kinds: Collection[str], *, fixed: bool) -> str:
    """The summary's advice. Before --fix it is to run it; after, what remains is what
    --fix cannot fix, so advising it again would send the user round in circles."""
    if not fixed:
        return "run `crank check --fix` to re-render the artifacts"
    steps = [_BY_HAND[kind] for kind in sorted(kinds) if kind in _BY_HAND]
    if len(steps) < len(kinds):  # --fix wrote a file that still differs: not expected
        steps.append("each message above says what is wrong")
    return "--fix cannot fix these: " + "; ".join(steps)


def _display(base: str, relpath: str) -> str:
    return relpath if base in (".", "") else f"{base.rstrip('/')}/{relpath}"


@click.command("check")
@click.argument("paths", nargs=-1, type=click.Path(file_okay=False))
@format_option("text", "json", "github")
@click.option("--fix", is_flag=True, help="Re-render missing and drifted artifacts.")
def check(paths: tuple[str, ...], output_format: ReportFormat, fix: bool) -> ExitCode:
    """Check that the deployment artifacts of the worker projects at PATHS (default:
    the current folder) match their manifests; exit 1 on drift."""
    fmt = output_format
    bases = paths or (".",)
    results = [(base, check_project(load_project(base), fix=fix)) for base in bases]
    problems = sum(len(r.findings) for _, r in results)
    if fmt == "json":
        click.echo(
            json.dumps(
                {"ok": problems == 0, "projects": [r.as_dict() for _, r in results]}, indent=2
            )
        )
    else:
        for base, result in results:
            for path in result.fixed:
                click.echo(f"fixed {_display(base, path)}", err=fmt == "github")
            for finding in result.findings:
                where = _display(base, finding.file)
                if fmt == "github":
                    body = finding.message + (
                        "\n" + "".join(finding.hunks) if finding.hunks else ""
                    )
                    click.echo(
                        github_annotation(
                            "error",
                            body,
                            file=where,
                            line=finding.line,
                            title=f"crank check ({finding.kind})",
                        )
                    )
                    continue
                click.echo(f"{where}:{finding.line}: {finding.kind}: {finding.message}")
                for hunk in finding.hunks:
                    click.echo("    " + hunk.rstrip("\n").replace("\n", "\n    "))
        if problems:
            kinds = {f.kind for _, r in results for f in r.findings}
            click.echo(
                f"crank check: {problems} problem(s) in {len(results)} project(s); "
                f"{_what_to_do(kinds, fixed=fix)}",
                err=True,
            )
        else:
            click.echo(f"crank check: {len(results)} project(s) match their manifests", err=True)
    return ExitCode.FINDINGS if problems else ExitCode.OK
