"""Load a worker from its manifest and call its capabilities with validation.

:class:`WorkerHost` is the one call path shared by the runtime's worker
processes, ``crank invoke``, ``crank test-worker`` and the pytest fixtures.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from crank.errors import ValidationFailed, WorkerError
from crank.manifest.findings import json_path
from crank.worker.app import CapabilityError, WorkerApplication
from crank.worker.context import TaskContext

if TYPE_CHECKING:
    from jsonschema.protocols import Validator

    from crank.manifest import Capability, Manifest


class OutputInvalid(ValidationFailed):
    """A handler returned something its output schema does not allow (a worker bug)."""


def schema_errors(validator: Validator, instance: Any) -> list[dict[str, str]]:
    """``[{"path": "$.a[0]", "message": ...}]`` for every violation, sorted by path."""
    errors = [
        {"path": json_path(tuple(e.absolute_path)), "message": e.message}
        for e in validator.iter_errors(instance)
    ]
    return sorted(errors, key=lambda e: e["path"])


def import_entrypoint(manifest: Manifest) -> type[WorkerApplication]:
    """Import ``module:Class`` named by the manifest; errors name the manifest."""
    spec = manifest.worker.entrypoint
    module_name, _, class_name = spec.partition(":")
    where = f"{manifest.path or manifest.name}"
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise WorkerError(
            f"worker {manifest.name!r}: entrypoint module {module_name!r} cannot be imported ({exc})",
            hint=f"install the worker package (pip install -e <its folder>) or fix worker.entrypoint in {where}",
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


def check_handlers(manifest: Manifest, cls: type[WorkerApplication]) -> None:
    """Every declared capability has a handler and every handler is declared."""
    declared = set(manifest.capability_ids)
    implemented = set(cls.handlers())
    missing = sorted(declared - implemented)
    undeclared = sorted(implemented - declared)
    if not missing and not undeclared:
        return
    parts = []
    if missing:
        parts.append(f"declared in {manifest.path or 'the manifest'} but no @capability handler in "
                     f"{manifest.worker.entrypoint}: {', '.join(missing)}")
    if undeclared:
        parts.append(f"handled by {manifest.worker.entrypoint} but not declared in "
                     f"{manifest.path or 'the manifest'}: {', '.join(undeclared)}")
    raise WorkerError(
        f"worker {manifest.name!r} does not match its manifest: " + "; ".join(parts),
        hint="add the missing handlers, or declare/remove the extra ones in crank.yaml",
        subject=manifest.name,
    )


class WorkerHost:
    """One instantiated worker with validated, sync or async call paths."""

    def __init__(self, manifest: Manifest, app: WorkerApplication | None = None) -> None:
        self.manifest = manifest
        if app is None:
            cls = import_entrypoint(manifest)
            check_handlers(manifest, cls)
            cls.manifest = manifest
            app = cls()
        else:
            check_handlers(manifest, type(app))
        self.app = app
        self._handlers = {cap: getattr(app, name) for cap, name in type(app).handlers().items()}
        self._validators: dict[tuple[str, str], Validator] = {}
        self._local = threading.local()
        self._started = False

    # -- lifecycle -------------------------------------------------------------

    def _run(self, value: Any) -> Any:
        """Finish a coroutine on this thread's own loop (kept for the thread's life)."""
        if not inspect.isawaitable(value):
            return value
        runner: asyncio.Runner | None = getattr(self._local, "runner", None)
        if runner is None:
            runner = asyncio.Runner()
            self._local.runner = runner
        return runner.run(_await(value))

    def start(self) -> None:
        if not self._started:
            self._run(self.app.setup())
            self._started = True

    def stop(self) -> None:
        if self._started:
            self._run(self.app.teardown())
            self._started = False
        runner = getattr(self._local, "runner", None)
        if runner is not None:
            runner.close()
            self._local.runner = None

    def live(self) -> bool:
        return bool(self._run(self.app.check_liveness()))

    def ready(self) -> bool:
        return bool(self._run(self.app.check_readiness()))

    # -- validation ------------------------------------------------------------

    def capability(self, capability_id: str) -> Capability:
        cap = self.manifest.capability(capability_id)
        if cap is None:
            from crank.errors import CapabilityNotFound

            raise CapabilityNotFound(
                f"worker {self.manifest.name!r} has no capability {capability_id!r}",
                hint=f"its capabilities: {', '.join(self.manifest.capability_ids)}",
                subject=capability_id,
            )
        return cap

    def validator(self, capability_id: str, which: str) -> Validator:
        key = (capability_id, which)
        v = self._validators.get(key)
        if v is None:
            from jsonschema import Draft202012Validator

            cap = self.capability(capability_id)
            v = Draft202012Validator(dict(cap.input if which == "input" else cap.output),
                                     format_checker=Draft202012Validator.FORMAT_CHECKER)
            self._validators[key] = v
        return v

    def validate_input(self, capability_id: str, data: Any) -> None:
        errors = schema_errors(self.validator(capability_id, "input"), data)
        if errors:
            raise ValidationFailed(
                f"input for {capability_id} is invalid: {errors[0]['path']}: {errors[0]['message']}",
                hint="match the capability's input schema (GET /v1/capabilities shows it)",
                errors=errors,
                subject=capability_id,
            )

    def validate_output(self, capability_id: str, data: Any) -> None:
        errors = schema_errors(self.validator(capability_id, "output"), data)
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

    def _context(self, capability_id: str, ctx: TaskContext | None) -> TaskContext:
        if ctx is not None:
            return ctx
        cap = self.capability(capability_id)
        return TaskContext.for_call(capability_id, cap.timeout_s, max_attempts=cap.max_attempts)

    def call(self, capability_id: str, data: Mapping[str, Any], ctx: TaskContext | None = None) -> Any:
        """Validate, run the handler (on this thread), validate the result."""
        self.start()
        ctx = self._context(capability_id, ctx)
        self.validate_input(capability_id, data)
        handler = self._handlers[capability_id]
        try:
            if inspect.isasyncgenfunction(handler):
                result = self._run(_collect_async(handler(dict(data), ctx), ctx, self, capability_id))
            elif inspect.isgeneratorfunction(handler):
                result = _collect_sync(handler(dict(data), ctx), ctx, self, capability_id)
            else:
                result = self._run(handler(dict(data), ctx))
        except CapabilityError as exc:
            raise self._declared(capability_id, exc) from None
        if not self.capability(capability_id).streaming:
            self.validate_output(capability_id, result)
        return result

    async def acall(self, capability_id: str, data: Mapping[str, Any], ctx: TaskContext | None = None) -> Any:
        """Async variant: async handlers run on the caller's loop, sync ones in a thread."""
        ctx = self._context(capability_id, ctx)
        handler = self._handlers.get(capability_id)
        if handler is not None and inspect.iscoroutinefunction(handler):
            self.validate_input(capability_id, data)
            if not self._started:
                await asyncio.to_thread(self.start)
            try:
                result = await handler(dict(data), ctx)
            except CapabilityError as exc:
                raise self._declared(capability_id, exc) from None
            self.validate_output(capability_id, result)
            return result
        return await asyncio.to_thread(self.call, capability_id, data, ctx)


async def _await(value: Any) -> Any:
    return await value


def _collect_sync(gen: Any, ctx: TaskContext, host: WorkerHost, cap: str) -> list[Any]:
    events = []
    for event in gen:
        host.validate_output(cap, event)
        ctx.emit(event)
        events.append(event)
    return events


async def _collect_async(gen: Any, ctx: TaskContext, host: WorkerHost, cap: str) -> list[Any]:
    events = []
    async for event in gen:
        host.validate_output(cap, event)
        ctx.emit(event)
        events.append(event)
    return events
