"""The email-classifier worker: spam detection and bill detection (v2 split)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from crank.worker import CapabilityError, WorkerApplication, capability
from crank_email_classifier import model

if TYPE_CHECKING:
    from crank.worker import TaskContext


def _text(data: dict[str, Any]) -> str:
    text = f"{data.get('subject', '')}\n{data['text']}".strip()
    if not model.tokenize(text):
        raise CapabilityError("INVALID_INPUT", "the email has no words to classify")
    return text


class EmailClassifier(WorkerApplication):
    """Answers "is this spam?" and "is this a bill?" with the reasons behind each answer."""

    def setup(self) -> None:
        # Train both models once per process, before the first task.
        model.spam_classifier()
        model.bill_classifier()

    @capability("email.spam_detection")
    def detect_spam(self, data: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
        score = model.spam_classifier().score(_text(data))
        is_spam = score.probability >= 0.5
        return {
            "label": "spam" if is_spam else "ham",
            "is_spam": is_spam,
            "spam_probability": score.probability,
            "reasons": list(score.reasons),
        }

    @capability("email.bill_detection")
    def detect_bill(self, data: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
        text = _text(data)
        score = model.bill_classifier().score(text)
        is_bill = score.probability >= 0.5
        return {
            "label": "bill" if is_bill else "not_bill",
            "is_bill": is_bill,
            "bill_probability": score.probability,
            "amount": model.find_amount(text) if is_bill else None,
            "due": model.find_due(text) if is_bill else None,
            "reasons": list(score.reasons),
        }
