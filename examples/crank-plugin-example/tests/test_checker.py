"""The http/https dependency kinds, against a real HTTP service."""

from __future__ import annotations

import pytest

from crank.testing import check_dependency, ensure_dependency
from crank.testing.dependencies import clear_dependency_cache


@pytest.fixture(autouse=True)
def fresh_results() -> None:
    clear_dependency_cache()


def test_a_service_that_answers_is_available(service: str) -> None:
    result = check_dependency(f"{service}/health")
    assert (result.kind, result.available, result.broken) == ("http", True, False)
    assert result.reason == f"{service}/health answered HTTP 200"


def test_a_service_that_answers_an_error_is_broken(service: str) -> None:
    result = check_dependency(f"{service}/broken")
    assert (result.available, result.broken) == (False, True)
    assert result.reason == f"{service}/broken answers, but with HTTP 503 Service Unavailable"
    assert result.hint == "the service is up but unhealthy: look at its logs"


def test_nothing_listening_is_missing(closed_port: int) -> None:
    url = f"http://127.0.0.1:{closed_port}/health"
    result = check_dependency(url)
    assert (result.available, result.broken) == (False, False)
    assert result.reason.startswith(f"nothing answers at {url} (")
    assert result.hint == "start the service, or point the URL at one that runs"


def test_the_bare_kind_names_no_service() -> None:
    result = check_dependency("http")
    assert result.broken
    assert result.reason.startswith("'http' names no service")


def test_ensure_dependency_skips_on_a_missing_service(closed_port: int) -> None:
    with pytest.raises(pytest.skip.Exception, match=r"nothing answers at http://127\.0\.0\.1"):
        ensure_dependency(f"http://127.0.0.1:{closed_port}/")
