"""Declared errors: :class:`CapabilityError`, and one typed subclass per manifest error code.

A worker raises ``self.errors.INVALID_INPUT("no text")`` (or ``ctx.errors`` inside a
handler); the class carries the code and the manifest's ``retryable`` flag, so
``except self.errors.INVALID_INPUT`` works and a typo is caught where it is made.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from crank.errors import CrankError, WorkerError

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

    from crank.manifest import Manifest


class CapabilityError(CrankError):
    """A declared error of a capability (an ``errors[].code`` of the manifest).

    ``retryable`` defaults to what the manifest declares for ``code``.
    """

    def __init__(
        self,
        code: str,
        message: str = "",
        *,
        retryable: bool | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message or code, subject=code)
        self.code = code
        self.retryable = retryable
        self.details = details or {}

    def as_dict(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "message": self.message,
            "retryable": bool(self.retryable),
            "details": self.details,
        }


class UnknownErrorCode(WorkerError, AttributeError):
    """A handler named an error code its manifest does not declare."""


class DeclaredError(CapabilityError):
    """Base of the generated per-code classes; ``code`` and ``declared_retryable`` are set."""

    code: str = ""
    declared_retryable: bool | None = None

    def __init__(
        self,
        message: str = "",
        *,
        retryable: bool | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        flag = self.declared_retryable if retryable is None else retryable
        super().__init__(type(self).code, message, retryable=flag, details=details)

    def __reduce__(self) -> tuple[Any, ...]:
        # the generated class cannot be found by name in another process: travel as the
        # plain CapabilityError with the same code, message, flag and details
        return (CapabilityError, (self.code, self.message), dict(vars(self)))


_CLASSES: dict[tuple[str, str, bool | None], type[DeclaredError]] = {}


def declared_error_class(
    code: str, retryable: bool | None, *, owner: str = ""
) -> type[DeclaredError]:
    """The (cached) class for ``code``; one class per (owner, code, flag) so ``except`` matches."""
    key = (owner, code, retryable)
    cls = _CLASSES.get(key)
    if cls is None:
        cls = type(code, (DeclaredError,), {"code": code, "declared_retryable": retryable})
        cls.__qualname__ = f"errors.{code}"
        cls.__module__ = __name__
        _CLASSES[key] = cls
    return cls


class ErrorNamespace:
    """Attribute access to declared error classes: ``errors.TIMEOUT``."""

    def __init__(self, codes: dict[str, type[DeclaredError]], *, where: str) -> None:
        self._codes = dict(codes)
        self._where = where

    @classmethod
    def from_manifest(
        cls, manifest: Manifest | None, capability_id: str | None = None
    ) -> ErrorNamespace:
        """Codes of one capability, or of all of them (a code declared with different
        ``retryable`` flags then takes its flag from the capability at call time)."""
        if manifest is None:
            return cls({}, where="a worker not loaded from a manifest")
        caps = manifest.capabilities
        if capability_id is not None:
            caps = tuple(c for c in caps if c.id == capability_id)
        flags: dict[str, set[bool]] = {}
        for cap in caps:
            for err in cap.errors:
                flags.setdefault(err.code, set()).add(err.retryable)
        codes = {
            code: declared_error_class(
                code, next(iter(f)) if len(f) == 1 else None, owner=manifest.name
            )
            for code, f in flags.items()
        }
        where = f"{capability_id} in " if capability_id else ""
        return cls(codes, where=f"{where}{manifest.path or manifest.name}")

    def __getattr__(self, code: str) -> type[DeclaredError]:
        if code.startswith("_"):
            raise AttributeError(code)
        try:
            return self._codes[code]
        except KeyError:
            declared = ", ".join(sorted(self._codes)) or "none"
            raise UnknownErrorCode(
                f"error code {code!r} is not declared for {self._where} (declared: {declared})",
                hint=f"add `{{code: {code}, retryable: false}}` to the capability's errors "
                "in crank.yaml, or raise one of the declared codes",
                subject=code,
            ) from None

    def __getitem__(self, code: str) -> type[DeclaredError]:
        return self.__getattr__(code)

    def __contains__(self, code: object) -> bool:
        return code in self._codes

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._codes))

    def __dir__(self) -> Iterable[str]:
        return sorted(self._codes)

    def __repr__(self) -> str:
        return f"<errors of {self._where}: {', '.join(sorted(self._codes)) or 'none'}>"
