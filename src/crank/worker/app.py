"""``WorkerApplication`` and the ``@capability`` decorator."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar, TypeVar

from crank.worker.errors import ErrorNamespace

F = TypeVar("F", bound=Callable[..., Any])

CAPABILITY_ATTR = "__crank_capability__"
BATCH_ATTR = "__crank_batch__"


def capability(capability_id: str, *, batch: bool = False) -> Callable[[F], F]:
    """Mark a method as the handler of ``capability_id`` (as declared in crank.yaml).

    The handler is called as ``handler(self, data, ctx)`` with ``data`` already
    validated against the capability's input schema; it may be sync or async,
    and a streaming capability's handler may be a (async) generator of events.

    ``batch=True`` marks a batch handler, for a capability with ``batching:`` in its
    manifest: it is called as ``handler(self, items)`` with a list of
    :class:`~crank.worker.BatchItem` (each a validated input and its own task
    context) and returns a list of as many outputs, in the same order; an element
    may be an exception (``ctx.errors.INVALID_IMAGE(...)``) that fails that item only.
    """
    if not isinstance(capability_id, str) or not capability_id:
        raise TypeError(
            "@capability needs the capability id, e.g. @capability('email.spam_detection')"
        )

    def mark(func: F) -> F:
        setattr(func, CAPABILITY_ATTR, capability_id)
        setattr(func, BATCH_ATTR, bool(batch))
        return func

    return mark


class WorkerApplication:
    """Base class of every worker. Subclass it, decorate handlers with ``@capability``.

    Lifecycle: ``setup()`` once per process before the first task, ``teardown()``
    at shutdown. Under ``crank run`` each worker process runs ``check_readiness()``
    and ``check_liveness()`` every couple of seconds and reports them: they feed
    ``/ready`` (and whether the worker's capabilities are served) and ``/health``.
    A hook answers ``False`` or raises an exception whose message says why. Each
    may be sync or async.
    """

    #: Set by crank when the worker is loaded from its manifest.
    manifest: ClassVar[Any] = None

    def setup(self) -> Any:
        """Acquire resources (load a model, open clients). Called once per process."""
        return None

    def teardown(self) -> Any:
        """Release what ``setup`` acquired."""
        return None

    def check_liveness(self) -> Any:
        """True while the process can make progress (a deadlock answers False).

        False (or an exception, whose message is the reason) makes ``/health`` 503.
        """
        return True

    def check_readiness(self) -> Any:
        """True when the worker can take tasks (its model is loaded, say).

        False (or an exception, whose message is the reason: ``raise
        RuntimeError("pandoc is not installed")``) makes ``/ready`` 503 and its
        capabilities answer 503 until it passes; its queued tasks wait.
        """
        return True

    @property
    def errors(self) -> ErrorNamespace:
        """Declared error classes of this worker's manifest: ``raise self.errors.TIMEOUT()``.

        An undeclared code raises :class:`~crank.worker.errors.UnknownErrorCode`.
        """
        return ErrorNamespace.from_manifest(type(self).manifest)

    @classmethod
    def handlers(cls) -> dict[str, str]:
        """Capability id -> method name, from the ``@capability`` marks of the class."""
        found: dict[str, str] = {}
        for klass in reversed(cls.__mro__):
            for name, value in vars(klass).items():
                cap = getattr(value, CAPABILITY_ATTR, None)
                if cap is not None:
                    found[cap] = name
        return found

    @classmethod
    def batch_handlers(cls) -> frozenset[str]:
        """Capability ids whose handler was marked ``@capability(id, batch=True)``."""
        return frozenset(
            cap
            for cap, name in cls.handlers().items()
            if getattr(getattr(cls, name), BATCH_ATTR, False)
        )
