"""The backward-compatibility matrix of the v2 split: old clients keep working."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from click.testing import CliRunner

from crank.cli import cli
from crank.errors import CapabilityGone, ValidationFailed
from crank.plugins import get_plugin_manager, reset_plugin_manager
from crank.routing import Router, load_router

if TYPE_CHECKING:
    from crank.manifest import Manifest
    from crank.testing import WorkerHandle

BEFORE_SUNSET = dt.date(2036, 1, 15)

#: (old client payload, capability v2 must route it to, the v2 field that answers)
OLD_CLIENT_CALLS = [
    ({"text": "hello", "type": "spam"}, "email.spam_detection", "is_spam"),
    ({"text": "invoice", "type": "bill"}, "email.bill_detection", "is_bill"),
    ({"text": "hello"}, "email.spam_detection", "is_spam"),  # no type: the old default, spam
    (
        {"text": "WIN a FREE prize!! Claim now at http://win.example", "type": "spam"},
        "email.spam_detection",
        "is_spam",
    ),
    (
        {"subject": "Invoice 118", "text": "Amount due $2,700.00 by Dec 31", "type": "bill"},
        "email.bill_detection",
        "is_bill",
    ),
]


@pytest.fixture
def router(manifest: Manifest) -> Router:
    return Router.from_manifests([manifest], today=lambda: BEFORE_SUNSET)


@pytest.mark.parametrize(("payload", "target", "field"), OLD_CLIENT_CALLS)
def test_old_client_calls_reach_the_v2_capability(
    router: Router, worker: WorkerHandle, payload: dict[str, str], target: str, field: str
) -> None:
    resolution = router.resolve("email.classification", payload, caller="billing-app")
    assert resolution.target == target
    assert "type" not in resolution.payload
    legacy = worker.call(resolution.target, resolution.payload)
    direct = worker.call(target, {k: v for k, v in payload.items() if k != "type"})
    assert legacy == direct
    assert isinstance(legacy[field], bool)


def test_old_calls_answer_the_same_as_v1_did(router: Router, worker: WorkerHandle) -> None:
    spam = router.resolve("email.classification", {"text": "hello", "type": "spam"})
    bill = router.resolve("email.classification", {"text": "invoice", "type": "bill"})
    assert worker.call(spam.target, spam.payload)["is_spam"] is False
    assert worker.call(bill.target, bill.payload)["is_bill"] is True


def test_deprecated_calls_carry_headers_and_are_counted(router: Router) -> None:
    resolution = router.resolve("email.classification", {"text": "hello"}, caller="old-crm")
    assert resolution.headers["Deprecation"] == "@1788220800"  # 2026-09-01T00:00:00Z
    assert resolution.headers["Sunset"] == "Mon, 30 Jun 2036 23:59:59 GMT"
    assert (
        '</v1/capabilities/email.spam_detection>; rel="successor-version"'
        in (resolution.headers["Link"])
    )
    assert router.deprecated_calls[("email.classification", "old-crm")] == 1


def test_legacy_http_path_maps_to_the_deprecated_capability(router: Router) -> None:
    assert router.legacy_routes() == {"/classify": "email.classification"}


def test_unknown_type_is_refused_naming_the_choices(router: Router) -> None:
    with pytest.raises(ValidationFailed, match="type = 'phishing' is not one of 'spam', 'bill'"):
        router.resolve("email.classification", {"text": "hello", "type": "phishing"})


def test_after_the_sunset_old_calls_are_gone_with_successors(manifest: Manifest) -> None:
    router = Router.from_manifests([manifest], today=lambda: dt.date(2036, 7, 1))
    with pytest.raises(CapabilityGone) as info:
        router.resolve("email.classification", {"text": "hello", "type": "spam"})
    assert info.value.successors == ("email.spam_detection", "email.bill_detection")


def test_the_installed_plugin_is_routable_through_load_router() -> None:
    reset_plugin_manager()
    try:
        router = load_router(get_plugin_manager().manifest_paths(), today=lambda: BEFORE_SUNSET)
    finally:
        reset_plugin_manager()
    assert router.resolve("email.classification", {"text": "x", "type": "bill"}).target == (
        "email.bill_detection"
    )


V1_MANIFEST = Path(__file__).parent / "manifest-v1.yaml"


def test_crank_compat_finds_no_stranded_client_from_v1(manifest: Manifest) -> None:
    result = CliRunner().invoke(cli, ["compat", str(V1_MANIFEST), str(manifest.path)])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        "added: email.bill_detection, email.spam_detection",
        "split: email.classification -> email.spam_detection, email.bill_detection",
        "deprecated: email.classification (sunset 2036-06-30)",
        "removed: email.classification",
        "compatible: no breaking changes from email-classifier 1.4.0 to email-classifier 2.1.0",
    ]


def test_without_the_deprecated_entry_v2_would_strand_v1_clients(
    manifest: Manifest, tmp_path: Path
) -> None:
    text = Path(str(manifest.path)).read_text()
    stranding = tmp_path / "crank.yaml"
    stranding.write_text(text[: text.index("deprecated:")])
    result = CliRunner().invoke(cli, ["compat", str(V1_MANIFEST), str(stranding)])
    assert result.exit_code == 1
    assert "CMP001 capability 'email.classification' (1.0.0) was removed without a deprecated" in (
        result.output
    )
    assert result.output.splitlines()[-1] == (
        "1 breaking change (CMP001) from email-classifier 1.4.0 to email-classifier 2.1.0"
    )
