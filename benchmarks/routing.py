"""Router and shim overhead per call, and `crank compat` on a large manifest.

    python benchmarks/routing.py [--calls N]

- resolve: `Router.resolve` for a live id, an alias and a split shim (selector
  dropped from the payload, call counted), calls per second (best of 5 rounds).
- host: `WorkerHost.call` on the bill-detection fixture straight, and through the
  shim (resolve + call): what routing adds to an in-process call.
- compat: `compare_manifests` between two 200-capability manifests with nested
  schemas (wall time, best of 5).
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

REPO = Path(__file__).resolve().parents[1]
WORKERS = REPO / "tests" / "fixtures" / "workers"
sys.path.insert(0, str(WORKERS))

from crank.manifest import load_manifest, manifest_from_dict  # noqa: E402
from crank.routing import Router  # noqa: E402
from crank.routing.compat import compare_manifests  # noqa: E402
from crank.worker.host import WorkerHost  # noqa: E402

if TYPE_CHECKING:
    from collections.abc import Callable

DAY = dt.date(2026, 12, 1)


def rate(fn: Callable[[], Any], calls: int) -> float:
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        best = min(best, time.perf_counter() - start)
    return calls / best


def big_manifest(n: int, version: str) -> Any:
    nested = {
        "type": "object",
        "required": ["text"],
        "properties": {
            "text": {"type": "string"},
            "options": {
                "type": "object",
                "properties": {f"o{i}": {"enum": ["a", "b", "c"]} for i in range(10)},
            },
            "items": {"type": "array", "items": {"type": "object", "required": ["k"],
                                                 "properties": {"k": {"type": "integer"}}}},
        },
    }  # fmt: skip
    caps = [
        {"id": f"bench.cap{i}", "version": version, "input": nested, "output": nested}
        for i in range(n)
    ]
    return manifest_from_dict(
        {
            "apiVersion": "crank.dev/v1",
            "kind": "Worker",
            "metadata": {"name": "bench", "version": version},
            "worker": {"entrypoint": "x:Y"},
            "capabilities": caps,
        }
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=20000)
    calls = parser.parse_args().calls

    v2 = load_manifest(WORKERS / "crank_fixture_email" / "crank.yaml")
    router = Router.from_manifests([v2], today=lambda: DAY)
    live = {"text": "Invoice 42"}
    old = {"text": "Invoice 42", "type": "bill"}
    live_rate = rate(lambda: router.resolve("email.bill_detection", live), calls)
    shim_rate = rate(lambda: router.resolve("email.classification", old, caller="c"), calls)
    print(f"resolve live id      {live_rate:>12,.0f} /s")
    print(f"resolve split shim   {shim_rate:>12,.0f} /s")

    host = WorkerHost(v2)
    try:
        straight = rate(lambda: host.call("email.bill_detection", live), calls // 4)

        def routed() -> Any:
            res = router.resolve("email.classification", old, caller="c")
            return host.call(res.target, res.payload)

        shimmed = rate(routed, calls // 4)
    finally:
        host.stop()
    print(f"host.call straight   {straight:>12,.0f} /s")
    print(f"host.call via shim   {shimmed:>12,.0f} /s  ({shimmed / straight:.0%} of straight)")

    old_m, new_m = big_manifest(200, "1.0.0"), big_manifest(200, "1.1.0")
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        report = compare_manifests(old_m, new_m, today=DAY)
        best = min(best, time.perf_counter() - start)
    print(f"compare 200 caps     {best * 1000:>12.1f} ms  (ok={report.ok})")


if __name__ == "__main__":
    main()
