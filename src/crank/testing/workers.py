"""Run a worker in-process for tests: load its manifest, start it, call it, stop it.

Used by the ``crank_worker`` fixture; works the same outside pytest::

    with WorkerRunner() as run:
        worker = run("plugins/crank-doc-converter/src/crank_doc_converter/crank.yaml")
        worker.call("doc.convert", {"text": "# hi", "to": "html"})
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from crank.errors import UsageError, WorkerError
from crank.manifest import load_manifest
from crank.plugins import get_plugin_manager
from crank.worker.host import WorkerHost

if TYPE_CHECKING:
    from collections.abc import Mapping

    from crank.manifest import Manifest
    from crank.worker import TaskContext, WorkerApplication


class WorkerHandle:
    """A started worker: ``call`` and ``acall`` validate input and output like the runtime."""

    def __init__(self, host: WorkerHost) -> None:
        self.host = host

    @property
    def manifest(self) -> Manifest:
        return self.host.manifest

    @property
    def app(self) -> WorkerApplication:
        return self.host.app

    def call(
        self, capability_id: str, data: Mapping[str, Any], ctx: TaskContext | None = None
    ) -> Any:
        return self.host.call(capability_id, data, ctx)

    async def acall(
        self, capability_id: str, data: Mapping[str, Any], ctx: TaskContext | None = None
    ) -> Any:
        return await self.host.acall(capability_id, data, ctx)

    def ready(self) -> bool:
        return self.host.ready()

    def live(self) -> bool:
        return self.host.live()


def find_manifest(target: str | Path, *, root: Path | None = None) -> Path:
    """A manifest path, a folder holding ``crank.yaml``, or an installed worker's name.

    A relative path is looked for in the current folder, then under ``root`` (pytest's
    rootdir: the same test passes wherever pytest was started from)."""
    if not isinstance(target, str | os.PathLike):
        raise UsageError(
            f"a worker is named by its crank.yaml, its folder or its name, got {target!r}",
            hint="write it like crank_worker('src/my_worker/crank.yaml') or "
            "crank_worker('my-worker')",
            subject=target,
        )
    given = Path(target)
    for path in [given] if given.is_absolute() or root is None else [given, root / given]:
        if path.is_dir():
            path = path / "crank.yaml"
        if path.is_file():
            return path
    if isinstance(target, Path) or str(target).endswith((".yaml", ".yml")) or "/" in str(target):
        under = "" if given.is_absolute() or root is None else f" (nor under {root})"
        raise WorkerError(
            f"no worker manifest at {target}{under}",
            hint="pass the path of a crank.yaml, its folder, or an installed worker's name",
            subject=str(target),
        )
    manager = get_plugin_manager()
    found = manager.find_worker(str(target))
    if found is not None:
        return found[0]
    raise WorkerError(
        f"no installed worker named {target!r}",
        hint=f"installed workers: {', '.join(manager.worker_names()) or 'none'}; "
        "pip install -e the worker package or pass its crank.yaml path",
        subject=str(target),
    )


def import_root(manifest_path: Path, module: str) -> Path | None:
    """The folder to put on sys.path so ``module`` imports (None when it already does)."""
    top = module.partition(".")[0]
    if importlib.util.find_spec(top) is not None:
        return None
    for parent in manifest_path.resolve().parents:
        if (parent / top).is_dir() or (parent / f"{top}.py").is_file():
            return parent
    return None


class WorkerRunner:
    """Starts workers on demand and stops all of them (and undoes sys.path) on close."""

    def __init__(self, *, root: Path | None = None) -> None:
        self.handles: list[WorkerHandle] = []
        self._paths: list[tuple[str, str]] = []
        #: where a relative path is also looked for (see :func:`find_manifest`)
        self.root = root

    def __call__(self, target: str | Path, *, app: WorkerApplication | None = None) -> WorkerHandle:
        manifest_path = find_manifest(target, root=self.root)
        manifest = load_manifest(manifest_path)
        root = import_root(manifest_path, manifest.worker.module)
        if root is not None and str(root) not in sys.path:
            sys.path.insert(0, str(root))
            self._paths.append((str(root), manifest.worker.module.partition(".")[0]))
        host = WorkerHost(manifest, app)
        try:
            host.start()
        except BaseException:
            # setup() failed: teardown() does not run, but the event loop it ran on closes
            host.stop()
            raise
        handle = WorkerHandle(host)
        self.handles.append(handle)
        return handle

    def close(self) -> None:
        errors: list[BaseException] = []
        while self.handles:
            handle = self.handles.pop()
            try:
                handle.host.stop()
            except Exception as exc:  # stop every worker, then report the first failure
                errors.append(exc)
        for root, top in self._paths:
            if root in sys.path:
                sys.path.remove(root)
            for name in [m for m in sys.modules if m == top or m.startswith(top + ".")]:
                del sys.modules[name]
        self._paths.clear()
        importlib.invalidate_caches()
        if errors:
            raise errors[0]

    def __enter__(self) -> WorkerRunner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
