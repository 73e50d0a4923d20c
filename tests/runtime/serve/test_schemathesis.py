"""A third-party fuzzer agrees with the published API: schemathesis, every check, 50
examples per operation and its stateful phase, against ``crank run`` serving the
example workers (real processes, real HTTP): no failure.

schemathesis is a test dependency (the ``test`` extra), so a missing install fails
here instead of skipping. Two settings are written from the served document itself,
per operation, one check is left out, and nothing else is relaxed:

* any 5xx is a server error (stricter than the default, which lets 5xx through the
  data checks): a call that times out (504) or a worker that crashes (502) fails it;
* an answer may be the 413 every body route documents: JSON Schema has no word for a
  body's size in bytes, and the fuzzer writes strings near their ``maxLength`` with
  12-byte escapes, past ``CRANK_MAX_BODY_BYTES`` (1 MiB) before the schema is looked at;
* schema-valid data may be answered 422 by an operation that documents 422 (the task
  ran and the worker refused the input: the example image classifier checks pixel
  values itself, the email classifier refuses a mail without words) and 410 by one
  that documents 410 (a deprecated id past its sunset);
* a task read after ``DELETE /v1/tasks/{id}`` is still there: DELETE cancels a task
  and keeps its record (status ``cancelled``, as docs/runtime.md says), so the
  use-after-free check, which expects 404 after a successful DELETE, is left out
  (``--exclude-checks``; the config file's switches did not reach every phase).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from typing import TYPE_CHECKING, Any

import pytest

from crank.runtime.http.request_parsing import MAX_TASK_WAIT_S

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.slow

#: schemathesis's defaults, without 5xx (the server-error check alone decides those).
POSITIVE_STATUSES = ["2xx", "3xx", "401", "403", "404", "409", "429"]
NEGATIVE_STATUSES = ["400", "401", "403", "404", "405", "406", "409", "415", "422", "428", "429"]


def fuzz_config(document: dict[str, Any]) -> str:
    """The schemathesis.toml for ``document`` (see the module docstring)."""
    lines = [
        "[checks]",
        'not_a_server_error.expected-statuses = ["1xx", "2xx", "3xx", "4xx"]',
        f"negative_data_rejection.expected-statuses = {json.dumps([*NEGATIVE_STATUSES, '413'])}",
    ]
    for operations in document["paths"].values():
        for operation in operations.values():
            documented = [s for s in ("410", "413", "422") if s in operation["responses"]]
            if documented:
                statuses = json.dumps([*POSITIVE_STATUSES, *documented])
                lines += [
                    "",
                    "[[operations]]",
                    f"include-operation-id = {json.dumps(operation['operationId'])}",
                    f"checks.positive_data_acceptance.expected-statuses = {statuses}",
                ]
    return "\n".join(lines) + "\n"


def test_schemathesis_finds_nothing_against_the_example_workers(
    crank_run: Any, tmp_path: Path
) -> None:
    run = crank_run("--min-workers", "2", "--max-workers", "2", fixture_workers=False)
    document = run.http.get("/openapi.json").json()
    served = {r["id"] for r in run.http.get("/v1/capabilities").json()["capabilities"]}
    assert {"document.convert", "email.spam_detection", "image.classify", "text.tokens"} <= served
    config = tmp_path / "schemathesis.toml"
    config.write_text(fuzz_config(document))
    argv = [
        sys.executable, "-m", "schemathesis.cli", "--config-file", str(config),
        "run", f"{run.url}/openapi.json",
        "--checks", "all",
        # DELETE /v1/tasks/{id} cancels: the task stays readable (status cancelled), by
        # design, and the use-after-free check expects a 404 after every DELETE. Turned
        # off in the config file (top level, per operation, [phases.stateful]), the
        # stateful phase of schemathesis 4.32 still ran it now and then under --checks
        # all; excluded here it runs nowhere (a purged dead letter's 404 is tested in
        # test_dead_letter_routes)
        "--exclude-checks", "use_after_free",
        "--max-examples", "50",
        "--phases", "examples,coverage,fuzzing,stateful",
        # one thread: on CPython 3.11 (before 3.11.8) ast.parse in two threads at once
        # can raise "AST constructor recursion depth mismatch" (CPython gh-106905), and
        # hypothesis parses lambdas' source while it describes strategies
        "--workers", "1",
        "--seed", "14",
        # past the longest ?wait= a task read may ask for (MAX_TASK_WAIT_S, 55 s): a
        # fuzzed wait of 32.9 s once timed out on the client side at 30
        "--request-timeout", str(MAX_TASK_WAIT_S + 30),
        "--no-color",
    ]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, timeout=900, check=False)
    out = done.stdout
    # a failure quotes the request; a fuzzed body can be a megabyte on one line
    shown = "\n".join(line[:400] for line in out.splitlines())
    assert done.returncode == 0, shown[-15000:] + done.stderr[-2000:]
    selected = re.search(r"Selected: (\d+)/(\d+)", out)
    tested = re.search(r"Tested: (\d+)", out)
    assert selected is not None and tested is not None, out[-3000:]
    assert int(selected.group(1)) == int(selected.group(2)) == int(tested.group(1))
    operations = sum(len(ops) for ops in document["paths"].values())
    assert int(tested.group(1)) == operations
    # Examples sends the manifests' examples (documented as request examples)
    for phase in ("Examples", "Coverage", "Fuzzing", "Stateful"):
        assert re.search(rf"✅ {phase}\b", out), f"{phase} did not run and pass:\n{out[-3000:]}"
    scenarios = re.search(r"Scenarios:\s+(\d+)", out)
    assert scenarios is not None and int(scenarios.group(1)) > 0, out[-3000:]
    cases = re.search(r"(\d+) generated, (\d+) passed", out)
    assert cases is not None, out[-3000:]
    assert int(cases.group(1)) == int(cases.group(2)) >= 50 * operations
    assert "Traceback" not in run.log()
