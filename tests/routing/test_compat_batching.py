"""`crank compat`: batching and per-process concurrency are deployment choices, not contract."""

from __future__ import annotations

from typing import Any

import pytest

from crank.routing.compat import compare_manifests

from .test_compat import TODAY, cap, manifest


@pytest.mark.parametrize(
    "change",
    [
        {"batching": {"max_batch_size": 64, "max_latency_ms": 5}},
        {"concurrency": 50},
        {"batching": {"max_batch_size": 8, "max_latency_ms": 100}, "concurrency": 2},
    ],
)
def test_adding_changing_or_removing_batching_and_concurrency_is_not_breaking(
    change: dict[str, Any],
) -> None:
    plain = manifest([cap("a.b")])
    tuned = manifest([{**cap("a.b"), **change}])
    retuned = manifest(
        [{**cap("a.b"), "batching": {"max_batch_size": 2, "max_latency_ms": 1}, "concurrency": 9}]
    )
    for old, new in ((plain, tuned), (tuned, plain), (tuned, retuned)):
        report = compare_manifests(old, new, today=TODAY)
        assert report.ok, report.breaking
        assert report.warnings == ()
        assert report.as_dict()["changes"]["changed"] == []
