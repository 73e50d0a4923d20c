"""Declared errors: one typed class per manifest code, with the manifest's retryable flag."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from crank.errors import WorkerError
from crank.worker import CapabilityError, DeclaredError, ErrorNamespace, UnknownErrorCode

if TYPE_CHECKING:
    from crank.manifest import Manifest
    from crank.worker.host import WorkerHost


def test_each_code_is_its_own_class_with_the_manifest_flag(kinds_manifest: Manifest) -> None:
    errors = ErrorNamespace.from_manifest(kinds_manifest)
    assert list(errors) == ["BAD_TEXT", "UPSTREAM_DOWN"]
    exc = errors.UPSTREAM_DOWN("down")
    assert isinstance(exc, CapabilityError)
    assert isinstance(exc, DeclaredError)
    assert (exc.code, exc.message, exc.retryable) == ("UPSTREAM_DOWN", "down", True)
    assert errors.BAD_TEXT().retryable is False
    assert errors.BAD_TEXT is ErrorNamespace.from_manifest(kinds_manifest).BAD_TEXT
    assert not issubclass(errors.BAD_TEXT, errors.UPSTREAM_DOWN)


def test_unknown_code_is_a_clear_error(kinds_manifest: Manifest) -> None:
    errors = ErrorNamespace.from_manifest(kinds_manifest, "text.upper")
    with pytest.raises(UnknownErrorCode) as info:
        errors.BAD_TXET  # noqa: B018
    assert str(info.value) == (
        "error code 'BAD_TXET' is not declared for text.upper in "
        f"{kinds_manifest.path} (declared: BAD_TEXT, UPSTREAM_DOWN)\n"
        "  hint: add `{code: BAD_TXET, retryable: false}` to the capability's errors in "
        "crank.yaml, or raise one of the declared codes"
    )
    assert isinstance(info.value, WorkerError)
    assert not hasattr(errors, "NOPE")


def test_handler_raises_typed_errors_through_the_host(kinds_host: WorkerHost) -> None:
    with pytest.raises(kinds_host.errors("text.upper").UPSTREAM_DOWN) as info:
        kinds_host.call("text.upper", {"text": "boom"})
    assert info.value.as_dict() == {
        "code": "UPSTREAM_DOWN",
        "message": "upstream answered 503",
        "retryable": True,
        "details": {},
    }
    with pytest.raises(CapabilityError) as bad:
        kinds_host.call("text.upper", {"text": "bad"})
    assert bad.value.as_dict() == {
        "code": "BAD_TEXT",
        "message": "text may not be 'bad'",
        "retryable": False,
        "details": {"text": "bad"},
    }


def test_handler_naming_an_undeclared_code_fails_loudly(kinds_host: WorkerHost) -> None:
    with pytest.raises(UnknownErrorCode, match=r"'BAD_TXET' is not declared for text\.upper"):
        kinds_host.call("text.upper", {"text": "typo"})


def test_worker_not_loaded_from_a_manifest_has_no_codes() -> None:
    errors = ErrorNamespace.from_manifest(None)
    with pytest.raises(UnknownErrorCode, match="a worker not loaded from a manifest"):
        errors.ANY  # noqa: B018


def test_retryable_can_be_overridden_per_raise(kinds_manifest: Manifest) -> None:
    errors = ErrorNamespace.from_manifest(kinds_manifest)
    assert errors.UPSTREAM_DOWN("x", retryable=False).retryable is False


def test_declared_errors_cross_process_boundaries_as_capability_errors(
    kinds_manifest: Manifest,
) -> None:
    import pickle

    exc = ErrorNamespace.from_manifest(kinds_manifest).UPSTREAM_DOWN("down", details={"s": 503})
    copy = pickle.loads(pickle.dumps(exc))
    assert type(copy) is CapabilityError
    assert copy.as_dict() == exc.as_dict()
    assert str(copy) == "down"
