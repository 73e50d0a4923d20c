"""JSON logs with bound ids and secret redaction."""

from __future__ import annotations

import io
import json
import logging

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crank.runtime.logs import (
    _SECRET_VALUE,
    REDACTED,
    bind_ids,
    clear_ids,
    configure_logging,
    get_logger,
    redact,
)


@pytest.fixture
def log_stream() -> io.StringIO:
    stream = io.StringIO()
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    configure_logging("prod", stream=stream)
    yield stream
    clear_ids()
    for handler in [h for h in root.handlers if h.get_name() == "crank"]:
        root.removeHandler(handler)
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])


def test_json_lines_carry_ids_and_redact(log_stream: io.StringIO) -> None:
    bind_ids(request_id="r1", trace_id="t1", task_id="k1", capability="a.x")
    get_logger("crank.test").info(
        "calling_provider",
        api_key="abc",
        headers={"Authorization": "Bearer xyz", "accept": "json"},
        note="key sk-abcdefghijklmnopqrstuvwx used",
    )
    logging.getLogger("crank.task.a.x").warning("stdlib password=%s", "hunter2")
    first, second = (json.loads(line) for line in log_stream.getvalue().splitlines())
    assert (first["request_id"], first["trace_id"], first["task_id"], first["capability"]) == (
        "r1", "t1", "k1", "a.x"
    )  # fmt: skip
    assert first["api_key"] == REDACTED
    assert first["headers"] == {"Authorization": REDACTED, "accept": "json"}
    assert first["note"] == f"key {REDACTED} used"
    assert first["level"] == "info"
    assert second["task_id"] == "k1"
    assert second["level"] == "warning"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("plain words", "plain words"),
        ("Bearer abc.def", REDACTED),
        ("AKIAIOSFODNN7EXAMPLE", REDACTED),
        ("ghp_" + "a1B2" * 6, REDACTED),
        (
            "0123456789abcdef0123456789abcdef",
            "0123456789abcdef0123456789abcdef",
        ),  # a hash, no upper case
        ("Zq8" + "xY7wV6uT5sR4qP3oN2mL1kJ0iH9gFf", REDACTED),
    ],
)
def test_values_that_look_like_keys(value: str, expected: str) -> None:
    assert redact(value) == expected


def test_nested_keys() -> None:
    doc = {
        "user": "ann",
        "db": {"password": "p", "host": "h"},
        "items": [{"token": "t"}],
        "secret": None,
    }
    assert redact(doc) == {
        "user": "ann",
        "db": {"password": REDACTED, "host": "h"},
        "items": [{"token": REDACTED}],
        "secret": None,
    }


_SECRET_ALPHABET = (
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+/_- -BEGINPRIVATEKY"
)


@given(
    st.text(alphabet=_SECRET_ALPHABET, max_size=80)
    | st.builds(
        lambda prefix, body: prefix + body,
        st.sampled_from(
            ["Bearer ", "sk-", "AKIA", "ghp_", "xoxb-", "-----BEGIN RSA PRIVATE KEY-----"]
        ),
        st.text(alphabet=_SECRET_ALPHABET, max_size=60),
    )
)
def test_redaction_shortcut_never_changes_the_answer(value: str) -> None:
    # redact() skips the regex for strings it cannot match; the answer must be the same
    assert redact(value) == _SECRET_VALUE.sub(REDACTED, value)
