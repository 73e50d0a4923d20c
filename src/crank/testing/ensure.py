"""``ensure_dependency``: one call, the right consequence for where it runs.

Inside a running pytest test a missing dependency skips (or fails in strict
mode) and a broken one fails showing the real exception. Anywhere else (a
worker's self-test, ``crank test-worker``) the same call raises
:class:`~crank.errors.DependencyMissing` / :class:`~crank.errors.DependencyBroken`.

"Inside pytest" is decided by a context variable the plugin sets while a test
runs; :func:`self_test_mode` forces the raising behaviour even inside a test
(a CLI test that runs a worker's self-test in-process). Without the plugin,
``PYTEST_CURRENT_TEST`` plus a pytest runner imported in this process is the
fallback (the variable alone leaks into subprocesses).
"""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, NoReturn

from crank.errors import DependencyBroken, DependencyMissing, UsageError
from crank.testing.dependencies import DependencyResult, check_dependency
from crank.testing.strict import current_policy

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence
    from types import FrameType

Mode = Literal["pytest", "raise"]
_mode: ContextVar[Mode | None] = ContextVar("crank_dependency_mode", default=None)

#: Attribute set on the skip/fail exceptions so the plugin can relocate and count them.
OUTCOME_ATTR = "crank_dependency"


@contextmanager
def dependency_mode(mode: Mode) -> Iterator[None]:
    token = _mode.set(mode)
    try:
        yield
    finally:
        _mode.reset(token)


@contextmanager
def self_test_mode() -> Iterator[None]:
    """Make ``ensure_dependency`` raise crank errors, even inside a pytest test."""
    with dependency_mode("raise"):
        yield


def in_pytest() -> bool:
    mode = _mode.get()
    if mode is not None:
        return mode == "pytest"
    return bool(os.environ.get("PYTEST_CURRENT_TEST")) and "_pytest.runner" in sys.modules


@dataclass(frozen=True)
class DependencyOutcome:
    """What the plugin needs from a skip or failure: where, what, and how to fix it."""

    outcome: Literal["skipped", "required", "broken"]
    name: str
    spec: str
    hint: str | None
    path: str | None = None
    lineno: int | None = None

    def as_dict(self) -> dict[str, object]:
        return {"outcome": self.outcome, "name": self.name, "spec": self.spec, "hint": self.hint}


def _with_hint(message: str, hint: str | None) -> str:
    return f"{message} (hint: {hint})" if hint else message


def _caller_frame() -> FrameType | None:
    """The first frame outside crank.testing: where the test called us."""
    frame = sys._getframe(1)
    while frame is not None and frame.f_globals.get("__name__", "").startswith("crank.testing"):
        frame = frame.f_back  # type: ignore[assignment]
    return frame


def ensure_dependency(
    spec: str,
    skip_message: str | None = None,
    install_hint: str | None = None,
    *,
    version_command: str | Sequence[str] | None = None,
) -> DependencyResult:
    """Return the result when ``spec`` is available; otherwise skip, fail or raise.

    :param skip_message: replaces the generated reason (the hint is still added).
    :param install_hint: replaces the checker's hint (``brew install pandoc``).
    :param version_command: how to print an ``exe:`` program's version when a
        constraint asks for it and none of ``--version``, ``-version``, ``-V``,
        ``version`` does (``"java -version"``).
    """
    try:
        for keyword, value in (("skip_message", skip_message), ("install_hint", install_hint)):
            if value is not None and not isinstance(value, str):
                raise UsageError(
                    f"{keyword}= takes a string, got {value!r}",
                    hint="write it like ensure_dependency('exe:pandoc', "
                    "install_hint='apt-get install pandoc')",
                )
        result = check_dependency(spec, version_command=version_command)
    except UsageError as exc:
        if not in_pytest():
            raise
        # a test author's mistake: said once at the call, not as a traceback inside crank
        _fail_at_caller(f"ensure_dependency: {exc}")
    if result.available:
        return result
    frame = _caller_frame()
    location = (frame.f_code.co_filename, frame.f_lineno) if frame is not None else (None, None)
    enforce(result, skip_message=skip_message, install_hint=install_hint, location=location)


def _fail_at_caller(message: str) -> NoReturn:
    import pytest

    frame = _caller_frame()
    where = f"{frame.f_code.co_filename}:{frame.f_lineno}: " if frame is not None else ""
    raise pytest.fail.Exception(where + message, pytrace=False) from None


def enforce(
    result: DependencyResult,
    *,
    skip_message: str | None = None,
    install_hint: str | None = None,
    location: tuple[str | None, int | None] = (None, None),
) -> NoReturn:
    """Turn an unavailable result into a skip, a failure or a crank error."""
    hint = install_hint or result.hint
    cause = result.error if isinstance(result.error, BaseException) else None
    if result.broken:
        message = f"{result.name} is installed but broken: {result.reason}"
        if isinstance(result.error, str) and result.error not in result.reason:
            message += f"\n{result.error}"
        error = DependencyBroken(message, hint=hint, subject=result.spec)
        if in_pytest():
            _mark(error, "broken", result, hint, location)
        raise error from cause
    base = skip_message or f"missing {result.name}: {result.reason}"
    if not in_pytest():
        raise DependencyMissing(base, hint=hint, subject=result.spec)

    # pytest only when running under it: ensure_dependency also serves scripts
    import pytest

    policy = current_policy()
    required = policy.requirement(result) if policy is not None else None
    if required is not None:
        why, declared_hint = required
        hint = install_hint or declared_hint or hint
        failure = pytest.fail.Exception(
            _with_hint(f"{result.name} is required ({why}) but missing: {result.reason}", hint),
            pytrace=False,
        )
        _mark(failure, "required", result, hint, location)
        raise failure
    skip = pytest.skip.Exception(_with_hint(base, hint))
    _mark(skip, "skipped", result, hint, location)
    raise skip


def _mark(
    exc: BaseException,
    outcome: Literal["skipped", "required", "broken"],
    result: DependencyResult,
    hint: str | None,
    location: tuple[str | None, int | None],
) -> None:
    setattr(
        exc,
        OUTCOME_ATTR,
        DependencyOutcome(outcome, result.name, result.spec, hint, location[0], location[1]),
    )
