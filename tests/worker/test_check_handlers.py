"""The manifest <-> code check names both sides."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

import pytest

from crank.errors import WorkerError
from crank.worker import TaskContext, WorkerApplication, capability
from crank.worker.host import WorkerHost, check_handlers, import_entrypoint

if TYPE_CHECKING:
    from crank.manifest import Manifest


class Misspelled(WorkerApplication):
    @capability("text.uper")
    def upper(self, data: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
        return {}

    @capability("text.extra")
    def extra(self, data: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
        return {}


def test_matching_manifest_and_class_pass(kinds_manifest: Manifest) -> None:
    check_handlers(kinds_manifest, import_entrypoint(kinds_manifest))


def test_mismatch_names_manifest_class_ids_and_methods(kinds_manifest: Manifest) -> None:
    manifest = replace(kinds_manifest, capabilities=kinds_manifest.capabilities[:1])
    with pytest.raises(WorkerError) as info:
        check_handlers(manifest, Misspelled)
    code = "tests.worker.test_check_handlers.Misspelled"
    assert info.value.message == (
        f"worker 'text-kinds' does not match its manifest: declared in {manifest.path} but "
        f"without a @capability handler in {code}: text.upper; handled in {code} but not "
        f"declared in {manifest.path}: text.extra ({code}.extra), text.uper ({code}.upper)"
    )
    assert info.value.hint == (
        "add a @capability handler for each declared id, and declare (or remove) each extra "
        "handler in crank.yaml; these look like the same capability spelled two ways: "
        "'text.upper' vs 'text.uper'"
    )


def test_host_refuses_a_mismatched_app(kinds_manifest: Manifest) -> None:
    with pytest.raises(WorkerError, match="does not match its manifest"):
        WorkerHost(kinds_manifest, Misspelled())


def test_entrypoint_errors_name_the_manifest(kinds_manifest: Manifest) -> None:
    broken = replace(
        kinds_manifest, worker=replace(kinds_manifest.worker, entrypoint="nowhere_x:W")
    )
    with pytest.raises(WorkerError) as info:
        import_entrypoint(broken)
    assert info.value.message == (
        "worker 'text-kinds': entrypoint module 'nowhere_x' cannot be imported "
        "(No module named 'nowhere_x')"
    )
    assert info.value.hint == (
        "install the worker package (pip install -e <its folder>) or fix worker.entrypoint "
        f"in {kinds_manifest.path}"
    )
    missing_class = replace(
        kinds_manifest,
        worker=replace(kinds_manifest.worker, entrypoint="crank_fixture_kinds.worker:Nope"),
    )
    with pytest.raises(WorkerError, match=r"'crank_fixture_kinds\.worker' has no attribute 'Nope'"):
        import_entrypoint(missing_class)
