"""``crank routes``, ``invoke``, ``test-worker`` and ``compat`` through click's CliRunner."""

from __future__ import annotations

import json
import subprocess
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from click.testing import CliRunner, Result

from crank.cli import cli
from crank.hookspecs import hookimpl
from crank.plugins import DISABLE_ENV, ENTRY_POINT_GROUP, get_plugin_manager, reset_plugin_manager
from crank.runtime.config import RuntimeConfig

if TYPE_CHECKING:
    from collections.abc import Iterator

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
WORKERS = FIXTURES / "workers"
EMAIL = WORKERS / "crank_fixture_email" / "crank.yaml"
EMAIL_V1 = WORKERS / "crank_fixture_email" / "v1.crank.yaml"
KINDS = WORKERS / "crank_fixture_kinds" / "crank.yaml"
SELFTEST = WORKERS / "crank_fixture_selftest" / "crank.yaml"


@pytest.fixture(autouse=True)
def fixture_workers_importable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(WORKERS))


class _FixturePlugin:
    @hookimpl
    def crank_register_workers(self, register: Any) -> None:
        register(SELFTEST)
        register(KINDS)


@pytest.fixture
def only_fixture_workers(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The installed workers are this test's fixtures, whatever the machine has installed."""
    installed = [ep.name for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)]
    monkeypatch.setenv(DISABLE_ENV, ",".join(installed))
    reset_plugin_manager()
    get_plugin_manager().register(_FixturePlugin(), name="fixture-workers")
    yield
    reset_plugin_manager()


def crank(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args))


# -- routes -------------------------------------------------------------------------


def test_routes_text_lists_live_deprecated_and_legacy_paths() -> None:
    result = crank(
        "routes", "--worker", str(EMAIL), "--worker", str(KINDS), "--today", "2026-12-01"
    )
    assert result.exit_code == 0, result.output
    assert result.stdout == (
        "CAPABILITY            VERSION  WORKER            STATUS      ROUTES TO                 "
        "                            SUNSET      LEGACY ROUTES\n"
        "email.bill_detection  1.0.0    email-classifier  active      -                         "
        "                            -           -\n"
        "email.classification  -        email-classifier  deprecated  email.spam_detection, "
        "email.bill_detection (by type)  2027-03-31  /classify\n"
        "email.spam_detection  1.0.0    email-classifier  active      -                         "
        "                            -           -\n"
        "text.letters          1.0.0    text-kinds        active      -                         "
        "                            -           -\n"
        "text.reverse          1.0.0    text-kinds        active      -                         "
        "                            -           -\n"
        "text.slow             1.0.0    text-kinds        active      -                         "
        "                            -           -\n"
        "text.upper            1.0.0    text-kinds        active      -                         "
        "                            -           -\n"
        "text.words            1.0.0    text-kinds        active      -                         "
        "                            -           -\n"
        "7 live, 1 deprecated\n"
    )


def test_one_worker_named_twice_routes_and_invokes_as_one() -> None:
    """By its crank.yaml and by its folder: it was refused as "capability 'text.letters'
    is declared by two workers", naming the same worker and file twice."""
    twice = ("--worker", str(KINDS), "--worker", str(KINDS.parent))
    routes = crank("routes", *twice, "--format", "json")
    assert routes.exit_code == 0, routes.output
    once = crank("routes", "--worker", str(KINDS), "--format", "json")
    assert routes.stdout == once.stdout
    called = crank("invoke", "text.upper", *twice, "--input", '{"text": "hi"}')
    assert (called.exit_code, json.loads(called.stdout)["upper"]) == (0, "HI")


def test_routes_json_and_gone_status() -> None:
    result = crank("routes", "--worker", str(EMAIL), "--format", "json", "--today", "2027-04-01")
    assert result.exit_code == 0
    doc = json.loads(result.stdout)
    assert doc["legacy_routes"] == {"/classify": "email.classification"}
    assert [(r["capability"], r["status"]) for r in doc["routes"]] == [
        ("email.bill_detection", "active"),
        ("email.classification", "gone"),
        ("email.spam_detection", "active"),
    ]


def test_routes_of_the_installed_workers(only_fixture_workers: None) -> None:
    result = crank("routes")
    assert result.exit_code == 0
    assert result.stdout.splitlines()[1].split() == [
        "math.double",
        "1.0.0",
        "doubler",
        "active",
        "-",
        "-",
        "-",
    ]
    assert result.stdout.splitlines()[-1] == "6 live, 0 deprecated"


def test_routes_conflicting_workers_is_a_clear_error(tmp_path: Path) -> None:
    copy = tmp_path / "crank.yaml"  # another file declaring the same capabilities
    copy.write_text(EMAIL.read_text())
    result = crank("routes", "--worker", str(EMAIL), "--worker", str(copy))
    assert result.exit_code == 2  # the manifests cannot be used together
    assert result.stderr == (
        f"error: capability 'email.spam_detection' is declared by two workers: email-classifier "
        f"({EMAIL}) and email-classifier ({copy})\n"
        "  hint: keep email.spam_detection in one manifest; give the other a new id\n"
    )


def test_routes_missing_manifest_is_a_usage_error(tmp_path: Path) -> None:
    result = crank("routes", "--worker", "nowhere/crank.yaml")
    assert result.exit_code == 2
    assert result.stderr == (
        "error: nowhere/crank.yaml: no such manifest file\n"
        "  hint: give the path of a crank.yaml, of the folder holding it, or of the worker "
        "project (its pyproject.toml's folder)\n"
    )
    empty = crank("invoke", "text.upper", "--worker", str(tmp_path), "--input", "{}")
    assert empty.exit_code == 2
    assert empty.stderr.startswith(f"error: {tmp_path}: no crank.yaml in the folder\n")


_WORKER_PATH_HINT = (
    "  hint: give the path of a crank.yaml, of the folder holding it, or of the worker "
    "project (its pyproject.toml's folder)\n"
)


def test_test_worker_says_why_a_path_holds_no_manifest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An existing empty folder was taken for a worker's name ("no installed worker is
    named"), and a symbolic link loop for a missing file."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "emptydir").mkdir()
    (tmp_path / "loop.yaml").symlink_to("loop.yaml")
    (tmp_path / "dangling.yaml").symlink_to("nowhere.yaml")
    for name, why in (
        ("emptydir", "no crank.yaml in the folder"),
        ("loop.yaml", "a symbolic link loop (ELOOP): its links never lead to a file"),
        ("dangling.yaml", "a symbolic link to nowhere.yaml, which does not exist"),
        ("missing.yaml", "no such manifest file"),
    ):
        result = crank("test-worker", name)
        assert (result.exit_code, result.stdout) == (2, ""), name
        assert result.stderr == f"error: {name}: {why}\n{_WORKER_PATH_HINT}"
    looped = crank("routes", "--worker", "loop.yaml")
    assert looped.stderr.startswith("error: loop.yaml: a symbolic link loop (ELOOP)")


def test_a_worker_folder_is_taken_as_crank_run_takes_it() -> None:
    """``--worker`` names a crank.yaml or the folder holding it, as for ``crank run``."""
    by_file = crank("routes", "--format", "json", "--worker", str(KINDS))
    by_folder = crank("routes", "--format", "json", "--worker", str(KINDS.parent))
    assert by_folder.exit_code == 0, by_folder.stderr
    assert by_folder.stdout == by_file.stdout
    called = crank(
        "invoke", "text.upper", "--worker", str(KINDS.parent), "--input", '{"text": "ok"}'
    )
    assert (called.exit_code, called.stderr) == (0, "")
    assert json.loads(called.stdout)["upper"] == "OK"


# -- invoke -------------------------------------------------------------------------


def test_invoke_prints_the_json_result() -> None:
    result = crank("invoke", "text.upper@1", "--worker", str(KINDS), "--input", '{"text": "hé"}')
    assert (result.exit_code, result.stderr) == (0, "")
    assert result.stdout == '{\n  "upper": "HÉ",\n  "attempt": 1\n}\n'


def test_invoke_streaming_prints_the_events(tmp_path: Path) -> None:
    payload = tmp_path / "in.json"
    payload.write_text('{"text": "a b"}')
    result = crank("invoke", "text.words", "--worker", str(KINDS), "--input", f"@{payload}")
    assert result.exit_code == 0
    assert json.loads(result.stdout) == [{"index": 0, "word": "a"}, {"index": 1, "word": "b"}]


def test_invoke_invalid_input_exits_2_with_every_path() -> None:
    result = crank(
        "invoke", "text.upper", "--worker", str(KINDS), "--input", '{"text": "", "x": 1}'
    )
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr == (
        "error: input for text.upper is invalid: $: Additional properties are not allowed "
        '("x" was unexpected)\n'
        '  $: Additional properties are not allowed ("x" was unexpected)\n'
        '  $.text: "" should be non-empty\n'
        "  hint: match the capability's input schema (GET /v1/capabilities shows it)\n"
    )


def test_invoke_declared_error_exits_4() -> None:
    result = crank("invoke", "text.upper", "--worker", str(KINDS), "--input", '{"text": "boom"}')
    assert result.exit_code == 4
    assert result.stderr == (
        "error: text.upper failed with UPSTREAM_DOWN (retryable): upstream answered 503\n"
        "  hint: a declared error of the capability: check the input, or retry if retryable\n"
    )


@pytest.mark.parametrize(
    ("capability", "error", "frames"),
    [
        ("text.upper", "RuntimeError: the model file is corrupt", ["in upper", "in _crash"]),
        ("text.reverse", "KeyError: 'lookup'", ["in reverse"]),  # async: from the event loop
    ],
)
def test_invoke_a_crashing_handler_exits_4_with_the_workers_own_frames(
    capability: str, error: str, frames: list[str]
) -> None:
    result = crank("invoke", capability, "--worker", str(KINDS), "--input", '{"text": "crash"}')
    assert result.exit_code == 4
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert lines[0] == f"error: {capability} raised {error}"
    worker_py = str(KINDS.parent / "worker.py")
    located = [line for line in lines if line.startswith("  File ")]
    assert [line.split(", ")[-1] for line in located] == frames
    assert all(line.startswith(f'  File "{worker_py}", line ') for line in located)
    assert lines[-1] == (
        "  hint: an exception the capability does not declare is a bug in the worker "
        "'text-kinds'; the frames above are its own"
    )
    assert "Traceback" not in result.stderr
    assert "click" not in result.stderr


def test_invoke_invalid_output_is_the_workers_failure_exit_4() -> None:
    result = crank(
        "invoke", "text.upper", "--worker", str(KINDS), "--input", '{"text": "wrong-output"}'
    )
    assert result.exit_code == 4
    assert result.stderr.splitlines()[:2] == [
        "error: worker 'text-kinds' returned invalid output for text.upper: $.upper: 42 is not "
        'of type "string"',
        '  $.upper: 42 is not of type "string"',
    ]


def test_invoke_crash_through_the_console_script_prints_no_traceback() -> None:
    """The reported failure: a real ``crank`` process printed click's and crank's frames."""
    import os
    import sys

    env = {**os.environ, "PYTHONPATH": str(WORKERS)}
    code = "import sys; from crank.cli import main; sys.exit(main())"
    argv = [sys.executable, "-c", code, "invoke", "text.upper", "--worker", str(KINDS)]
    done = subprocess.run(
        [*argv, "--input", '{"text": "crash"}'],
        capture_output=True, text=True, env=env, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 4, done.stderr
    assert done.stderr.startswith(
        "error: text.upper raised RuntimeError: the model file is corrupt\n"
    )
    assert "Traceback" not in done.stderr
    assert "site-packages" not in done.stderr
    assert "/crank/" not in done.stderr.replace(str(WORKERS), "")


def test_invoke_unknown_capability_exits_2() -> None:
    result = crank("invoke", "text.nope", "--worker", str(KINDS), "--input", "{}")
    assert result.exit_code == 2
    assert result.stderr.startswith("error: no installed worker serves capability 'text.nope'\n")


def test_invoke_shim_without_the_selector_value_exits_2() -> None:
    result = crank(
        "invoke",
        "email.classification",
        "--worker",
        str(EMAIL),
        "--today",
        "2026-12-01",
        "--input",
        '{"text": "x", "type": "phishing"}',
    )
    assert result.exit_code == 2
    assert result.stderr == (
        "error: capability 'email.classification': type = 'phishing' is not one of 'spam', "
        "'bill'\n"
        "  $.type: 'phishing' is not one of 'spam', 'bill'\n"
        "  hint: send 'type' as one of 'spam', 'bill', or call email.spam_detection, "
        "email.bill_detection directly\n"
    )


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (
            "{oops",
            "error: --input is not valid JSON: Expecting property name enclosed in double "
            "quotes at line 1 column 2\n",
        ),
        ("[1, 2]", "error: --input must be a JSON object, got list\n"),
        (
            "@/nonexistent/in.json",
            "error: cannot read the input file /nonexistent/in.json: No such file or directory\n",
        ),
        (
            '{"text": NaN}',
            "error: --input is not valid JSON: NaN is not a JSON value (RFC 8259 has no NaN "
            "or Infinity)\n",
        ),
        (
            '{"text": "a",\n "text": "b"}',
            'error: --input is not valid JSON: duplicate key "text" (first at line 1 column 2) '
            "at line 2 column 2\n",
        ),
        (
            '{"text": ["a", "\\udfff"]}',
            "error: --input holds a lone UTF-16 surrogate ('\\udfff') at $.text[1]: it is not "
            "a Unicode character\n",
        ),
        ("@latin1", "error: the input file {tmp}/in.json is not UTF-8 text: byte 10 is b'\\xe9'\n"),
        ("@", "error: --input @ names no file\n"),
        ("", "error: --input is empty: it needs a JSON object\n"),
        ("@empty", "error: the input file {tmp}/in.json is empty: it needs a JSON object\n"),
        pytest.param(
            "[" * 100_000, "error: --input is not valid JSON: it nests too deeply\n", id="deep"
        ),
    ],
)
def test_invoke_unusable_input_exits_2(value: str, message: str, tmp_path: Path) -> None:
    if value == "@latin1":
        (tmp_path / "in.json").write_bytes('{"text": "\xe9"}'.encode("latin-1"))
        value, message = f"@{tmp_path}/in.json", message.format(tmp=tmp_path)
    if value == "@empty":
        (tmp_path / "in.json").write_text(" \n")
        value, message = f"@{tmp_path}/in.json", message.format(tmp=tmp_path)
    result = crank("invoke", "text.upper", "--worker", str(KINDS), "--input", value)
    assert result.exit_code == 2
    assert result.stderr.startswith(message)
    assert "\n  hint: " in result.stderr


#: what --input @FILE reads at most: the HTTP API's default body limit
MAX_INPUT_BYTES = 1_048_576


def test_invoke_reads_an_input_file_of_up_to_1_mib(tmp_path: Path) -> None:
    at_limit = tmp_path / "in.json"
    head = '{"text": "'
    at_limit.write_text(head + "a" * (MAX_INPUT_BYTES - len(head) - 2) + '"}')
    assert at_limit.stat().st_size == MAX_INPUT_BYTES
    result = crank("invoke", "text.upper", "--worker", str(KINDS), "--input", f"@{at_limit}")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["upper"] == "A" * (MAX_INPUT_BYTES - len(head) - 2)


@pytest.mark.parametrize("endless", [False, True], ids=["one-byte-too-many", "dev-zero"])
def test_invoke_refuses_an_input_file_over_1_mib(endless: bool, tmp_path: Path) -> None:
    # /dev/zero was read until a MemoryError: the read stops one byte beyond the limit
    source = Path("/dev/zero") if endless else tmp_path / "in.json"
    if not endless:
        source.write_text('{"text": "' + "a" * (MAX_INPUT_BYTES - 11) + '"}')
        assert source.stat().st_size == MAX_INPUT_BYTES + 1
    result = crank("invoke", "text.upper", "--worker", str(KINDS), "--input", f"@{source}")
    assert (result.exit_code, result.stdout) == (2, "")
    assert result.stderr == (
        f"error: the input file {source} is larger than 1,048,576 bytes (1 MiB), the most "
        "--input takes\n"
        "  hint: pass a smaller JSON object; a call through the HTTP API has the same limit "
        "by default (CRANK_MAX_BODY_BYTES)\n"
    )


def test_the_input_limit_is_the_http_apis_default_body_limit() -> None:
    assert RuntimeConfig().max_body_bytes == MAX_INPUT_BYTES


# -- test-worker --------------------------------------------------------------------


def test_test_worker_by_path_prints_a_summary(monkeypatch: pytest.MonkeyPatch) -> None:
    result = crank("test-worker", str(SELFTEST))
    assert result.exit_code == 0, result.output
    monkeypatch.chdir(SELFTEST.parent.parent)  # its folder's bare name: a path, not a name
    by_folder = crank("test-worker", SELFTEST.parent.name)
    assert (by_folder.exit_code, by_folder.stdout) == (0, result.stdout)
    assert result.stdout == (
        "self-test of doubler 0.3.0\n"
        "  PASS  dependency json module (json)\n"
        "  SKIP  dependency absent helper (crank_fixture_absent_module): optional, Python module "
        "'crank_fixture_absent_module' is not installed\n"
        "        hint: pip install crank-fixture-absent\n"
        "  PASS  math.double: two\n"
        "  PASS  math.double: example 2\n"
        "  PASS  self_test()\n"
        "5 checks: 4 passed, 1 skipped\n"
    )


def test_test_worker_by_installed_name(only_fixture_workers: None) -> None:
    result = crank("test-worker", "doubler", "--format", "json")
    assert result.exit_code == 0
    doc = json.loads(result.stdout)
    assert (doc["worker"], doc["ok"], doc["passed"], doc["skipped"], doc["failed"]) == (
        "doubler",
        True,
        4,
        1,
        0,
    )


def test_test_worker_unknown_name_lists_the_installed(only_fixture_workers: None) -> None:
    result = crank("test-worker", "nope")
    assert result.exit_code == 2
    assert result.stderr == (
        "error: no installed worker is named 'nope'\n"
        "  hint: installed workers: doubler, text-kinds; or give the path of its crank.yaml "
        "(or of its folder)\n"
    )


def test_test_worker_failing_example_exits_1(tmp_path: Path) -> None:
    text = SELFTEST.read_text().replace("output: {result: 4}", "output: {result: 5}")
    (tmp_path / "crank.yaml").write_text(text)
    result = crank("test-worker", str(tmp_path / "crank.yaml"))
    assert result.exit_code == 1
    assert "  FAIL  math.double: two: output $.result is 4, expected 5\n" in result.stdout
    assert result.stdout.endswith("5 checks: 3 passed, 1 failed, 1 skipped\n")


# -- compat: usage and --against ----------------------------------------------------


def test_compat_needs_two_files() -> None:
    result = crank("compat", str(EMAIL))
    assert result.exit_code == 2
    assert result.stderr == (
        "error: compat needs two manifests (OLD NEW), got 1\n"
        "  hint: crank compat old/crank.yaml new/crank.yaml, or crank compat --against GIT_REF "
        "[PATH]\n"
    )


def test_compat_missing_and_invalid_files_are_usage_errors(tmp_path: Path) -> None:
    missing = crank("compat", str(EMAIL), str(tmp_path / "none.yaml"))
    assert missing.exit_code == 2
    assert missing.stderr.startswith(f"error: {tmp_path / 'none.yaml'}: no such manifest file")
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: crank.dev/v1\nkind: Worker\n")
    invalid = crank("compat", str(EMAIL), str(bad))
    assert invalid.exit_code == 2
    assert invalid.stderr.startswith(f"error: {bad}:1:1 ")


def test_compat_dates_beyond_the_calendar_are_usage_errors() -> None:
    # a grace period counted past 9999-12-31 raised OverflowError (a traceback)
    huge = crank("compat", str(EMAIL_V1), str(EMAIL), "--min-grace-days", "3000000")
    assert huge.exit_code == 2
    assert "Invalid value for '--min-grace-days': 3000000 is not in the range 0<=x<=36500." in (
        huge.stderr
    )
    late = crank("compat", str(EMAIL_V1), str(EMAIL), "--today", "9999-12-31")
    assert late.exit_code == 2
    assert late.stderr == (
        "error: --today 9999-12-31 is too far ahead: crank counts grace periods of up to "
        "36,500 days from it, so it takes dates up to 9899-12-31\n"
        "  hint: e.g. --today 2026-11-22\n"
    )
    latest = crank(
        "compat", str(EMAIL_V1), str(EMAIL), "--today", "9899-12-31", "--min-grace-days", "36500"
    )
    assert latest.exit_code in (0, 1), latest.output
    assert latest.exception is None or isinstance(latest.exception, SystemExit)


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    git(tmp_path, "init", "-q", "-b", "main")
    git(tmp_path, "config", "user.email", "dev@example.com")
    git(tmp_path, "config", "user.name", "dev")
    worker = tmp_path / "worker"
    worker.mkdir()
    (worker / "crank.yaml").write_text(EMAIL_V1.read_text())
    git(tmp_path, "add", ".")
    git(tmp_path, "commit", "-q", "-m", "v1")
    return worker


def test_compat_against_a_git_ref(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (repo / "crank.yaml").write_text(EMAIL.read_text())
    monkeypatch.chdir(repo)
    ok = crank("compat", "--against", "HEAD", "--today", "2026-11-22")
    assert ok.exit_code == 0, ok.output
    assert ok.stdout.splitlines()[-1].startswith("compatible: no breaking changes")
    (repo / "crank.yaml").write_text(EMAIL.read_text().split("deprecated:")[0])
    bad = crank("compat", "--against", "HEAD", "crank.yaml", "--today", "2026-11-22")
    assert bad.exit_code == 1
    assert bad.stdout.startswith(
        "HEAD:crank.yaml:9:9 CMP001 capability 'email.classification' (1.3.0) was removed "
        "without a deprecated entry"
    )


def test_compat_against_errors(repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(repo)
    bad_ref = crank("compat", "--against", "no-such-branch")
    assert bad_ref.exit_code == 2
    assert bad_ref.stderr.startswith(
        f"error: git ref 'no-such-branch' does not name a commit in {repo}\n"
    )
    (repo / "new.crank.yaml").write_text(EMAIL.read_text())
    new_file = crank("compat", "--against", "HEAD", "new.crank.yaml")
    assert (new_file.exit_code, new_file.stdout) == (
        0,
        "new.crank.yaml does not exist at HEAD: a new worker, nothing to compare\n",
    )
    two = crank("compat", "--against", "HEAD", "a.yaml", "b.yaml")
    assert two.exit_code == 2
    outside = tmp_path.parent / f"{tmp_path.name}-plain"
    outside.mkdir()
    (outside / "crank.yaml").write_text(EMAIL.read_text())
    no_git = crank("compat", "--against", "HEAD", str(outside / "crank.yaml"))
    assert no_git.exit_code == 2
    assert "is not inside a git work tree" in no_git.stderr


def test_compat_against_finds_the_manifest_of_a_new_worker_project(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``crank new-worker`` puts the manifest at src/PACKAGE/crank.yaml: --against finds
    it there when there is no ./crank.yaml, as ``crank check`` does."""
    package = repo / "src" / "email_classifier"
    package.mkdir(parents=True)
    (repo / "crank.yaml").rename(package / "crank.yaml")
    (repo / "pyproject.toml").write_text("[project]\nname = 'email-classifier'\n")
    git(repo, "add", "-A", ".")
    git(repo, "commit", "-q", "-m", "the layout of crank new-worker")
    (package / "crank.yaml").write_text(EMAIL.read_text().split("deprecated:")[0])
    monkeypatch.chdir(repo)
    result = crank("compat", "--against", "HEAD", "--today", "2026-11-22")
    assert result.exit_code == 1, result.output
    assert result.stdout.startswith(
        "HEAD:src/email_classifier/crank.yaml:9:9 CMP001 capability 'email.classification'"
    )


def test_compat_against_without_a_manifest_says_where_it_looked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = crank("compat", "--against", "HEAD")
    assert (result.exit_code, result.stderr) == (
        2,
        f"error: {tmp_path}: no crank.yaml found (looked for src/*/crank.yaml, */crank.yaml, "
        "crank.yaml)\n"
        "  hint: give the manifest: crank compat --against GIT_REF path/to/crank.yaml\n",
    )


def test_compat_paths_that_are_no_manifest_get_a_hint(tmp_path: Path) -> None:
    hint = "crank compat OLD NEW takes two crank.yaml files (or folders holding one)"
    missing = crank("compat", str(EMAIL), str(tmp_path / "none.yaml"))
    assert (missing.exit_code, missing.stderr) == (
        2,
        f"error: {tmp_path / 'none.yaml'}: no such manifest file\n  hint: check the path; {hint}\n",
    )
    folder = crank("compat", str(tmp_path), str(EMAIL))
    assert (folder.exit_code, folder.stderr) == (
        2,
        f"error: {tmp_path}: a folder without a crank.yaml\n"
        f"  hint: give the path of the manifest in it; {hint}\n",
    )
    # a folder holding a crank.yaml names it, as --worker takes it
    same = crank("compat", str(EMAIL.parent), str(EMAIL), "--today", "2026-11-22")
    assert same.exit_code == 0, same.output
