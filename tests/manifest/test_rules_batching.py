"""CRK114 and CRK115: batching and concurrency fit the capability and its handler."""

from __future__ import annotations

import sys
import textwrap
from typing import TYPE_CHECKING

import pytest

from crank.manifest import load_manifest
from crank.manifest.lint import Linter
from crank.manifest.rules import RULES
from crank.worker.lint_rules import ENTRYPOINT_RULE, HANDLER_FIT_RULE

if TYPE_CHECKING:
    from pathlib import Path

HEAD = """\
apiVersion: crank.dev/v1
kind: Worker
metadata: {name: demo, version: 1.0.0}
worker:
  entrypoint: ENTRY
capabilities:
"""

Row = tuple[str, int, int, str, str, str]


def lint(path: Path, rule: str) -> list[Row]:
    linter = Linter((*RULES, ENTRYPOINT_RULE, HANDLER_FIT_RULE), installed_paths=())
    return [
        (f.rule, f.line, f.col, f.severity, f.message, f.json_path)
        for f in linter.lint_file(path)
        if f.rule == rule
    ]


def write(tmp_path: Path, capabilities: str, entry: str = "demo_missing.worker:Demo") -> Path:
    path = tmp_path / "crank.yaml"
    text = HEAD.replace("ENTRY", entry) + textwrap.dedent(capabilities)
    path.write_text(text, encoding="utf-8")
    return path


def test_schema_reads_batching_and_concurrency(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
          - id: demo.a
            version: 1.0.0
            input: {type: object}
            output: {type: object}
            batching: {max_batch_size: 64, max_latency_ms: 5}
          - id: demo.b
            version: 1.0.0
            input: {type: object}
            output: {type: object}
            concurrency: 50
        """,
    )
    a, b = load_manifest(path).capabilities
    assert a.batching is not None
    assert (a.batching.max_batch_size, a.batching.max_latency_s, a.concurrency) == (64, 0.005, 1)
    assert (b.batching, b.concurrency) == (None, 50)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ("batching: {max_batch_size: 0, max_latency_ms: 5}", "0 is out of range (minimum 1)"),
        ("batching: {max_batch_size: 8}", "missing required field 'max_latency_ms'"),
        ("batching: {max_batch_size: 8, max_latency_ms: -1}", "-1 is out of range (minimum 0)"),
        ("batching: {max_batch_size: 8, max_latency_ms: 5, wait: 1}", "unknown field 'wait'"),
        ("concurrency: 0", "0 is out of range (minimum 1)"),
        ("concurrency: 2.5", "expected integer, got a number 2.5"),
    ],
)
def test_schema_refuses_bad_values(tmp_path: Path, fields: str, message: str) -> None:
    path = write(
        tmp_path,
        f"""\
          - id: demo.a
            version: 1.0.0
            input: {{type: object}}
            output: {{type: object}}
            {fields}
        """,
    )
    rows = lint(path, "CRK002")
    assert len(rows) == 1
    assert message in rows[0][4]


def test_crk114_streaming_capability_with_batching_or_concurrency(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
          - id: demo.a
            version: 1.0.0
            input: {type: object}
            output: {type: object}
            streaming: true
            batching: {max_batch_size: 8, max_latency_ms: 5}
            concurrency: 4
        """,
    )
    assert lint(path, "CRK114") == [
        (
            "CRK114",
            12,
            3,
            "error",
            "a streaming capability cannot declare batching: a streaming task runs alone, "
            "publishing its events as it goes",
            "$.capabilities[0].batching",
        ),
        (
            "CRK114",
            13,
            3,
            "error",
            "a streaming capability cannot declare concurrency: a streaming task runs alone, "
            "publishing its events as it goes",
            "$.capabilities[0].concurrency",
        ),
    ]


def test_crk114_warns_of_a_batch_shaped_output_schema(tmp_path: Path) -> None:
    body = """\
          - id: demo.a
            version: 1.0.0
            input: {type: object}
            output: {type: OUT}
            batching: {max_batch_size: 8, max_latency_ms: 5}
        """
    rows = lint(write(tmp_path, body.replace("OUT", "array")), "CRK114")
    assert [(r[1], r[3], r[5]) for r in rows] == [(10, "warning", "$.capabilities[0].output.type")]
    assert rows[0][4].startswith("with batching the output schema describes one task's output")
    assert lint(write(tmp_path, body.replace("OUT", "object")), "CRK114") == []


WORKER = """\
from typing import Any
from crank.worker import BatchItem, WorkerApplication, capability

class Demo(WorkerApplication):
    @capability("demo.batched", batch=True)
    def batched(self, items: list[BatchItem]) -> list[Any]:
        return [{} for _ in items]

    @capability("demo.unbatched")
    def unbatched(self, data: dict[str, Any], ctx: Any) -> dict[str, Any]:
        return {}

    @capability("demo.sync")
    def sync(self, data: dict[str, Any], ctx: Any) -> dict[str, Any]:
        return {}

    @capability("demo.awaits")
    async def awaits(self, data: dict[str, Any], ctx: Any) -> dict[str, Any]:
        return {}
"""


def test_crk115_handlers_fit_batching_and_concurrency(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pkg = tmp_path / "site" / "crk115_worker"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "worker.py").write_text(WORKER)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    for mod in [m for m in sys.modules if m.startswith("crk115_worker")]:
        monkeypatch.delitem(sys.modules, mod)

    def caps(batched: str, unbatched: str, sync: str, awaits: str) -> str:
        return "".join(
            f"  - id: demo.{name}\n    version: 1.0.0\n"
            f"    input: {{type: object}}\n    output: {{type: object}}\n{extra}"
            for name, extra in (
                ("batched", batched),
                ("unbatched", unbatched),
                ("sync", sync),
                ("awaits", awaits),
            )
        )

    batching = "    batching: {max_batch_size: 8, max_latency_ms: 5}\n"
    wrong = write(
        tmp_path,
        caps("", batching, "    concurrency: 8\n", ""),
        entry="crk115_worker.worker:Demo",
    )
    assert lint(wrong, "CRK115") == [
        (
            "CRK115",
            7,
            3,
            "error",
            "Demo.batched is a batch handler but demo.batched declares no batching",
            "$.capabilities[0].batching",
        ),
        (
            "CRK115",
            15,
            3,
            "error",
            "demo.unbatched declares batching but its handler Demo.unbatched takes one input",
            "$.capabilities[1].batching",
        ),
        (
            "CRK115",
            20,
            3,
            "error",
            "demo.sync declares concurrency: 8 but its handler Demo.sync is not async; a worker "
            "process runs several tasks at once only on an event loop",
            "$.capabilities[2].concurrency",
        ),
    ]
    right = write(
        tmp_path,
        caps(batching, "", "    concurrency: 1\n", "    concurrency: 50\n"),
        entry="crk115_worker.worker:Demo",
    )
    assert lint(right, "CRK115") == []
    assert lint(right, "CRK108") == []
