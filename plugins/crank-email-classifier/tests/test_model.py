from __future__ import annotations

import pytest
from crank_email_classifier import model


def accuracy(held_out: list[tuple[str, str, str]], label: str, clf: model.Classifier) -> float:
    right = sum(
        (clf.score(f"{subject}\n{body}").probability >= 0.5) == (truth == label)
        for truth, subject, body in held_out
    )
    return right / len(held_out)


def test_spam_accuracy_on_held_out_emails(held_out: list[tuple[str, str, str]]) -> None:
    assert accuracy(held_out, "spam", model.spam_classifier()) >= 0.9


def test_bill_accuracy_on_held_out_emails(held_out: list[tuple[str, str, str]]) -> None:
    assert accuracy(held_out, "bill", model.bill_classifier()) >= 0.9


def test_held_out_emails_are_not_in_the_training_corpus(
    held_out: list[tuple[str, str, str]],
) -> None:
    trained = {e.body for e in model.load_corpus()}
    assert not trained & {body for _, _, body in held_out}


def test_corpus_covers_every_label() -> None:
    labels = [e.label for e in model.load_corpus()]
    assert {label: labels.count(label) >= 20 for label in ("spam", "bill", "ham")} == {
        "spam": True,
        "bill": True,
        "ham": True,
    }


def test_reasons_name_the_rules_and_words_that_decided() -> None:
    score = model.spam_classifier().score(
        "URGENT!! Verify your password at http://login.example or lose access"
    )
    assert score.probability > 0.9
    assert score.reasons[:3] == (
        "rule: link to a web page (+1)",
        "rule: urgency pressure (+1)",
        "rule: asks for credentials or bank details (+1.5)",
    )
    words = [r for r in score.reasons if r.startswith("word ")]
    assert len(words) == 3  # the three words that weighed most
    assert "word 'urgent' (+" in " ".join(words)


@pytest.mark.parametrize(
    ("text", "amount", "due"),
    [
        ("Amount due: $84.17. Payment is due by November 15.", "$84.17", "November 15"),
        ("Total: EUR 3,450.00, due 2026-10-31", "EUR 3,450.00", "2026-10-31"),
        ("charges of $63.10 are due on 12/01", "$63.10", "12/01"),
        ("rent of £1,850 is due on the 1st", "£1,850", "the 1st"),
        ("Please pay $120 by Dec 1", "$120", "Dec 1"),
        ("Amount due $2,700.00 by Dec 31", "$2,700.00", "Dec 31"),
        ("Pay before 2026-12-20 to avoid a late fee of $15", "$15", "2026-12-20"),
        ("Signed by Room 12 residents, $40 collected", "$40", None),
        ("see you at lunch", None, None),
    ],
)
def test_amount_and_due_date_extraction(text: str, amount: str | None, due: str | None) -> None:
    assert (model.find_amount(text), model.find_due(text)) == (amount, due)


def test_tokenize_drops_stopwords_and_punctuation() -> None:
    assert model.tokenize("Your INVOICE, for the month!") == ["invoice", "month"]
