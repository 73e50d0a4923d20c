"""The crank_worker fixture: a real worker package, loaded from its manifest, run in-process."""

from __future__ import annotations

import asyncio
import sys
import textwrap
from typing import TYPE_CHECKING

import pytest

from crank.errors import UsageError, ValidationFailed, WorkerError
from crank.testing.workers import WorkerRunner

if TYPE_CHECKING:
    from pathlib import Path

MANIFEST = """\
apiVersion: crank.dev/v1
kind: Worker
metadata: {name: greeter, version: 1.0.0}
worker: {entrypoint: "crank_greeter_fixture.worker:Greeter"}
capabilities:
  - id: greet.hello
    version: 1.0.0
    input:
      type: object
      required: [name]
      properties: {name: {type: string}}
    output:
      type: object
      required: [greeting]
      properties: {greeting: {type: string}}
  - id: greet.spell
    version: 1.0.0
    streaming: true
    input: {type: object, required: [name], properties: {name: {type: string}}}
    output: {type: object, required: [letter], properties: {letter: {type: string}}}
"""

WORKER = """\
from pathlib import Path
from crank.worker import WorkerApplication, capability

LOG = Path(__file__).parent / "lifecycle.log"


class Greeter(WorkerApplication):
    def setup(self):
        with LOG.open("a") as f:
            f.write("setup\\n")
        self.prefix = "Hello"

    def teardown(self):
        with LOG.open("a") as f:
            f.write("teardown\\n")

    @capability("greet.hello")
    def hello(self, data, ctx):
        return {"greeting": f"{self.prefix}, {data['name']}!"}

    @capability("greet.spell")
    def spell(self, data, ctx):
        for letter in data["name"]:
            yield {"letter": letter}
"""


@pytest.fixture
def greeter(tmp_path: Path) -> Path:
    package = tmp_path / "src" / "crank_greeter_fixture"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "worker.py").write_text(WORKER)
    (package / "crank.yaml").write_text(MANIFEST)
    return package / "crank.yaml"


def test_call_a_worker_from_its_manifest(crank_worker: WorkerRunner, greeter: Path) -> None:
    worker = crank_worker(greeter)
    assert worker.manifest.name == "greeter"
    assert worker.call("greet.hello", {"name": "Ada"}) == {"greeting": "Hello, Ada!"}
    assert worker.call("greet.spell", {"name": "Ada"}) == [
        {"letter": "A"},
        {"letter": "d"},
        {"letter": "a"},
    ]
    assert worker.ready() and worker.live()


def test_input_is_validated_like_the_runtime(crank_worker: WorkerRunner, greeter: Path) -> None:
    worker = crank_worker(greeter.parent)  # the folder works too
    with pytest.raises(ValidationFailed) as caught:
        worker.call("greet.hello", {"name": 7})
    assert caught.value.errors == [{"path": "$.name", "message": '7 is not of type "string"'}]


def test_setup_and_teardown_run_and_sys_path_is_restored(greeter: Path) -> None:
    log = greeter.parent / "lifecycle.log"
    with WorkerRunner() as run:
        run(greeter).call("greet.hello", {"name": "Bo"})
        assert log.read_text() == "setup\n"
        assert "crank_greeter_fixture" in sys.modules
    assert log.read_text() == "setup\nteardown\n"
    assert str(greeter.parent.parent) not in sys.path
    assert "crank_greeter_fixture" not in sys.modules


def test_a_missing_manifest_is_a_clear_error(crank_worker: WorkerRunner, tmp_path: Path) -> None:
    with pytest.raises(WorkerError) as caught:
        crank_worker(tmp_path / "nope" / "crank.yaml")
    assert caught.value.message == f"no worker manifest at {tmp_path / 'nope' / 'crank.yaml'}"


def test_a_worker_named_by_something_else_is_a_usage_error(crank_worker: WorkerRunner) -> None:
    with pytest.raises(UsageError) as caught:
        crank_worker(3)  # type: ignore[arg-type]
    assert caught.value.message == (
        "a worker is named by its crank.yaml, its folder or its name, got 3"
    )


def test_an_unknown_installed_worker_name_lists_the_installed_ones(
    crank_worker: WorkerRunner,
) -> None:
    with pytest.raises(WorkerError) as caught:
        crank_worker("crank-no-such-worker")
    assert caught.value.message == "no installed worker named 'crank-no-such-worker'"
    assert caught.value.hint is not None and caught.value.hint.startswith("installed workers: ")


def test_the_fixture_in_a_users_suite(pytester: pytest.Pytester, greeter: Path) -> None:
    pytester.makepyfile(
        textwrap.dedent(
            f"""
            def test_hello(crank_worker):
                worker = crank_worker({str(greeter)!r})
                assert worker.call("greet.hello", {{"name": "Cy"}}) == {{"greeting": "Hello, Cy!"}}
            """
        )
    )
    pytester.runpytest().assert_outcomes(passed=1)
    assert (greeter.parent / "lifecycle.log").read_text() == "setup\nteardown\n"


def test_a_relative_path_is_found_from_the_rootdir_too(pytester: pytest.Pytester) -> None:
    """`pytest` started in tests/ (or by an IDE, in the test's folder) found no worker
    at "src/<pkg>/crank.yaml", a path written from the project's root."""
    package = pytester.path / "src" / "crank_greeter_rooted"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "worker.py").write_text(WORKER)
    (package / "crank.yaml").write_text(
        MANIFEST.replace("crank_greeter_fixture", "crank_greeter_rooted")
    )
    pytester.makeini("[pytest]\n")  # the project's root: pytest's rootdir
    tests = pytester.mkdir("tests")
    (tests / "test_greet.py").write_text(
        textwrap.dedent(
            """
            def test_hello(crank_worker):
                worker = crank_worker("src/crank_greeter_rooted/crank.yaml")
                assert worker.call("greet.hello", {"name": "Di"}) == {"greeting": "Hello, Di!"}

            def test_missing(crank_worker):
                crank_worker("src/nope/crank.yaml")
            """
        )
    )
    monkeypatch = pytest.MonkeyPatch()
    try:
        monkeypatch.chdir(tests)
        result = pytester.runpytest_inprocess("test_greet.py")
    finally:
        monkeypatch.undo()
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [f"*no worker manifest at src/nope/crank.yaml (nor under {pytester.path})*"]
    )


FAILING_SETUP_WORKER = """\
from crank.worker import WorkerApplication, capability


class Greeter(WorkerApplication):
    async def setup(self):
        raise RuntimeError("model file missing")

    @capability("greet.hello")
    def hello(self, data, ctx):
        return {"greeting": "never"}

    @capability("greet.spell")
    def spell(self, data, ctx):
        yield {"letter": "never"}
"""


def test_a_worker_whose_setup_raises_leaves_no_event_loop_open(
    crank_worker: WorkerRunner, greeter: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The loop that ran a failing async setup() stayed open: its ResourceWarning
    surfaced at a later garbage collection, in whichever test happened to run then."""
    (greeter.parent / "worker.py").write_text(FAILING_SETUP_WORKER)
    loops: list[asyncio.AbstractEventLoop] = []
    new_event_loop = asyncio.events.new_event_loop

    def recording_new_event_loop() -> asyncio.AbstractEventLoop:
        loop = new_event_loop()
        loops.append(loop)
        return loop

    monkeypatch.setattr(asyncio.events, "new_event_loop", recording_new_event_loop)
    with pytest.raises(RuntimeError, match="model file missing"):
        crank_worker(greeter)
    assert loops, "setup() ran on a loop of its own"
    assert [loop.is_closed() for loop in loops] == [True] * len(loops)
