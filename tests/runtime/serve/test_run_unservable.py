"""``crank run`` refuses, at start, a manifest whose capabilities would fail every call."""

from __future__ import annotations

import shutil
from typing import TYPE_CHECKING

import pytest

from .conftest import HTTP_WORKERS

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from .conftest import CrankRun

ECHO_TEXT = "text: {type: string, maxLength: 200}"
LOOP = (
    "  - {id: demo.loop_a, replaced_by: [demo.loop_b], sunset: 2099-12-31}\n"
    "  - {id: demo.loop_b, replaced_by: [demo.loop_a], sunset: 2099-12-31}\n"
)
SPLIT = "  - {id: demo.old_split, replaced_by: [demo.echo, demo.slow], sunset: 2099-12-31}\n"
PATTERN_HINT = (
    "  hint: crank checks patterns with Python's `re`, which lacks some ECMA-262 syntax such "
    "as \\p{L}: write it for Python (letters: [^\\W\\d_]) or drop the pattern"
)


def worker_with(tmp_path: Path, *, replace: str = "", by: str = "", append: str = "") -> Path:
    """A copy of the HTTP fixture worker whose manifest is changed as asked."""
    folder = tmp_path / "worker"
    shutil.copytree(HTTP_WORKERS, folder)
    manifest = folder / "crank.yaml"
    text = manifest.read_text()
    if replace:
        assert replace in text
        text = text.replace(replace, by, 1)
    manifest.write_text(text.rstrip("\n") + "\n" + append)
    return manifest


def line_of(manifest: Path, needle: str) -> int:
    return next(n for n, line in enumerate(manifest.read_text().splitlines(), 1) if needle in line)


def refused(crank_run: Callable[..., CrankRun], manifest: Path) -> tuple[int, list[str]]:
    run = crank_run(workers=(manifest,), start=False).start(ready=False)
    assert run.proc is not None
    code = run.proc.wait(timeout=120)
    log = run.log()
    assert "Traceback" not in log
    # refused before the queue is opened and the port bound
    assert not run.db.exists()
    return code, log.splitlines()


@pytest.mark.parametrize(
    ("replace", "by", "col"),
    [
        (ECHO_TEXT, 'text: {type: string, pattern: "^\\\\p{L}+$"}', 39),
        (
            "additionalProperties: false",
            'additionalProperties: false\n      patternProperties: {"\\\\p{L}": {}}',
            26,
        ),
    ],
    ids=["pattern", "patternProperties"],
)
def test_a_pattern_python_cannot_compile_stops_crank_run_at_start(
    crank_run: Callable[..., CrankRun], tmp_path: Path, replace: str, by: str, col: int
) -> None:
    """Served, every call of demo.echo answered 500 SCHEMA_UNUSABLE."""
    manifest = worker_with(tmp_path, replace=replace, by=by)
    line = line_of(manifest, "p{L}")
    code, lines = refused(crank_run, manifest)
    assert code == 2
    error = next(x for x in lines if x.startswith("error: "))
    assert error.startswith(
        f"error: {manifest}:{line}:{col} CRK107 capability 'demo.echo': input is not a valid "
        "JSON Schema: "
    )
    assert error.endswith("is not a valid regex; every call of it would fail")
    assert PATTERN_HINT in lines


def test_deprecated_ids_routing_in_a_loop_stop_crank_run_at_start(
    crank_run: Callable[..., CrankRun], tmp_path: Path
) -> None:
    """Served, every call of demo.loop_a answered 500 MANIFEST_ERROR."""
    manifest = worker_with(tmp_path, append=LOOP)
    code, lines = refused(crank_run, manifest)
    assert code == 2
    line = line_of(manifest, "demo.loop_a, replaced_by")
    assert (
        f"error: {manifest}:{line}:10 CRK103 deprecated capability 'demo.loop_a' routes back "
        "to itself: demo.loop_a -> demo.loop_b -> demo.loop_a (and 1 more); every call of it "
        "would fail"
    ) in lines
    assert "  hint: every chain of replacements must end at a live capability" in lines


def test_a_split_without_a_shim_stops_crank_run_at_start(
    crank_run: Callable[..., CrankRun], tmp_path: Path
) -> None:
    """Served, every call of demo.old_split answered 422: no shim to pick a successor."""
    manifest = worker_with(tmp_path, append=SPLIT)
    code, lines = refused(crank_run, manifest)
    assert code == 2
    line = line_of(manifest, "demo.old_split")
    assert (
        f"error: {manifest}:{line}:39 CRK104 'demo.old_split' is split into 2 capabilities but "
        "has no shim, so old clients cannot be routed; every call of it would fail"
    ) in lines
    assert (
        "  hint: add `shim: {select_by: FIELD, map: {VALUE: NEW_ID, ...}, default: VALUE}`"
    ) in lines


def test_a_replacement_no_worker_declares_stops_crank_run_at_start(
    crank_run: Callable[..., CrankRun], tmp_path: Path
) -> None:
    """Served, every call of demo.old_thing answered 404: nothing serves its successor."""
    manifest = worker_with(
        tmp_path,
        append="  - {id: demo.old_thing, replaced_by: [demo.nowhere], sunset: 2099-12-31}\n",
    )
    code, lines = refused(crank_run, manifest)
    assert code == 2
    line = line_of(manifest, "demo.old_thing")
    assert (
        f"error: {manifest}:{line}:40 CRK103 deprecated capability 'demo.old_thing': replacement "
        "'demo.nowhere' is not a capability of this manifest or of any installed worker; every "
        "call of it would fail"
    ) in lines
    assert (
        "  hint: declare it under `capabilities:`, install the worker that serves it, or fix the id"
    ) in lines


def test_a_shim_default_that_is_not_a_key_of_its_map_stops_crank_run_at_start(
    crank_run: Callable[..., CrankRun], tmp_path: Path
) -> None:
    """Served, every call of demo.old_split without `mode` answered 422, naming a value
    (the default) the caller never sent."""
    manifest = worker_with(
        tmp_path,
        append=(
            "  - id: demo.old_split\n"
            "    replaced_by: [demo.echo, demo.slow]\n"
            "    shim: {select_by: mode, map: {fast: demo.echo, slow: demo.slow}, default: quick}\n"
            "    sunset: 2099-12-31\n"
        ),
    )
    code, lines = refused(crank_run, manifest)
    assert code == 2
    line = line_of(manifest, "default: quick")
    assert (
        f"error: {manifest}:{line}:79 CRK104 deprecated capability 'demo.old_split': shim "
        "default 'quick' is not a key of shim.map, so a call without 'mode' cannot be routed"
    ) in lines
    assert "  hint: use one of: fast, slow" in lines


def test_a_shim_map_value_no_worker_declares_stops_crank_run_at_start(
    crank_run: Callable[..., CrankRun], tmp_path: Path
) -> None:
    """Served, every call of demo.old_split with `mode: fast` answered 404: nothing
    serves the id the shim maps it to."""
    manifest = worker_with(
        tmp_path,
        append=(
            "  - id: demo.old_split\n"
            "    replaced_by: [demo.echo, demo.slow]\n"
            "    shim: {select_by: mode, map: {fast: demo.nowhere, slow: demo.slow}}\n"
            "    sunset: 2099-12-31\n"
        ),
    )
    code, lines = refused(crank_run, manifest)
    assert code == 2
    line = line_of(manifest, "fast: demo.nowhere")
    assert (
        f"error: {manifest}:{line}:41 CRK104 deprecated capability 'demo.old_split': shim maps "
        "'fast' to 'demo.nowhere', which is neither in replaced_by nor a capability of this "
        "manifest or of any installed worker, so a call whose 'mode' is 'fast' cannot be routed"
    ) in lines
    assert "  hint: map to one of: demo.echo, demo.slow" in lines
