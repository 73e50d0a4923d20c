"""The HTTP services a worker declares: ``dependencies.system`` entries whose
``check`` is an ``http://`` or ``https://`` URL."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from crank.plugin import Manifest, SystemDependency

SCHEMES = ("http://", "https://")


def is_service_check(check: object) -> bool:
    return isinstance(check, str) and check.strip().lower().startswith(SCHEMES)


def declared_services(manifest: Manifest) -> list[SystemDependency]:
    """The manifest's system dependencies checked over HTTP, in manifest order."""
    return [dep for dep in manifest.dependencies.system if is_service_check(dep.check)]
