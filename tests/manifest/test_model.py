"""Building the Manifest model from a validated document."""

from __future__ import annotations

from typing import TYPE_CHECKING

from crank.manifest import load_manifest

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path


def test_integer_fields_written_with_a_zero_fraction_are_integers(
    write_manifest: Callable[..., Path],
) -> None:
    """The schema takes ``max_workers: 2.0`` as an integer; the replica counts rendered
    from it must not read 2.0."""
    path = write_manifest(
        "apiVersion: crank.dev/v1\nkind: Worker\nmetadata: {name: demo, version: 1.0.0}\n"
        "worker:\n  entrypoint: demo.worker:Demo\n"
        "  scaling: {min_workers: 1.0, max_workers: 2.0, target_queue_per_worker: 5.0}\n"
        "capabilities:\n  - {id: demo.echo, version: 1.0.0, input: {type: object}, "
        "output: {type: object}, max_attempts: 4.0}\n"
    )
    manifest = load_manifest(path)
    scaling = manifest.worker.scaling
    shown = [repr(v) for v in (scaling.min_workers, scaling.max_workers)]
    assert shown == ["1", "2"]
    assert repr(scaling.target_queue_per_worker) == "5"
    assert repr(manifest.capabilities[0].max_attempts) == "4"
