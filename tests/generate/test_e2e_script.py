"""The pure parts of scripts/e2e_docker.py (the Docker part runs in CI after the tests)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from types import ModuleType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterator

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "e2e_docker.py"


@pytest.fixture(scope="module")
def e2e() -> Iterator[ModuleType]:
    spec = importlib.util.spec_from_file_location("e2e_docker", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["e2e_docker"] = module  # dataclasses look their module up there
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop("e2e_docker", None)


@pytest.mark.parametrize(
    "text",
    [
        "ENV API_KEY=abcd1234efgh5678",
        'RUN echo "password: hunter2hunter2"',
        "AWS=AKIAABCDEFGHIJKLMNOP",
        "-----BEGIN RSA PRIVATE KEY-----",
        "GITHUB=ghp_" + "a" * 36,
        "OPENAI=sk-" + "b" * 24,
        "CRANK_API_TOKEN=0123456789abcdef",
    ],
)
def test_key_like_values_are_found(e2e: ModuleType, text: str) -> None:
    assert e2e.secrets_in([text])


@pytest.mark.parametrize(
    "text",
    [
        "PATH=/opt/venv/bin:/usr/local/sbin:/usr/bin",
        "PIP_CERT=/etc/ssl/certs/ca-certificates.crt",
        "CRANK_API_TOKEN=",
        "HOME=/var/lib/crank",
        '/bin/sh -c #(nop)  LABEL crank.manifest.digest="6c2f0e6e0e6f"',
    ],
)
def test_ordinary_values_are_not_secrets(e2e: ModuleType, text: str) -> None:
    assert e2e.secrets_in([text]) == []


def test_failed_command_names_itself_and_shows_the_tail(e2e: ModuleType) -> None:
    with pytest.raises(e2e.E2EFailure, match=r"listing failed \(exit 2\):\n.*nope"):
        e2e.run("ls", "/nope", what="listing")


def test_missing_tool_is_a_clear_failure(e2e: ModuleType) -> None:
    with pytest.raises(e2e.E2EFailure, match="no-such-tool-xyz: not installed"):
        e2e.run("no-such-tool-xyz")


def test_next_steps_are_the_lines_after_next(e2e: ModuleType) -> None:
    printed = (
        "created /x/demo (17 files)\n  worker demo, package demo, capabilities demo.echo\n"
        "next:\n  cd demo\n  python -m pip install -e '.[test]'\n  crank run --port 8080\n"
    )
    assert e2e.next_steps(printed) == [
        "cd demo",
        "python -m pip install -e '.[test]'",
        "crank run --port 8080",
    ]
    with pytest.raises(e2e.E2EFailure, match="printed no next steps"):
        e2e.next_steps("created /x/demo (17 files)\n")
