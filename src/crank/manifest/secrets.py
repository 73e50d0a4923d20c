"""Recognising secret-looking values in a manifest (used by lint rule CRK109).

Two kinds of evidence: a token whose shape gives it away wherever it appears
(an AWS access key id, a private key block, a GitHub or OpenAI style token, a
long high-entropy string), and a literal value under a key named like a
credential (``password:``, ``api_key:``, ``token:``...).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterator

#: (what it is, pattern). Patterns match within one line of the file.
TOKEN_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("a private key block", re.compile(r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----")),
    ("an AWS access key id", re.compile(r"\b(?:AKIA|ASIA|AGPA|AIDA|AROA)[0-9A-Z]{16}\b")),
    ("a GitHub token", re.compile(r"\b(?:ghp|gho|ghu|ghs|ghr)_[A-Za-z0-9]{30,}\b")),
    ("a GitHub token", re.compile(r"\bgithub_pat_[A-Za-z0-9_]{40,}\b")),
    ("an API secret key (sk-...)", re.compile(r"\bsk-(?:[A-Za-z0-9_-]*-)?[A-Za-z0-9]{20,}\b")),
    ("a Slack token", re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{10,}\b")),
    ("a Google API key", re.compile(r"\bAIza[0-9A-Za-z_-]{35}\b")),
    # scheme://user:password@host, unless the password is a placeholder (${DB_PASS}, ***)
    (
        "a URL with a password",
        re.compile(
            r"\b[A-Za-z][A-Za-z0-9+.-]*://[^\s:/@]*:"
            r"(?![$<{*]|(?:x+|password|pass|secret|changeme)@)[^\s:/@]+@",
            re.IGNORECASE,
        ),
    ),
)

#: Mapping keys whose literal value is a credential.
SECRET_KEY_RE = re.compile(
    r"^(?:.*[_-])?(?:password|passwd|pwd|secret|api[_-]?key|apikey|token|access[_-]?key|"
    r"private[_-]?key|client[_-]?secret)$",
    re.IGNORECASE,
)

#: Values that stand for a secret instead of being one.
PLACEHOLDER_RE = re.compile(
    r"^(?:\$\{[^}]*\}|\$[A-Z_][A-Z0-9_]*|<[^>]*>|\{\{[^}]*\}\}|env:[A-Za-z_][A-Za-z0-9_]*|"
    r"\*+|x+|changeme|change-me|example|none|null|redacted|secret|password|token|\.\.\.)$",
    re.IGNORECASE,
)

_CANDIDATE_RE = re.compile(r"[A-Za-z0-9+/_=-]{32,}")
#: bits per character; random base64/alphanumeric is near 5-6, hex at most 4, English ~3-4.
ENTROPY_THRESHOLD = 4.3


@dataclass(frozen=True)
class SecretMatch:
    """A secret-looking token on ``line`` (1-based) starting at ``col`` (1-based)."""

    line: int
    col: int
    kind: str


def shannon_entropy(text: str) -> float:
    counts = Counter(text)
    n = len(text)
    return -sum(c / n * math.log2(c / n) for c in counts.values())


def looks_random(token: str) -> bool:
    """A long token mixing letters and digits with high entropy (not hex, not words)."""
    token = token.rstrip("=")
    if len(token) < 32:
        return False
    has_digit = any(c.isdigit() for c in token)
    has_upper = any(c.isupper() for c in token)
    has_lower = any(c.islower() for c in token)
    return has_digit and has_upper and has_lower and shannon_entropy(token) >= ENTROPY_THRESHOLD


def scan_text(text: str) -> Iterator[SecretMatch]:
    """Every secret-shaped token in ``text`` (comments included), in file order."""
    for lineno, line in enumerate(text.splitlines(), start=1):
        taken: list[tuple[int, int]] = []
        for kind, pattern in TOKEN_PATTERNS:
            for m in pattern.finditer(line):
                taken.append(m.span())
                yield SecretMatch(lineno, m.start() + 1, kind)
        for m in _CANDIDATE_RE.finditer(line):
            if any(a < m.end() and m.start() < b for a, b in taken):
                continue
            if looks_random(m.group()):
                yield SecretMatch(lineno, m.start() + 1, "a high-entropy token")


def is_secret_key(key: str) -> bool:
    return bool(SECRET_KEY_RE.match(key))


def is_literal_secret(value: object) -> bool:
    """A value that is a real credential rather than empty or a placeholder."""
    if isinstance(value, bool) or value is None:
        return False
    text = str(value).strip()
    return bool(text) and not PLACEHOLDER_RE.match(text)
