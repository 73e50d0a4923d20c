"""What a task context borrows from the process running it (``TaskServices``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from crank.manifest import load_manifest
from crank.worker import TaskContext
from crank.worker.context import NO_SERVICES
from crank.worker.host import WorkerHost

HTTP_WORKERS = Path(__file__).resolve().parents[1] / "fixtures" / "http_workers"


class RecordedServices:
    def __init__(self) -> None:
        self.usage: list[tuple[str, str, int, int, float]] = []

    def record_usage(
        self, capability: str, model: str, input_tokens: int, output_tokens: int, cost_usd: float
    ) -> None:
        self.usage.append((capability, model, input_tokens, output_tokens, cost_usd))


def test_without_services_usage_stays_on_the_context() -> None:
    ctx = TaskContext(capability="a.x")
    assert ctx.services is NO_SERVICES
    ctx.record_usage("m", input_tokens=3, output_tokens=2, cost_usd=0.01)
    assert ctx.extras["llm_usage"] == [
        {"model": "m", "input_tokens": 3, "output_tokens": 2, "cost_usd": 0.01}
    ]


def test_usage_goes_to_the_services_lent_to_the_context() -> None:
    services = RecordedServices()
    ctx = TaskContext(capability="a.x", services=services)
    ctx.record_usage("m", input_tokens=3, output_tokens=2, cost_usd=0.01)
    assert services.usage == [("a.x", "m", 3, 2, 0.01)]
    assert len(ctx.extras["llm_usage"]) == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("", 1, 1, 0.1), "model name"),
        (("m", -1, 1, 0.1), "input_tokens"),
        (("m", 1, True, 0.1), "output_tokens"),
        (("m", 1, 1, "free"), "cost_usd"),
    ],
)
def test_nonsense_usage_is_refused_before_anything_records_it(
    args: tuple[str, int, int, float], message: str
) -> None:
    services = RecordedServices()
    ctx = TaskContext(capability="a.x", services=services)
    with pytest.raises(ValueError, match=message):
        ctx.record_usage(*args)
    assert services.usage == []
    assert "llm_usage" not in ctx.extras


def test_a_host_lends_its_services_to_the_contexts_it_builds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.syspath_prepend(str(HTTP_WORKERS))
    services = RecordedServices()
    host = WorkerHost(load_manifest(HTTP_WORKERS / "crank.yaml"), services=services)
    try:
        call = {"text": "one two three four five six seven", "cost_usd": 0.5}
        assert host.call("demo.summarize", call) == {"summary": "one two three four five"}
    finally:
        host.stop()
    assert services.usage == [("demo.summarize", "fake-llm-1", 7, 5, 0.5)]
