"""A transparent email classifier: hand-written rules plus multinomial naive Bayes.

Every score can be explained: the rules that fired (with their weights) and the
words that pushed the naive Bayes log-odds most are returned as ``reasons``.
The naive Bayes part is trained on first use from ``data/corpus.jsonl``, a small
corpus of realistic emails shipped inside the package (nothing is downloaded).
"""

from __future__ import annotations

import functools
import json
import math
import re
from collections import Counter
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

_WORD = re.compile(r"[a-z][a-z']+")
MONEY = re.compile(
    r"(?:[$€£]\s?\d[\d,]*(?:\.\d{2})?|\b(?:USD|EUR|GBP)\s?\d[\d,]*(?:\.\d{2})?|"
    r"\b\d[\d,]*(?:\.\d{2})?\s?(?:USD|EUR|GBP|dollars)\b)"
)
_DUE = re.compile(
    r"\bdue(?:\s+date)?(?:\s+(?:on|by))?:?\s+"
    r"((?:[A-Z][a-z]{2,8}\.?\s+\d{1,2})|\d{4}-\d{2}-\d{2}|\d{1,2}/\d{1,2}(?:/\d{2,4})?|"
    r"(?:the\s+)?\d{1,2}(?:st|nd|rd|th))"
)
_MONTH_DAY = (
    r"(?:Jan(?:uary)?|Feb(?:ruary)?|Mar(?:ch)?|Apr(?:il)?|May|June?|July?|Aug(?:ust)?|"
    r"Sep(?:t(?:ember)?)?|Oct(?:ober)?|Nov(?:ember)?|Dec(?:ember)?)\.?\s+\d{1,2}(?:st|nd|rd|th)?\b"
)
#: a deadline without the word "due" ("pay $120 by Dec 1"): a real date only, so that
#: "by Room 12" or "by the 3rd party" are not taken for one.
_DEADLINE = re.compile(
    rf"\b(?:by|before|no later than)\s+({_MONTH_DAY}|\d{{4}}-\d{{2}}-\d{{2}}|"
    r"\d{1,2}/\d{1,2}(?:/\d{2,4})?)"
)
#: Words too common to say anything about an email.
STOPWORDS = frozenset(
    [
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "by",
        "for",
        "from",
        "has",
        "have",
        "i",
        "in",
        "is",
        "it",
        "of",
        "on",
        "or",
        "our",
        "the",
        "this",
        "to",
        "we",
        "will",
        "with",
        "you",
        "your",
    ]
)


def tokenize(text: str) -> list[str]:
    return [w for w in _WORD.findall(text.lower()) if w not in STOPWORDS]


@dataclass(frozen=True)
class Rule:
    """A named, weighted pattern; its weight is added to the log-odds when it fires."""

    name: str
    weight: float
    test: Callable[[str], bool]


def _any_of(*phrases: str) -> Callable[[str], bool]:
    pattern = re.compile(r"\b(?:" + "|".join(re.escape(p) for p in phrases) + r")\b", re.I)
    return lambda text: pattern.search(text) is not None


def _shouting(text: str) -> bool:
    caps = [w for w in re.findall(r"\b[A-Z]{4,}\b", text) if w not in {"USD", "EUR", "GBP"}]
    return "!!" in text or len(caps) >= 2


SPAM_RULES: tuple[Rule, ...] = (
    Rule("link to a web page", 1.0, lambda t: re.search(r"https?://", t) is not None),
    Rule(
        "urgency pressure",
        1.0,
        _any_of(
            "act now",
            "urgent",
            "urgently",
            "expires",
            "limited time",
            "within 24 hours",
            "immediately",
            "ends tonight",
            "only 50 spots",
        ),
    ),
    Rule(
        "asks for credentials or bank details",
        1.5,
        _any_of(
            "password",
            "bank details",
            "social security",
            "card number",
            "credit card details",
            "confirm your identity",
            "enable macros",
        ),
    ),
    Rule(
        "prize or guarantee claims",
        1.0,
        _any_of("won", "winner", "guaranteed", "risk free", "free trial", "claim your", "100%"),
    ),
    Rule("shouting", 0.5, _shouting),
)

BILL_RULES: tuple[Rule, ...] = (
    Rule("mentions an amount", 1.0, lambda t: MONEY.search(t) is not None),
    Rule(
        "mentions a due date or payment terms",
        1.0,
        _any_of(
            "due",
            "due date",
            "net 30",
            "payment deadline",
            "balance",
            "amount due",
            "autopay",
            "installment",
        ),
    ),
    Rule(
        "invoice, statement or bill",
        1.5,
        _any_of("invoice", "statement", "bill", "premium", "receipt", "rent"),
    ),
)


@dataclass(frozen=True)
class Score:
    probability: float
    reasons: tuple[str, ...]


@dataclass(frozen=True)
class NaiveBayes:
    """Multinomial naive Bayes with Laplace smoothing over two classes."""

    prior_log_odds: float
    token_log_odds: dict[str, float]

    @classmethod
    def train(cls, positives: Iterable[list[str]], negatives: Iterable[list[str]]) -> NaiveBayes:
        pos_docs, neg_docs = list(positives), list(negatives)
        pos, neg = Counter[str](), Counter[str]()
        for doc in pos_docs:
            pos.update(doc)
        for doc in neg_docs:
            neg.update(doc)
        vocab = set(pos) | set(neg)
        pos_total, neg_total, v = sum(pos.values()), sum(neg.values()), len(vocab)
        token_log_odds = {
            t: math.log((pos[t] + 1) / (pos_total + v)) - math.log((neg[t] + 1) / (neg_total + v))
            for t in vocab
        }
        return cls(math.log(len(pos_docs) / len(neg_docs)), token_log_odds)

    def contributions(self, tokens: list[str]) -> dict[str, float]:
        """Each known word's total push on the log-odds (positive: towards the label)."""
        out: dict[str, float] = {}
        for t in tokens:
            if t in self.token_log_odds:
                out[t] = out.get(t, 0.0) + self.token_log_odds[t]
        return out


@dataclass(frozen=True)
class Classifier:
    """Rules + naive Bayes for one yes/no question (spam? bill?)."""

    name: str
    bayes: NaiveBayes
    rules: tuple[Rule, ...]
    #: naive Bayes evidence is summed over many words; scaling keeps rules audible.
    bayes_scale: float = 0.5

    def score(self, text: str) -> Score:
        contributions = self.bayes.contributions(tokenize(text))
        log_odds = self.bayes.prior_log_odds + self.bayes_scale * sum(contributions.values())
        reasons = []
        for rule in self.rules:
            if rule.test(text):
                log_odds += rule.weight
                reasons.append(f"rule: {rule.name} (+{rule.weight:g})")
        strongest = sorted(contributions.items(), key=lambda kv: -abs(kv[1]))[:3]
        reasons.extend(f"word {w!r} ({self.bayes_scale * c:+.2f})" for w, c in strongest)
        probability = 1.0 / (1.0 + math.exp(-max(-50.0, min(50.0, log_odds))))
        return Score(round(probability, 4), tuple(reasons))


@dataclass(frozen=True)
class Email:
    label: str
    subject: str
    body: str

    @property
    def text(self) -> str:
        return f"{self.subject}\n{self.body}"


def load_corpus() -> list[Email]:
    """The training emails shipped with the package (labels: spam, bill, ham)."""
    text = resources.files(__package__).joinpath("data", "corpus.jsonl").read_text("utf-8")
    return [Email(**json.loads(line)) for line in text.splitlines() if line.strip()]


def train(corpus: list[Email], label: str, rules: tuple[Rule, ...]) -> Classifier:
    positives = [tokenize(e.text) for e in corpus if e.label == label]
    negatives = [tokenize(e.text) for e in corpus if e.label != label]
    return Classifier(label, NaiveBayes.train(positives, negatives), rules)


@functools.cache
def spam_classifier() -> Classifier:
    return train(load_corpus(), "spam", SPAM_RULES)


@functools.cache
def bill_classifier() -> Classifier:
    return train(load_corpus(), "bill", BILL_RULES)


def find_amount(text: str) -> str | None:
    match = MONEY.search(text)
    return match.group(0) if match else None


def find_due(text: str) -> str | None:
    """The due date as written: after "due", else after "by"/"before" when it is a date."""
    match = _DUE.search(text) or _DEADLINE.search(text)
    return match.group(1) if match else None
