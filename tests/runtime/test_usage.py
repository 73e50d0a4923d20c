"""LLM usage: the shared SQLite store, budget levels, ctx.record_usage."""

from __future__ import annotations

import subprocess
import sys
from typing import TYPE_CHECKING

import pytest

from crank.runtime.task_services import RUNTIME_TASK_SERVICES, record_usage
from crank.runtime.usage import UsageStore, budget_state, paused_capabilities
from crank.worker import TaskContext

if TYPE_CHECKING:
    from pathlib import Path


def test_store_adds_up_per_day_capability_and_model(tmp_path: Path) -> None:
    store = UsageStore(tmp_path / "usage.db")
    store.record("a.x", "m1", 10, 2, 0.5, day="2026-11-22")
    store.record("a.x", "m1", 5, 1, 0.25, day="2026-11-22")
    store.record("b.y", "m2", 1, 1, 1.0, day="2026-11-22")
    store.record("a.x", "m1", 1, 1, 9.0, day="2026-11-21")
    assert [r.as_dict() for r in store.rows("2026-11-22")] == [
        {"day": "2026-11-22", "capability": "a.x", "model": "m1", "calls": 2, "input_tokens": 15,
         "output_tokens": 3, "cost_usd": 0.75},
        {"day": "2026-11-22", "capability": "b.y", "model": "m2", "calls": 1, "input_tokens": 1,
         "output_tokens": 1, "cost_usd": 1.0},
    ]  # fmt: skip
    assert store.cost_for_day("2026-11-22") == pytest.approx(1.75)
    store.close()


def test_store_is_shared_between_processes(tmp_path: Path) -> None:
    db = tmp_path / "usage.db"
    code = (
        "import sys; from crank.runtime.usage import UsageStore; s = UsageStore(sys.argv[1]);"
        " [s.record('a.x', 'm', 1, 1, 0.01, day='2026-11-22') for _ in range(50)]; s.close()"
    )
    procs = [subprocess.Popen([sys.executable, "-c", code, str(db)]) for _ in range(3)]
    assert [p.wait(timeout=60) for p in procs] == [0, 0, 0]
    store = UsageStore(db)
    (row,) = store.rows("2026-11-22")
    assert (row.calls, row.input_tokens) == (150, 150)
    assert row.cost_usd == pytest.approx(1.5)
    store.close()


@pytest.mark.parametrize(
    ("spent", "budget", "level"),
    [(0.0, None, "unlimited"), (0.79, 1.0, "ok"), (0.8, 1.0, "warning"), (0.99, 1.0, "warning"),
     (1.0, 1.0, "exhausted"), (5.0, 1.0, "exhausted")],
)  # fmt: skip
def test_budget_levels(spent: float, budget: float | None, level: str) -> None:
    state = budget_state(spent, budget)
    assert state.level == level
    paused = paused_capabilities(state, ["b.summary", "a.chat"])
    assert paused == (("a.chat", "b.summary") if level == "exhausted" else ())


def test_ctx_record_usage_persists_and_counts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from crank.runtime.metrics import worker_metrics

    db = tmp_path / "usage.db"
    monkeypatch.setenv("CRANK_USAGE_DB", str(db))
    ctx = TaskContext(capability="demo.summarize", services=RUNTIME_TASK_SERVICES)
    before = (
        worker_metrics().registry.get_sample_value(
            "crank_llm_cost_usd_total", {"capability": "demo.summarize", "model": "gpt-x"}
        )
        or 0.0
    )
    ctx.record_usage("gpt-x", input_tokens=100, output_tokens=20, cost_usd=0.02)
    assert ctx.extras["llm_usage"] == [
        {"model": "gpt-x", "input_tokens": 100, "output_tokens": 20, "cost_usd": 0.02}
    ]
    after = worker_metrics().registry.get_sample_value(
        "crank_llm_cost_usd_total", {"capability": "demo.summarize", "model": "gpt-x"}
    )
    assert after == pytest.approx(before + 0.02)
    store = UsageStore(db)
    assert [(r.capability, r.input_tokens, r.output_tokens) for r in store.rows()] == [
        ("demo.summarize", 100, 20)
    ]
    store.close()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("", 1, 1, 0.1), "model name"),
        (("m", -1, 1, 0.1), "input_tokens"),
        (("m", 1, 1.5, 0.1), "output_tokens"),
        (("m", 1, 1, -0.1), "cost_usd"),
    ],
)
def test_record_usage_refuses_nonsense(args: tuple[str, int, int, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        record_usage("a.x", *args)
