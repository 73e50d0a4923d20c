"""Secret recognition: what counts as a secret and what is left alone."""

from __future__ import annotations

import pytest

from crank.manifest import secrets


@pytest.mark.parametrize(
    "value",
    [
        "sha256:" + "0123456789abcdef" * 4,  # a digest is hex: low entropy per character
        "email.spam_detection.version_two_with_a_long_name",
        "^[a-z][a-z0-9_]*(\\.[a-z][a-z0-9_]*)+$",
        "https://example.invalid/crank/docs/manifest-reference",
    ],
)
def test_ordinary_values_are_not_secrets(value: str) -> None:
    assert list(secrets.scan_text(f"key: {value}\n")) == []


@pytest.mark.parametrize(
    ("value", "kind"),
    [
        ("AKIAABCDEFGHIJKLMNOP", "an AWS access key id"),
        ("ghp_" + "a1B2" * 9, "a GitHub token"),
        ("sk-" + "Ab3d" * 6, "an API secret key (sk-...)"),
        ("xoxb-1234567890-abcdef", "a Slack token"),
        ("-----BEGIN OPENSSH PRIVATE KEY-----", "a private key block"),
        ("q8Xz3LmP0vR7tY2wK9sB4nD6hJ1fG5cA", "a high-entropy token"),
    ],
)
def test_secret_shapes(value: str, kind: str) -> None:
    assert list(secrets.scan_text(f"x:\n  key: {value}\n")) == [secrets.SecretMatch(2, 8, kind)]


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("password", True),
        ("db_password", True),
        ("API_KEY", True),
        ("apiKey", True),
        ("token", True),
        ("client-secret", True),
        ("tokenizer", False),
        ("auth", False),
        ("keyword", False),
    ],
)
def test_secret_keys(key: str, expected: bool) -> None:
    assert secrets.is_secret_key(key) is expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("hunter2", True),
        (12345, True),
        ("", False),
        ("${DB_PASSWORD}", False),
        ("<your token>", False),
        ("env:API_KEY", False),
        ("changeme", False),
        (None, False),
        (True, False),
        ("***", False),
    ],
)
def test_literal_secrets(value: object, expected: bool) -> None:
    assert secrets.is_literal_secret(value) is expected
