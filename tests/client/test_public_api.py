"""The client's public names, and what importing it does not pull in."""

from __future__ import annotations

import subprocess
import sys
from typing import get_type_hints

import pytest

import crank
import crank.client


def test_the_top_level_names_are_the_clients() -> None:
    assert crank.Client is crank.client.Client
    assert crank.AsyncClient is crank.client.AsyncClient
    assert crank.connect is crank.client.connect
    assert crank.connect_async is crank.client.connect_async
    for name in ("Client", "AsyncClient", "connect", "connect_async"):
        assert name in crank.__all__
    for name in crank.client.__all__:
        assert getattr(crank.client, name) is not None


@pytest.mark.parametrize("client", [crank.Client, crank.AsyncClient])
def test_no_request_timeout_is_typed_as_the_docs_allow(client: type) -> None:
    """``timeout=None`` (no limit) works and is documented, but was annotated ``float``:
    mypy --strict refused a program passing it."""
    assert get_type_hints(client.__init__)["timeout"] == float | None


def test_importing_the_client_leaves_the_server_stack_alone() -> None:
    """A producer imports the client, not Starlette, uvicorn or crank's HTTP app, nor the
    manifest loader, the router and PyYAML (the broker contract's priority bands
    pulled those in through the routing package)."""
    code = (
        "import sys\n"
        "from crank import Client, connect\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('starlette', 'uvicorn', 'prometheus_client', 'jsonschema', 'yaml') "
        "or m.startswith(('crank.runtime.http', 'crank.runtime.supervisor', 'crank.worker', "
        "'crank.manifest', 'crank.routing.router'))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "[]"
