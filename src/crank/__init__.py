"""crank: a plugin-based worker framework.

The public API is what ``__all__`` lists; everything else is private and may move.
Names are resolved lazily so ``import crank`` (and ``crank --help``) stays fast.
"""

from __future__ import annotations

from importlib import import_module

#: ``typing.TYPE_CHECKING`` without importing typing: ``import crank`` is on the path of
#: every ``crank`` command, ``crank --help`` included (mypy knows the name).
TYPE_CHECKING = False

#: The distribution's name on the package index. The import package, the ``crank``
#: command and the entry-point groups are all ``crank``; the index already has an
#: unrelated project called ``crank``, so the distribution needs its own name.
DISTRIBUTION = "crank-workers"


_LAZY: dict[str, str] = {
    "CrankError": "crank.errors",
    "ExitCode": "crank.errors",
    "hookimpl": "crank.hookspecs",
    "hookspec": "crank.hookspecs",
    "Manifest": "crank.manifest",
    "load_manifest": "crank.manifest",
    "WorkerApplication": "crank.worker",
    "capability": "crank.worker",
    "TaskContext": "crank.worker",
    "CapabilityError": "crank.worker",
    "Client": "crank.client",
    "AsyncClient": "crank.client",
    "connect": "crank.client",
    "connect_async": "crank.client",
}

__all__ = [
    "AsyncClient",
    "CapabilityError",
    "Client",
    "CrankError",
    "ExitCode",
    "Manifest",
    "TaskContext",
    "WorkerApplication",
    "__version__",
    "capability",
    "connect",
    "connect_async",
    "hookimpl",
    "hookspec",
    "load_manifest",
]

if TYPE_CHECKING:
    from typing import Any

    __version__: str
    from crank.client import AsyncClient, Client, connect, connect_async
    from crank.errors import CrankError, ExitCode
    from crank.hookspecs import hookimpl, hookspec
    from crank.manifest import Manifest, load_manifest
    from crank.worker import CapabilityError, TaskContext, WorkerApplication, capability


def _version() -> str:
    from importlib import metadata

    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:  # pragma: no cover - source tree without install
        return "0+unknown"


def __getattr__(name: str) -> Any:
    if name == "__version__":
        # read on first use: importlib.metadata (and the email parser under it) is the
        # largest import of a worker process that never asks for the version
        globals()["__version__"] = value = _version()
        return value
    modname = _LAZY.get(name)
    if modname is None:
        raise AttributeError(f"module 'crank' has no attribute {name!r}")
    value = getattr(import_module(modname), name)
    globals()[name] = value
    return value
