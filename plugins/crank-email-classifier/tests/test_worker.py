from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from crank.errors import ValidationFailed
from crank.worker import CapabilityError

if TYPE_CHECKING:
    from crank.manifest import Manifest
    from crank.testing import WorkerHandle


def test_manifest_examples_pass(manifest: Manifest, worker: WorkerHandle) -> None:
    ran = 0
    for cap in manifest.capabilities:
        for example in cap.examples:
            result = worker.call(cap.id, example.input)
            expected = dict(example.output or {})
            assert {k: result[k] for k in expected} == expected, example.name
            ran += 1
    assert ran == 3


def test_spam_detection_answers_with_reasons(worker: WorkerHandle) -> None:
    result = worker.call(
        "email.spam_detection",
        {"subject": "Security alert", "text": "Confirm your card number at http://x.example now"},
    )
    assert result["label"] == "spam"
    assert result["is_spam"] is True
    assert "rule: asks for credentials or bank details (+1.5)" in result["reasons"]


def test_bill_detection_extracts_amount_and_due_date(worker: WorkerHandle) -> None:
    result = worker.call(
        "email.bill_detection",
        {"subject": "Invoice 3308", "text": "Total $1,800.00, due date: Dec 9. Thank you!"},
    )
    assert (result["is_bill"], result["amount"], result["due"]) == (True, "$1,800.00", "Dec 9")


def test_a_non_bill_has_no_amount(worker: WorkerHandle) -> None:
    result = worker.call(
        "email.bill_detection", {"text": "Movie night on Saturday, bring $5 for pizza"}
    )
    assert (result["label"], result["amount"], result["due"]) == ("not_bill", None, None)


def test_text_without_words_is_a_declared_non_retryable_error(worker: WorkerHandle) -> None:
    with pytest.raises(CapabilityError) as info:
        worker.call("email.spam_detection", {"text": "!!! ??? 123"})
    assert (info.value.code, info.value.retryable) == ("INVALID_INPUT", False)
    assert info.value.message == "the email has no words to classify"


def test_missing_text_is_refused_by_the_input_schema(worker: WorkerHandle) -> None:
    with pytest.raises(ValidationFailed) as info:
        worker.call("email.spam_detection", {"subject": "hi"})
    assert info.value.errors == [{"path": "$", "message": '"text" is a required property'}]
