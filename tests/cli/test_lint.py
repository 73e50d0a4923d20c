"""``crank lint`` and ``crank schema`` through click's CliRunner, exact output."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from crank.cli import cli
from crank.manifest.validate import manifest_schema
from crank.plugins import PluginLoadWarning

from ..permissions import crank_unprivileged

REPO = Path(__file__).resolve().parents[2]

CLEAN = """\
# crank-lint: disable=CRK108
apiVersion: crank.dev/v1
kind: Worker
metadata:
  name: demo
  version: 1.0.0
worker:
  entrypoint: demo_pkg.worker:Demo
capabilities:
  - id: demo.echo
    version: 1.0.0
    input: {type: object}
    output: {type: object}
"""

WRONG_TYPE = CLEAN.replace("  version: 1.0.0\nworker", "  version: 1.0.0\nworker").replace(
    "    version: 1.0.0\n    input", "    version: 1.0.0\n    timeout_s: soon\n    input"
)


def lint(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> Result:
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(tmp_path)
        mp.delenv("GITHUB_ACTIONS", raising=False)
        return CliRunner().invoke(cli, ["lint", *args], env=env)


def write(tmp_path: Path, text: str, name: str = "crank.yaml") -> Path:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def test_clean_manifest(tmp_path: Path) -> None:
    write(tmp_path, CLEAN)
    result = lint(tmp_path, "crank.yaml")
    assert (result.exit_code, result.output) == (0, "1 file checked, no problems found\n")


def test_wrong_type_points_at_the_node(tmp_path: Path) -> None:
    write(tmp_path, WRONG_TYPE)
    result = lint(tmp_path, "crank.yaml")
    assert result.exit_code == 1
    assert result.output == (
        'crank.yaml:12:16 CRK002 expected number, got a string "soon" '
        "[$.capabilities[0].timeout_s]\n"
        "    hint: change the value to a number\n"
        "1 error, 0 warnings in 1 file\n"
    )


def test_a_value_yaml_reads_as_a_number_or_boolean_is_shown_as_written(tmp_path: Path) -> None:
    """``version: 1.10`` is the number 1.1 to YAML and the error code ``NO`` the boolean
    false: the finding said 'got a number 1.1', a value nobody wrote, and 'change the
    value to a string' without saying how."""
    text = CLEAN.replace("version: 1.0.0\n    input", "version: 1.10\n    input")
    write(tmp_path, text + "    errors: [{code: NO}]\n")
    result = lint(tmp_path, "crank.yaml")
    assert result.exit_code == 1
    assert result.output == (
        "crank.yaml:11:14 CRK002 expected string, got a number 1.1 (YAML reads the unquoted "
        "1.10 as a number) [$.capabilities[0].version]\n"
        '    hint: quote it to keep it as written: "1.10"\n'
        "crank.yaml:14:21 CRK002 expected string, got a boolean false (YAML reads the "
        "unquoted NO as a boolean) [$.capabilities[0].errors[0].code]\n"
        '    hint: quote it to keep it as written: "NO"\n'
        "2 errors, 0 warnings in 1 file\n"
    )


def test_a_date_written_as_a_number_is_told_the_date_form(tmp_path: Path) -> None:
    text = CLEAN + "deprecated:\n  - {id: demo.old, replaced_by: [demo.echo], sunset: 20270331}\n"
    write(tmp_path, text)
    result = lint(tmp_path, "crank.yaml")
    assert result.exit_code == 1
    assert result.output.splitlines()[1] == "    hint: write dates as YYYY-MM-DD"


def test_octal_and_base_60_numbers_are_warned_of(tmp_path: Path) -> None:
    """YAML 1.1 reads `max_attempts: 010` as 8 and `timeout_s: 1:30` as 90, silently."""
    text = CLEAN + "    max_attempts: 010\n    timeout_s: 1:30\n    examples: [{input: {n: 07}}]\n"
    write(tmp_path, text)
    result = lint(tmp_path, "--strict", "crank.yaml")
    assert result.exit_code == 1
    assert result.output == (
        "crank.yaml:14:19 CRK001 warning: YAML reads the unquoted 010 as the octal number 8 "
        "[$.capabilities[0].max_attempts]\n"
        '    hint: drop the leading zero for a decimal number, or quote it ("010") for the '
        "text\n"
        "crank.yaml:15:16 CRK001 warning: YAML reads the unquoted 1:30 as the base-60 number "
        "90 [$.capabilities[0].timeout_s]\n"
        '    hint: write 90 for that number, or quote it ("1:30") for the text\n'
        "0 errors, 2 warnings in 1 file\n"
    )


def test_a_long_value_is_quoted_short(tmp_path: Path) -> None:
    """A finding about a 100,000-character value quotes its start and its length, as the
    HTTP API does, rather than printing the value."""
    long = "x" * 100_000
    text = CLEAN.replace(
        "  version: 1.0.0\nworker", f"  version: 1.0.0\n  description: {long}\nworker"
    ).replace(
        "    input: {type: object}",
        "    input: {type: object, properties: {text: {type: string, maxLength: 5}}}\n"
        f"    examples:\n      - input: {{text: {long}}}",
    )
    write(tmp_path, text)
    result = lint(tmp_path, "crank.yaml")
    start = json.dumps("x" * 40)
    assert (result.exit_code, result.output) == (
        1,
        f"crank.yaml:7:16 CRK002 {start}... (100000 characters) is too long "
        "[$.metadata.description]\n"
        f"crank.yaml:15:23 CRK112 example input does not match the input schema: {start}... "
        "(100000 characters) is too long [$.capabilities[0].examples[0].input.text]\n"
        "    hint: fix the example, or the capability's input schema\n"
        "2 errors, 0 warnings in 1 file\n",
    )


def _parse_text(output: str) -> list[tuple[Any, ...]]:
    rows = []
    for line in output.splitlines():
        m = re.match(r"^(\S+):(\d+):(\d+) (\w+) (?:(warning|info): )?(.*) \[(\$.*)\]$", line)
        if m:
            file, ln, col, rule, sev, message, path = m.groups()
            rows.append((file, int(ln), int(col), rule, sev or "error", message, path))
    return rows


def _parse_github(output: str) -> list[tuple[Any, ...]]:
    rows = []
    level = {"error": "error", "warning": "warning", "notice": "info"}
    for line in output.splitlines():
        m = re.match(r"^::(\w+) file=([^,]+),line=(\d+),col=(\d+),title=(\w+)::(.*)$", line)
        if m:
            sev, file, ln, col, rule, data = m.groups()
            first = data.replace("%25", "%").split("%0A")[0]
            mm = re.match(r"^(.*) \[(\$.*)\]$", first)
            assert mm, first
            rows.append((file, int(ln), int(col), rule, level[sev], mm.group(1), mm.group(2)))
    return rows


def _parse_json(output: str) -> list[tuple[Any, ...]]:
    return [
        (f["file"], f["line"], f["col"], f["rule"], f["severity"], f["message"], f["json_path"])
        for f in json.loads(output)["findings"]
    ]


def test_text_json_and_github_carry_the_same_findings(tmp_path: Path) -> None:
    text = WRONG_TYPE + (
        "deprecated:\n"
        "  - id: demo.old\n"
        "    replaced_by: [demo.echo, demo.gone]\n"
        "    sunset: 2026-12-01\n"
    )
    write(tmp_path, text)
    write(tmp_path, CLEAN.replace("# crank-lint: disable=CRK108\n", ""), "sub/second.crank.yaml")
    outputs = {
        fmt: lint(tmp_path, ".", "--format", fmt, "--today", "2026-11-22")
        for fmt in ("text", "json", "github")
    }
    assert {r.exit_code for r in outputs.values()} == {1}
    text_rows = _parse_text(outputs["text"].output)
    assert len(text_rows) == 5
    assert {r[4] for r in text_rows} == {"error", "warning", "info"}
    assert _parse_json(outputs["json"].output) == text_rows
    assert _parse_github(outputs["github"].output) == text_rows
    summary = json.loads(outputs["json"].output)["summary"]
    assert summary == {"files": 2, "errors": 3, "warnings": 1, "notes": 1}
    assert outputs["text"].output.endswith("3 errors, 1 warning, 1 note in 2 files\n")


def test_github_format_is_chosen_on_github_actions(tmp_path: Path) -> None:
    write(tmp_path, WRONG_TYPE)
    result = lint(tmp_path, "crank.yaml", env={"GITHUB_ACTIONS": "true"})
    assert result.exit_code == 1
    assert result.output == (
        "::error file=crank.yaml,line=12,col=16,title=CRK002::expected number, got a string "
        '"soon" [$.capabilities[0].timeout_s]%0Ahint: change the value to a number\n'
        "1 error, 0 warnings in 1 file\n"
    )
    # an explicit --format wins
    result = lint(tmp_path, "crank.yaml", "--format", "text", env={"GITHUB_ACTIONS": "true"})
    assert result.output.startswith("crank.yaml:12:16 CRK002 ")


def test_warnings_alone_pass_unless_strict(tmp_path: Path) -> None:
    write(
        tmp_path,
        CLEAN.replace(
            "    output: {type: object}\n",
            "    output: {type: object}\n  - id: demo.new\n"
            "    version: 1.0.0\n    input: {type: object}\n    output: {type: object}\n",
        )
        + "deprecated:\n  - {id: demo.old, replaced_by: [demo.new], sunset: 2026-12-01}\n",
    )
    result = lint(tmp_path, "--today", "2026-11-22")
    assert result.exit_code == 0
    assert result.output == (
        "crank.yaml:19:53 CRK106 warning: 'demo.old' reaches its sunset in 9 days (2026-12-01) "
        "[$.deprecated[0].sunset]\n"
        "    hint: make sure clients have migrated, or move the sunset\n"
        "0 errors, 1 warning in 1 file\n"
    )
    assert lint(tmp_path, "--today", "2026-11-22", "--strict").exit_code == 1
    assert lint(tmp_path, "--today", "2026-12-02").exit_code == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["missing.yaml"],
            "error: missing.yaml: no such file or directory\n"
            "  hint: check the path; crank lint takes manifest files and directories\n",
        ),
        (
            ["empty"],
            "error: empty: no crank.yaml or *.crank.yaml found in this directory\n"
            "  hint: pass a manifest file, or a directory that contains one\n",
        ),
        (
            ["--today", "tomorrow", "crank.yaml"],
            "error: --today 'tomorrow' is not a YYYY-MM-DD date\n  hint: e.g. --today 2026-11-22\n",
        ),
    ],
)
def test_usage_errors(tmp_path: Path, args: list[str], message: str) -> None:
    write(tmp_path, CLEAN)
    (tmp_path / "empty").mkdir()
    result = lint(tmp_path, *args)
    assert (result.exit_code, result.stdout, result.stderr) == (2, "", message)


def test_unknown_format_is_a_usage_error(tmp_path: Path) -> None:
    result = lint(tmp_path, "--format", "xml")
    assert result.exit_code == 2
    assert (
        "Invalid value for '--format': 'xml' is not one of 'text', 'json', 'github'."
        in result.stderr
    )


def test_schema_command_prints_the_shipped_schema() -> None:
    result = CliRunner().invoke(cli, ["schema"])
    assert result.exit_code == 0
    assert json.loads(result.output) == manifest_schema()
    assert CliRunner().invoke(cli, ["schema", "--version", "v1"]).output == result.output
    bad = CliRunner().invoke(cli, ["schema", "--version", "v9"])
    assert bad.exit_code == 2


def test_main_maps_errors_to_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from crank.cli import main

    assert main(["lint", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {tmp_path / 'missing'}: no such file or directory\n")
    write(tmp_path, WRONG_TYPE)
    assert main(["lint", str(tmp_path)]) == 1
    with pytest.raises(SystemExit) as info:
        main(["lint", "--bogus"])
    assert info.value.code == 2
    err = capsys.readouterr().err  # click words it "No such option: --bogus" before 8.4
    assert "No such option" in err and "--bogus" in err


def test_a_disable_comment_naming_the_rule_of_a_blocked_plugin_says_it_is_blocked(
    tmp_path: Path, test_plugins: Any, plugins_on_path: Any
) -> None:
    """With crank's testing layer blocked, `disable=CRK116` was a warning that the rule
    did not exist (failing --strict), whose hint said to install a plugin."""
    plugins_on_path(test_plugins.good)
    write(tmp_path, CLEAN.replace("disable=CRK108", "disable=CRK108,CRK116,TST001"))
    blocked = {"CRANK_DISABLE_PLUGINS": "crank.testing.lint_rules,testplugin-good"}
    with pytest.warns(PluginLoadWarning, match="'crank.testing.lint_rules' is blocked"):
        result = lint(tmp_path, "--strict", "crank.yaml", env=blocked)
    assert result.exit_code == 1, result.output
    assert result.stdout.splitlines() == [
        "crank.yaml:1:30 CRK001 info: `crank-lint: disable=` names CRK116, which is not run: its "
        "plugin 'crank.testing.lint_rules' is blocked by CRANK_DISABLE_PLUGINS [$]",
        "    hint: nothing to fix in the manifest; to run CRK116, take crank.testing.lint_rules "
        "out of CRANK_DISABLE_PLUGINS",
        # a third party's rules are not known without importing it
        "crank.yaml:1:37 CRK001 warning: `crank-lint: disable=` names TST001, which is not the id "
        "of any lint rule [$]",
        "    hint: fix the id (each finding of `crank lint` names its rule), install the plugin "
        "that registers the rule, or take it out of CRANK_DISABLE_PLUGINS (which blocks "
        "testplugin-good)",
        "0 errors, 1 warning, 1 note in 1 file",
    ]
    # the note alone fails nothing, even with --strict (the manager, built, warns no more)
    write(tmp_path, CLEAN.replace("disable=CRK108", "disable=CRK108,CRK116"))
    result = lint(tmp_path, "--strict", "crank.yaml", env=blocked)
    assert result.exit_code == 0, result.output


def test_broken_plugin_does_not_stop_lint(
    tmp_path: Path, test_plugins: Any, run_crank: Any
) -> None:
    write(tmp_path, WRONG_TYPE)
    result = run_crank(
        "lint", "crank.yaml", cwd=tmp_path, pythonpath=[test_plugins.good, test_plugins.broken]
    )
    assert result.returncode == 1
    assert result.stdout.splitlines()[0].startswith("crank.yaml:12:16 CRK002 expected number")
    assert result.stderr == (
        "warning: crank plugin 'testplugin-broken' (crank_testplugin_broken) failed to load and "
        "was skipped: RuntimeError: testplugin-broken is broken on purpose\n"
    )


def test_plugin_rules_and_installed_manifests_join_the_lint(
    tmp_path: Path, test_plugins: Any, run_crank: Any
) -> None:
    text = CLEAN.replace("demo.echo", "testplugin.greet").replace(
        "    version: 1.0.0\n    input", "    version: 1.0.0\n    description: TODO\n    input"
    )
    write(tmp_path, text)
    result = run_crank("lint", "crank.yaml", cwd=tmp_path, pythonpath=[test_plugins.good])
    assert result.returncode == 1, result.stderr
    assert result.stdout.splitlines() == [
        "crank.yaml:10:9 CRK102 capability id 'testplugin.greet' is also declared by installed "
        f"worker 'testplugin-good' ({test_plugins.good / 'crank_testplugin_good' / 'crank.yaml'}) "
        "[$.capabilities[0].id]",
        "    hint: capability ids are global; rename one, or uninstall the other worker",
        "crank.yaml:12:18 TST001 warning: description still says TODO "
        "[$.capabilities[0].description]",
        "    hint: describe what the capability does",
        "1 error, 1 warning in 1 file",
    ]
    # the installed plugin's own manifest is clean, its entrypoint checked for real
    own = test_plugins.good / "crank_testplugin_good" / "crank.yaml"
    result = run_crank("lint", str(own), pythonpath=[test_plugins.good])
    assert (result.returncode, result.stdout) == (0, "1 file checked, no problems found\n")


@pytest.mark.slow
def test_pre_commit_hook_from_another_repository(tmp_path: Path) -> None:
    if shutil.which("git") is None:  # pragma: no cover - git is part of the dev setup
        pytest.fail("git is required")
    work = tmp_path / "consumer"
    work.mkdir()
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid"]
    subprocess.run([*git, "init", "-q"], cwd=work, check=True)
    write(work, CLEAN, "good/crank.yaml")
    write(work, WRONG_TYPE, "bad/svc.crank.yaml")
    write(work, "not: a manifest\n", "other.yaml")
    subprocess.run([*git, "add", "."], cwd=work, check=True)
    env = {
        "PRE_COMMIT_HOME": str(tmp_path / "pre-commit-home"),
        "PATH": _path_env(),
        "HOME": str(tmp_path),
        # try-repo commits uncommitted changes of the hook repository into a shadow copy
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.invalid",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.invalid",
    }
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pre_commit",
            "try-repo",
            str(REPO),
            "crank-lint",
            "--all-files",
            "--verbose",
        ],
        cwd=work,
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
        check=False,
    )
    out = result.stdout + result.stderr
    assert result.returncode == 1, out
    assert "bad/svc.crank.yaml:12:16 CRK002 expected number" in out
    assert "good/crank.yaml" not in out.split("hook id: crank-lint")[-1].replace(
        "bad/svc.crank.yaml", ""
    )
    assert "other.yaml" not in out.split("hook id: crank-lint")[-1]


def _path_env() -> str:

    return os.environ.get("PATH", "")


def test_lint_reports_each_manifest_it_cannot_read_and_lints_the_others(
    tmp_path: Path,
) -> None:
    write(tmp_path, CLEAN, "a/crank.yaml")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "crank.yaml").symlink_to("gone.yaml")
    write(tmp_path, "x: 1\n", "c/crank.yaml").chmod(0)
    write(tmp_path, WRONG_TYPE, "d/crank.yaml")
    (tmp_path / "e").mkdir(mode=0)
    done = crank_unprivileged(["lint", "."], cwd=tmp_path)
    assert (done.returncode, done.stderr) == (1, "")
    assert done.stdout.splitlines() == [
        "e:1:1 CRK001 warning: cannot read this folder (Permission denied): manifests in it "
        "were not linted [$]",
        "    hint: make the folder readable by this user, or lint the manifests it holds by path",
        "b/crank.yaml:1:1 CRK001 is a symbolic link to gone.yaml, which does not exist [$]",
        "    hint: point the link at a manifest, or remove it",
        "c/crank.yaml:1:1 CRK001 cannot read: Permission denied [$]",
        "    hint: make the file readable by this user (e.g. chmod a+r), or run as one who can "
        "read it",
        'd/crank.yaml:12:16 CRK002 expected number, got a string "soon" '
        "[$.capabilities[0].timeout_s]",
        "    hint: change the value to a number",
        "3 errors, 1 warning in 4 files",
    ]


def test_lint_names_the_folders_it_could_not_search_when_it_found_nothing(
    tmp_path: Path,
) -> None:
    (tmp_path / "locked").mkdir(mode=0)
    done = crank_unprivileged(["lint", "."], cwd=tmp_path)
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == (
        "error: .: no crank.yaml or *.crank.yaml found in this directory; could not read "
        "locked (Permission denied)\n"
        "  hint: make the folders readable by this user\n"
    )


def test_a_python_file_given_by_mistake_is_named_as_no_manifest(tmp_path: Path) -> None:
    """`crank lint src/demo/worker.py` answered only the YAML parser's "expected
    '<document start>'" with "fix the YAML syntax at this position"."""
    write(tmp_path, '"""A worker."""\n\nfrom typing import Any\n', name="worker.py")
    result = lint(tmp_path, "worker.py")
    assert result.exit_code == 1
    assert result.stdout.splitlines()[:2] == [
        "worker.py:1:3 CRK001 YAML syntax error: expected '<document start>', but found "
        "'<scalar>' [$]",
        "    hint: is this a manifest? a .py file is read as YAML here; give crank.yaml or "
        "*.crank.yaml files (or their folder)",
    ]
