"""The stranded-endpoint scenario end to end.

v1 serves ``email.classification``; v2 splits it into ``email.spam_detection`` and
``email.bill_detection`` and keeps the old id routable through a shim until its
sunset. Old clients keep working, are counted, and ``crank compat`` guards the shim.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

import pytest
import yaml
from click.testing import CliRunner

from crank.cli import cli
from crank.errors import CapabilityGone
from crank.manifest import load_manifest
from crank.routing import Router
from crank.worker.host import WorkerHost

from .conftest import WORKERS

if TYPE_CHECKING:
    from pathlib import Path

V1 = WORKERS / "crank_fixture_email" / "v1.crank.yaml"
V2 = WORKERS / "crank_fixture_email" / "crank.yaml"
OLD_CLIENT_CALL = {"text": "Invoice 1234: amount due 80 EUR by Friday", "type": "bill"}


def router_on(day: dt.date) -> Router:
    return Router.from_manifests([load_manifest(V2)], today=lambda: day)


def test_v1_answered_the_old_call() -> None:
    host = WorkerHost(load_manifest(V1))
    try:
        assert host.call("email.classification", OLD_CLIENT_CALL) == {"label": "bill", "score": 1.0}
    finally:
        host.stop()


def test_old_client_call_lands_on_bill_detection_and_is_counted() -> None:
    router = router_on(dt.date(2026, 12, 1))
    seen: list[tuple[str, str]] = []
    router.on_deprecated_call.append(lambda cap, caller: seen.append((cap, caller)))

    resolution = router.resolve("email.classification", OLD_CLIENT_CALL, caller="billing-app")

    assert resolution.target == "email.bill_detection"
    assert resolution.payload == {"text": OLD_CLIENT_CALL["text"]}  # selector dropped
    assert resolution.route.worker == "email-classifier"
    host = WorkerHost(resolution.route.manifest)
    try:
        result = host.call(resolution.target, resolution.payload)
    finally:
        host.stop()
    assert result == {"bill": True, "score": 1.0}
    assert router.deprecated_calls == {("email.classification", "billing-app"): 1}
    assert seen == [("email.classification", "billing-app")]
    assert resolution.headers == {
        "Deprecation": "@1793491200",  # 2026-11-01T00:00:00Z
        "Sunset": "Wed, 31 Mar 2027 23:59:59 GMT",
        "Link": '</v1/capabilities/email.spam_detection>; rel="successor-version", '
        '</v1/capabilities/email.bill_detection>; rel="successor-version"',
    }


def test_old_client_without_type_gets_the_default_spam_detection() -> None:
    router = router_on(dt.date(2026, 12, 1))
    resolution = router.resolve("email.classification", {"text": "WINNER! click here"})
    assert resolution.target == "email.spam_detection"
    assert router.deprecated_calls == {("email.classification", "unknown"): 1}


def test_new_clients_call_the_new_ids_without_deprecation() -> None:
    router = router_on(dt.date(2026, 12, 1))
    resolution = router.resolve("email.bill_detection@1", {"text": "x"}, caller="new-app")
    assert (resolution.target, resolution.deprecation, resolution.headers) == (
        "email.bill_detection",
        None,
        {},
    )
    assert router.deprecated_calls == {}


def test_compat_v1_to_v2_passes() -> None:
    result = CliRunner().invoke(cli, ["compat", str(V1), str(V2), "--today", "2026-11-22"])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[-1] == (
        "compatible: no breaking changes from email-classifier 1.4.0 to email-classifier 2.0.0, "
        "2 warnings"
    )
    assert (
        "split: email.classification -> email.spam_detection, email.bill_detection" in result.stdout
    )


def _v2_edited(tmp_path: Path, edit: str) -> Path:
    doc = yaml.safe_load(V2.read_text())
    if edit == "no-shim":
        del doc["deprecated"][0]["shim"]
    else:
        del doc["deprecated"]
    target = tmp_path / "crank.yaml"
    target.write_text(yaml.safe_dump(doc, sort_keys=False))
    return target


def test_compat_fails_when_the_shim_is_removed(tmp_path: Path) -> None:
    v2 = _v2_edited(tmp_path, "no-shim")
    result = CliRunner().invoke(cli, ["compat", str(V1), str(v2), "--today", "2026-11-22"])
    assert result.exit_code == 1
    assert (
        "CMP003 deprecated capability 'email.classification' is split into "
        "email.spam_detection, email.bill_detection without a shim: old calls cannot be routed"
    ) in result.stdout
    assert result.stdout.splitlines()[-1].startswith("1 breaking change (CMP003)")


def test_compat_fails_when_the_deprecated_entry_is_removed(tmp_path: Path) -> None:
    v2 = _v2_edited(tmp_path, "no-deprecated")
    result = CliRunner().invoke(cli, ["compat", str(V1), str(v2), "--today", "2026-11-22"])
    assert result.exit_code == 1
    assert (
        "CMP001 capability 'email.classification' (1.3.0) was removed without a deprecated entry"
        in (result.stdout)
    )


def test_calls_through_the_sunset_day_work_and_after_it_are_gone() -> None:
    assert router_on(dt.date(2027, 3, 31)).resolve("email.classification", OLD_CLIENT_CALL)
    router = router_on(dt.date(2027, 4, 1))
    with pytest.raises(CapabilityGone) as info:
        router.resolve("email.classification", OLD_CLIENT_CALL, caller="billing-app")
    assert info.value.successors == ("email.spam_detection", "email.bill_detection")
    assert info.value.message == (
        "capability 'email.classification' was retired after its sunset on 2027-03-31; "
        "call email.spam_detection or email.bill_detection instead"
    )
    assert router.gone_calls == {("email.classification", "billing-app"): 1}
    assert router.deprecated_calls == {}


def test_invoke_old_id_prints_the_result_and_a_deprecation_notice() -> None:
    result = CliRunner().invoke(
        cli,
        [
            "invoke",
            "email.classification",
            "--worker",
            str(V2),
            "--today",
            "2026-12-01",
            "--input",
            '{"text": "Invoice 1234: amount due 80 EUR", "type": "bill"}',
        ],
    )
    assert result.exit_code == 0, result.output
    assert result.stdout == '{\n  "bill": true,\n  "score": 1.0\n}\n'
    assert result.stderr == (
        "warning: capability 'email.classification' is deprecated and will be retired after "
        "2027-03-31; this call went to 'email.bill_detection': call it directly\n"
    )


def test_invoke_after_the_sunset_names_the_successors() -> None:
    result = CliRunner().invoke(
        cli,
        [
            "invoke",
            "email.classification",
            "--worker",
            str(V2),
            "--today",
            "2027-04-01",
            "--input",
            '{"text": "x", "type": "bill"}',
        ],
    )
    assert result.exit_code == 4
    assert result.stdout == ""
    assert result.stderr == (
        "error: capability 'email.classification' was retired after its sunset on 2027-03-31; "
        "call email.spam_detection or email.bill_detection instead\n"
        "  hint: move the client to email.spam_detection, email.bill_detection "
        "(see the worker's migration notes)\n"
    )
