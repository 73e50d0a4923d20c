"""Load a worker from its manifest and call its capabilities with validation.

:class:`WorkerHost` is the one call path shared by the runtime's worker
processes, ``crank invoke``, ``crank test-worker`` and the pytest fixtures.
"""

from __future__ import annotations

import contextlib
import difflib
import importlib
import inspect
import sys
import threading
from typing import TYPE_CHECKING, Any, Protocol

from crank.errors import CapabilityNotFound, ExitCode, ValidationFailed, WorkerError
from crank.manifest.findings import non_finite_number
from crank.worker.app import WorkerApplication
from crank.worker.batch import BatchItem, BatchScope, handler_misfits, streaming_conflicts
from crank.worker.context import NO_SERVICES, TaskCancelled, TaskContext
from crank.worker.errors import CapabilityError, ErrorNamespace
from crank.worker.validation import SchemaValidator, schema_errors

__all__ = [
    "OutputInvalid",
    "WorkerHost",
    "check_fit",
    "check_handlers",
    "import_entrypoint",
    "schema_errors",
]

#: How often a running async handler looks at ``ctx.cancelled`` (seconds).
CANCEL_POLL_S = 0.02

if TYPE_CHECKING:
    import asyncio
    from collections.abc import Mapping, Sequence
    from types import ModuleType

    from jsonschema.protocols import Validator

    from crank.manifest import Capability, Manifest
    from crank.worker.context import TaskServices


class OutputInvalid(ValidationFailed):
    """A handler returned something its output schema does not allow (a worker bug)."""

    exit_code = ExitCode.FAILED  # the worker failed, not its caller's input


def import_entrypoint(manifest: Manifest) -> type[WorkerApplication]:
    """Import ``module:Class`` named by the manifest; errors name the manifest."""
    spec = manifest.worker.entrypoint
    module_name, _, class_name = spec.partition(":")
    where = f"{manifest.path or manifest.name}"
    try:
        module: ModuleType | None = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        module = _import_next_to_manifest(manifest, module_name)
        if module is None:
            raise WorkerError(
                f"worker {manifest.name!r}: entrypoint module {module_name!r} cannot be "
                f"imported ({exc})",
                hint="install the worker package (pip install -e <its folder>) or fix "
                f"worker.entrypoint in {where}",
                subject=spec,
            ) from exc
    cls = getattr(module, class_name, None)
    if cls is None:
        raise WorkerError(
            f"worker {manifest.name!r}: {module_name!r} has no attribute {class_name!r}",
            hint=f"fix worker.entrypoint in {where}",
            subject=spec,
        )
    if not (isinstance(cls, type) and issubclass(cls, WorkerApplication)):
        raise WorkerError(
            f"worker {manifest.name!r}: {spec} is not a WorkerApplication subclass",
            hint="derive the worker class from crank.WorkerApplication",
            subject=spec,
        )
    return cls


def _import_next_to_manifest(manifest: Manifest, module_name: str) -> ModuleType | None:
    """Import a worker that is not installed from the folders around its crank.yaml.

    A manifest inside its package (``pkg/crank.yaml``, entrypoint ``pkg.worker:W``)
    or next to a module (``dir/crank.yaml`` and ``dir/worker.py``) can be run from
    a checkout: ``crank test-worker path/to/crank.yaml``.
    """
    if manifest.path is None:
        return None
    folder = manifest.path.resolve().parent
    top = module_name.partition(".")[0]
    for root in (folder, folder.parent):
        if (root / top).is_dir() or (root / f"{top}.py").is_file():
            if str(root) not in sys.path:
                sys.path.insert(0, str(root))
            importlib.invalidate_caches()
            try:
                return importlib.import_module(module_name)
            except ModuleNotFoundError:
                continue
    return None


def check_handlers(manifest: Manifest, cls: type[WorkerApplication]) -> None:
    """Every declared capability has a handler and every handler is declared.

    The error names both sides: the manifest file with its ids and the class with
    its handler methods, and points out likely typos.
    """
    declared = set(manifest.capability_ids)
    handlers = cls.handlers()
    implemented = set(handlers)
    missing = sorted(declared - implemented)
    undeclared = sorted(implemented - declared)
    if not missing and not undeclared:
        return
    where = str(manifest.path) if manifest.path else f"the manifest of {manifest.name!r}"
    code = f"{cls.__module__}.{cls.__qualname__}"
    parts = []
    if missing:
        parts.append(f"declared in {where} but without a @capability handler in {code}: "
                     + ", ".join(missing))  # fmt: skip
    if undeclared:
        methods = ", ".join(f"{cap} ({code}.{handlers[cap]})" for cap in undeclared)
        parts.append(f"handled in {code} but not declared in {where}: {methods}")
    typos = [
        f"{m!r} vs {close[0]!r}"
        for m in missing
        if (close := difflib.get_close_matches(m, undeclared, n=1, cutoff=0.75))
    ]
    hint = (
        "add a @capability handler for each declared id, and declare (or remove) each extra "
        "handler in crank.yaml"
    )
    if typos:
        hint += f"; these look like the same capability spelled two ways: {', '.join(typos)}"
    raise WorkerError(
        f"worker {manifest.name!r} does not match its manifest: " + "; ".join(parts),
        hint=hint,
        subject=manifest.name,
    )


def check_fit(manifest: Manifest, cls: type[WorkerApplication]) -> None:
    """Each handler fits its capability's ``batching``, ``concurrency`` and ``streaming``
    (a batch handler where batching is declared and only there, an async handler for
    concurrency above 1); the error names every misfit."""
    misfits = [*streaming_conflicts(manifest), *handler_misfits(manifest, cls)]
    if not misfits:
        return
    where = str(manifest.path) if manifest.path else f"the manifest of {manifest.name!r}"
    raise WorkerError(
        f"worker {manifest.name!r} does not fit {where}: " + "; ".join(m.message for m in misfits),
        hint=misfits[0].hint + " (`crank lint` lists every misfit)",
        subject=misfits[0].capability,
    )


class WorkerHost:
    """One instantiated worker with validated, sync or async call paths."""

    def __init__(
        self,
        manifest: Manifest,
        app: WorkerApplication | None = None,
        *,
        services: TaskServices = NO_SERVICES,
    ) -> None:
        self.manifest = manifest
        #: lent to the task contexts this host builds itself (``call`` without a ctx).
        self.services = services
        if app is None:
            cls = import_entrypoint(manifest)
            check_handlers(manifest, cls)
            check_fit(manifest, cls)
            cls.manifest = manifest
            app = cls()
        else:
            check_handlers(manifest, type(app))
            check_fit(manifest, type(app))
        self.app = app
        #: capability ids served by a batch handler (``@capability(id, batch=True)``).
        self.batched = type(app).batch_handlers()
        self._handlers = {cap: getattr(app, name) for cap, name in type(app).handlers().items()}
        #: how each handler is driven, decided once instead of on every call.
        self._kinds = {cap: _handler_kind(handler) for cap, handler in self._handlers.items()}
        self._capabilities = {cap.id: cap for cap in manifest.capabilities}
        self._validators: dict[tuple[str, str], SchemaValidator] = {}
        self._local = threading.local()
        self._runners: list[asyncio.Runner] = []
        self._runners_lock = threading.Lock()
        self._started = False
        self._errors: dict[str, ErrorNamespace] = {}

    # -- lifecycle -------------------------------------------------------------

    def _run(self, value: Any) -> Any:
        """Finish a coroutine on this thread's own loop (kept for the thread's life)."""
        if not inspect.isawaitable(value):
            return value
        import asyncio  # here: a process whose handlers are all sync never loads it (~10 MB)

        runner: asyncio.Runner | None = getattr(self._local, "runner", None)
        if runner is None:
            runner = asyncio.Runner()
            self._local.runner = runner
            with self._runners_lock:
                self._runners.append(runner)
        return runner.run(_await(value))

    def start(self) -> None:
        if not self._started:
            self._run(self.app.setup())
            self._started = True

    def stop(self) -> None:
        if self._started:
            self._run(self.app.teardown())
            self._started = False
        # every thread that ran a coroutine has its own loop; close them all here
        with self._runners_lock:
            runners, self._runners = self._runners, []
        for runner in runners:
            runner.close()
        self._local = threading.local()

    def live(self) -> bool:
        return bool(self._run(self.app.check_liveness()))

    def ready(self) -> bool:
        return bool(self._run(self.app.check_readiness()))

    # -- validation ------------------------------------------------------------

    def capability(self, capability_id: str) -> Capability:
        cap = self._capabilities.get(capability_id)
        if cap is None:
            raise CapabilityNotFound(
                f"worker {self.manifest.name!r} has no capability {capability_id!r}",
                hint=f"its capabilities: {', '.join(self.manifest.capability_ids)}",
                subject=capability_id,
            )
        return cap

    def schema_validator(self, capability_id: str, which: str) -> SchemaValidator:
        key = (capability_id, which)
        v = self._validators.get(key)
        if v is None:
            cap = self.capability(capability_id)
            v = SchemaValidator(cap.input if which == "input" else cap.output)
            self._validators[key] = v
        return v

    def validator(self, capability_id: str, which: str) -> Validator:
        """The jsonschema validator of a capability's ``input`` or ``output`` schema."""
        return self.schema_validator(capability_id, which).full

    def validate_input(self, capability_id: str, data: Any) -> None:
        errors = self.schema_validator(capability_id, "input").errors(data)
        if errors:
            first = errors[0]
            raise ValidationFailed(
                f"input for {capability_id} is invalid: {first['path']}: {first['message']}",
                hint="match the capability's input schema (GET /v1/capabilities shows it)",
                errors=errors,
                subject=capability_id,
            )

    def validate_output(self, capability_id: str, data: Any) -> None:
        errors = self.schema_validator(capability_id, "output").errors(data)
        if not errors and (odd := non_finite_number(data)) is not None:
            # a JSON Schema "number" takes NaN; JSON has none: every read of the result
            # (a synchronous answer, GET /v1/tasks/{id}) would fail
            errors = [{"path": odd[0], "message": f"{odd[1]} is not a JSON number"}]
        if errors:
            raise OutputInvalid(
                f"worker {self.manifest.name!r} returned invalid output for {capability_id}: "
                f"{errors[0]['path']}: {errors[0]['message']}",
                hint="the handler's result must match the output schema in crank.yaml",
                errors=errors,
                subject=capability_id,
            )

    def _declared(self, capability_id: str, exc: CapabilityError) -> CapabilityError:
        """Fill ``retryable`` from the manifest; an undeclared code is a worker bug."""
        decl = self.capability(capability_id).error(exc.code)
        if exc.retryable is None:
            exc.retryable = decl.retryable if decl else False
        if decl is None:
            exc.details.setdefault("undeclared_code", True)
        return exc

    # -- calls -----------------------------------------------------------------

    def errors(self, capability_id: str | None = None) -> ErrorNamespace:
        """The declared error classes of one capability (or of the whole worker)."""
        key = capability_id or ""
        ns = self._errors.get(key)
        if ns is None:
            ns = ErrorNamespace.from_manifest(self.manifest, capability_id)
            self._errors[key] = ns
        return ns

    def _context(self, capability_id: str, ctx: TaskContext | None) -> TaskContext:
        cap = self.capability(capability_id)
        if ctx is None:
            ctx = TaskContext.for_call(
                capability_id, cap.timeout_s, max_attempts=cap.max_attempts, services=self.services
            )
        if ctx.errors is None:
            ctx.errors = self.errors(capability_id)
        return ctx

    def call(
        self, capability_id: str, data: Mapping[str, Any], ctx: TaskContext | None = None
    ) -> Any:
        """Validate, run the handler (on this thread), validate the result.

        A batch handler's capability is called as a batch of one.
        """
        if capability_id in self.batched:
            return _single(self.call_batch(capability_id, [(data, ctx)]))
        if not self._started:
            self.start()
        ctx = self._context(capability_id, ctx)
        self.validate_input(capability_id, data)
        handler = self._handlers[capability_id]
        ctx.check_cancelled()
        kind = self._kinds[capability_id]
        try:
            if kind == "sync":
                result = handler(dict(data), ctx)
                if type(result) not in _PLAIN and inspect.isawaitable(result):
                    result = self._run(_until_cancelled(result, ctx))
            elif kind == "asyncgen":
                collect = _collect_async(handler(dict(data), ctx), ctx, self, capability_id)
                result = self._run(_until_cancelled(collect, ctx))
            elif kind == "gen":
                result = _collect_sync(handler(dict(data), ctx), ctx, self, capability_id)
            else:
                result = self._run(_until_cancelled(handler(dict(data), ctx), ctx))
        except CapabilityError as exc:
            raise self._declared(capability_id, exc) from None
        if not self.capability(capability_id).streaming:
            self.validate_output(capability_id, result)
        return result

    async def acall(
        self, capability_id: str, data: Mapping[str, Any], ctx: TaskContext | None = None
    ) -> Any:
        """Async variant: async handlers run on the caller's loop, sync ones in a thread."""
        import asyncio  # loaded already (a loop runs this); see _run

        if capability_id in self.batched:
            return _single(await self.acall_batch(capability_id, [(data, ctx)]))
        ctx = self._context(capability_id, ctx)
        handler = self._handlers.get(capability_id)
        if handler is not None and self._kinds[capability_id] == "coro":
            self.validate_input(capability_id, data)
            if not self._started:
                await asyncio.to_thread(self.start)
            ctx.check_cancelled()
            try:
                result = await _until_cancelled(handler(dict(data), ctx), ctx)
            except CapabilityError as exc:
                raise self._declared(capability_id, exc) from None
            self.validate_output(capability_id, result)
            return result
        return await asyncio.to_thread(self.call, capability_id, data, ctx)

    # -- batches ---------------------------------------------------------------

    def call_batch(
        self,
        capability_id: str,
        items: Sequence[tuple[Mapping[str, Any], TaskContext | None]],
    ) -> list[Any]:
        """Run a batch handler once for ``items`` (inputs with their contexts, on this
        thread); per item, in order, its validated output or the exception that failed it.

        An item whose input is invalid, or whose context is already cancelled (its
        deadline passed while the batch formed), fails alone and is not handed to the
        handler. A handler that raises fails every item it was given with that error.
        """
        if not self._started:
            self.start()
        outcomes, batch, where = self._open_batch(capability_id, items)
        if batch:
            handler = self._handlers[capability_id]
            try:
                returned = handler(batch)
                if type(returned) not in _PLAIN and inspect.isawaitable(returned):
                    returned = self._run(_until_cancelled(returned, BatchScope(batch)))
            except Exception as exc:
                returned = [self._batch_error(capability_id, exc)] * len(batch)
            else:
                returned = self._close_batch(capability_id, batch, returned)
            for index, out in zip(where, returned, strict=True):
                outcomes[index] = out
        return outcomes

    async def acall_batch(
        self,
        capability_id: str,
        items: Sequence[tuple[Mapping[str, Any], TaskContext | None]],
    ) -> list[Any]:
        """:meth:`call_batch` for asyncio: an async batch handler runs on the caller's
        loop (cancelled when every item's deadline passed), a sync one in a thread."""
        import asyncio  # loaded already (a loop runs this); see _run

        if self._kinds[capability_id] != "coro":
            return await asyncio.to_thread(self.call_batch, capability_id, items)
        if not self._started:
            await asyncio.to_thread(self.start)
        outcomes, batch, where = self._open_batch(capability_id, items)
        if batch:
            handler = self._handlers[capability_id]
            try:
                returned = await _until_cancelled(handler(batch), BatchScope(batch))
            except Exception as exc:
                returned = [self._batch_error(capability_id, exc)] * len(batch)
            else:
                returned = self._close_batch(capability_id, batch, returned)
            for index, out in zip(where, returned, strict=True):
                outcomes[index] = out
        return outcomes

    def _open_batch(
        self,
        capability_id: str,
        items: Sequence[tuple[Mapping[str, Any], TaskContext | None]],
    ) -> tuple[list[Any], list[BatchItem], list[int]]:
        """(outcomes so far, the items to hand the handler, where each one's outcome goes)."""
        outcomes: list[Any] = [None] * len(items)
        batch: list[BatchItem] = []
        where: list[int] = []
        for index, (data, ctx) in enumerate(items):
            ctx = self._context(capability_id, ctx)
            try:
                self.validate_input(capability_id, data)
            except ValidationFailed as exc:
                outcomes[index] = exc
                continue
            if ctx.cancelled:
                outcomes[index] = TaskCancelled(
                    f"task {ctx.task_id} ({capability_id}) was cancelled or timed out "
                    "before its batch ran"
                )
                continue
            batch.append(BatchItem(dict(data), ctx))
            where.append(index)
        return outcomes, batch, where

    def _batch_error(self, capability_id: str, exc: Exception) -> Exception:
        if isinstance(exc, CapabilityError):
            return self._declared(capability_id, exc)
        return exc

    def _close_batch(self, capability_id: str, batch: list[BatchItem], returned: Any) -> list[Any]:
        """One output per item, each validated; a list of the wrong length fails them all."""
        if not isinstance(returned, (list, tuple)) or len(returned) != len(batch):
            got = (
                f"{len(returned)} outputs"
                if isinstance(returned, (list, tuple))
                else f"a {type(returned).__name__}"
            )
            error = OutputInvalid(
                f"worker {self.manifest.name!r}: the batch handler of {capability_id} returned "
                f"{got} for {len(batch)} inputs",
                hint="a batch handler returns a list with one output (or exception) per item, "
                "in the order of the items",
                errors=[{"path": "$", "message": f"expected a list of {len(batch)} outputs"}],
                subject=capability_id,
            )
            return [error] * len(batch)
        outputs: list[Any] = []
        for out in returned:
            if isinstance(out, Exception):
                outputs.append(self._batch_error(capability_id, out))
                continue
            try:
                self.validate_output(capability_id, out)
            except OutputInvalid as exc:
                outputs.append(exc)
            else:
                outputs.append(out)
        return outputs


def _single(outcomes: list[Any]) -> Any:
    """The one outcome of a batch of one: its output, or its exception raised."""
    [outcome] = outcomes
    if isinstance(outcome, Exception):
        raise outcome
    return outcome


#: result types that are never awaitable (most handlers return a dict).
_PLAIN = frozenset({dict, list, str, int, float, bool, type(None)})


def _handler_kind(handler: Any) -> str:
    """``asyncgen``, ``gen``, ``coro`` or ``sync`` (which may still return an awaitable)."""
    if inspect.isasyncgenfunction(handler):
        return "asyncgen"
    if inspect.isgeneratorfunction(handler):
        return "gen"
    if inspect.iscoroutinefunction(handler):
        return "coro"
    return "sync"


async def _await(value: Any) -> Any:
    return await value


class _Cancellable(Protocol):
    """What :func:`_until_cancelled` watches: a task's context or a whole batch's scope."""

    @property
    def cancelled(self) -> bool: ...

    def time_left(self) -> float | None: ...

    def check_cancelled(self) -> None: ...


async def _until_cancelled(awaitable: Any, ctx: _Cancellable) -> Any:
    """Await ``awaitable``, cancelling it when ``ctx`` is cancelled or its deadline passes.

    The handler sees :class:`asyncio.CancelledError` at its current ``await`` (so its
    ``finally`` blocks run); the caller gets :class:`TaskCancelled`.
    """
    import asyncio  # loaded already (a loop runs this); see WorkerHost._run

    task = asyncio.ensure_future(awaitable)
    try:
        while not task.done():
            left = ctx.time_left()
            wait = CANCEL_POLL_S if left is None else min(CANCEL_POLL_S, left)
            await asyncio.wait({task}, timeout=wait)
            if not task.done() and ctx.cancelled:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
                ctx.check_cancelled()
        return task.result()
    finally:
        if not task.done():  # the caller itself was cancelled
            task.cancel()


def _collect_sync(gen: Any, ctx: TaskContext, host: WorkerHost, cap: str) -> list[Any]:
    events = []
    try:
        for event in gen:
            host.validate_output(cap, event)
            ctx.emit(event)
            events.append(event)
            ctx.check_cancelled()
    finally:
        gen.close()
    return events


async def _collect_async(gen: Any, ctx: TaskContext, host: WorkerHost, cap: str) -> list[Any]:
    events = []
    try:
        async for event in gen:
            host.validate_output(cap, event)
            ctx.emit(event)
            events.append(event)
            ctx.check_cancelled()
    finally:
        await gen.aclose()
    return events
