"""Worker name validation: hostile names are refused and nothing is written anywhere."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from click.testing import CliRunner

from crank.cli import cli
from crank.generate.names import capability_ids, worker_names

from .conftest import tree

if TYPE_CHECKING:
    from pathlib import Path

HOSTILE = [
    ("../x", "looks like a path"),
    ("../../etc/evil", "looks like a path"),
    ("/tmp/abs", "looks like a path"),
    ("a/b", "looks like a path"),
    ("a\\b", "looks like a path"),
    ("..", "looks like a path"),
    (".hidden", "looks like a path"),
    ("~root", "looks like a path"),
    ("1abc", "does not normalise to a Python identifier"),
    ("héllo", "does not normalise to a Python identifier"),
    ("a$b", "does not normalise to a Python identifier"),
    ("-", "does not normalise to a Python identifier"),
    ("class", "is a Python keyword"),
    ("match", "is a Python keyword"),
    ("crank", "is reserved"),
    ("test", "is reserved"),
    ("site", "is reserved"),
    ("builtins", "is reserved"),
    ("json", "is reserved"),
    ("os", "is reserved"),
    ("pytest", "is already taken by an installed module"),
    (" x", "surrounding spaces"),
    ("yes", "reads as a boolean or null in YAML"),
    ("Null", "reads as a boolean or null in YAML"),
    ("off", "reads as a boolean or null in YAML"),
    ("y", "reads as a boolean or null in YAML"),
]


@pytest.mark.parametrize(("name", "reason"), HOSTILE)
def test_hostile_names_are_refused_and_write_nothing(
    tmp_path: Path, name: str, reason: str
) -> None:
    out = tmp_path / "sandbox" / "out"
    out.mkdir(parents=True)
    (tmp_path / "sandbox" / "keep.txt").write_text("untouched")
    before = tree(tmp_path)
    result = CliRunner().invoke(cli, ["new-worker", name, "--no-input", "--output-dir", str(out)])
    assert result.exit_code == 2
    assert result.stdout == ""
    first, hint = result.stderr.splitlines()
    assert first.startswith(f"error: worker name {name!r}")
    assert reason in first
    assert hint.startswith("  hint: ")
    assert tree(tmp_path) == before


def test_cli_error_is_exit_2_with_message_and_hint(tmp_path: Path) -> None:
    import subprocess
    import sys

    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from crank.cli import main; sys.exit(main())",
            "new-worker",
            "../x",
            "--no-input",
            "--output-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: worker name '../x' looks like a path")
    assert "\n  hint: use a plain name" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert list(tmp_path.iterdir()) == []


def test_names_normalise() -> None:
    names = worker_names("Text_Echo")
    assert (names.worker, names.package, names.class_name) == ("text-echo", "text_echo", "TextEcho")


@pytest.mark.parametrize("cap", ["Echo", "echo", "a..b", "a.b-c", "a.1b", ".a.b"])
def test_bad_capability_ids_are_refused(cap: str) -> None:
    from crank.errors import GenerateError

    with pytest.raises(GenerateError, match="not a dotted lower-case id"):
        capability_ids([cap], "pkg")


def test_default_capability_and_dedup() -> None:
    assert capability_ids([], "text_echo") == ("text_echo.echo",)
    assert capability_ids(["a.b", "a.b", "c.d"], "x") == ("a.b", "c.d")


def test_existing_non_empty_target_needs_force(tmp_path: Path) -> None:
    target = tmp_path / "text-echo"
    target.mkdir()
    (target / "NOTES.md").write_text("mine")
    runner = CliRunner()
    args = ["new-worker", "text-echo", "--no-input", "--output-dir", str(tmp_path)]
    refused = runner.invoke(cli, args)
    assert refused.exit_code == 2
    assert refused.stderr == (
        f"error: {target} already exists and is not empty\n"
        "  hint: choose another name or --output-dir, or pass --force to overwrite it\n"
    )
    assert sorted(p.name for p in target.iterdir()) == ["NOTES.md"]
    forced = runner.invoke(cli, [*args, "--force"])
    assert forced.exit_code == 0, forced.output
    assert (target / "NOTES.md").read_text() == "mine"
    assert (target / "src" / "text_echo" / "crank.yaml").is_file()
    assert [p.name for p in tmp_path.iterdir()] == ["text-echo"]


def test_force_never_overwrites_an_edited_file_unless_named(tmp_path: Path) -> None:
    runner = CliRunner()
    args = ["new-worker", "text-echo", "--no-input", "--output-dir", str(tmp_path)]
    assert runner.invoke(cli, args).exit_code == 0
    target = tmp_path / "text-echo"
    worker = target / "src" / "text_echo" / "worker.py"
    manifest = target / "src" / "text_echo" / "crank.yaml"
    worker.write_text(worker.read_text() + "# my change\n")
    manifest.write_text(manifest.read_text().replace("max_workers: 4", "max_workers: 2"))
    (target / "README.md").unlink()
    before = tree(target)

    refused = runner.invoke(cli, [*args, "--force"])
    assert refused.exit_code == 2
    assert refused.stderr == (
        f"error: {target}: 2 file(s) differ from what new-worker would write and were left "
        "alone: src/text_echo/crank.yaml, src/text_echo/worker.py\n"
        "  hint: pass --overwrite FILE for each one to replace (a backup is kept as "
        "FILE.orig), or choose another --output-dir; `crank check --fix` re-renders only the "
        "deployment files\n"
    )
    assert tree(target) == before  # nothing written, not even the missing README
    assert [p.name for p in tmp_path.iterdir()] == ["text-echo"]

    edited = worker.read_text()
    named = runner.invoke(
        cli,
        [
            *args,
            "--force",
            "--overwrite",
            "src/text_echo/worker.py",
            "--overwrite",
            "src/text_echo/crank.yaml",
        ],
    )
    assert named.exit_code == 0, named.output
    assert named.stdout.splitlines()[:3] == [
        f"updated {target}: 1 added, 21 unchanged, 2 overwritten",
        "  overwrote src/text_echo/crank.yaml (backup src/text_echo/crank.yaml.orig)",
        "  overwrote src/text_echo/worker.py (backup src/text_echo/worker.py.orig)",
    ]
    assert (target / "src" / "text_echo" / "worker.py.orig").read_text() == edited
    assert "# my change" not in worker.read_text()
    assert (target / "README.md").is_file()


def test_overwrite_names_only_files_new_worker_writes(tmp_path: Path) -> None:
    args = ["new-worker", "text-echo", "--no-input", "--output-dir", str(tmp_path)]
    assert CliRunner().invoke(cli, args).exit_code == 0
    result = CliRunner().invoke(cli, [*args, "--overwrite", "../../etc/passwd"])
    assert result.exit_code == 2
    assert result.stderr.startswith(
        "error: --overwrite ../../etc/passwd: not a file new-worker writes\n"
    )


def test_overwrite_of_a_misspelt_file_is_refused_in_a_new_folder_too(tmp_path: Path) -> None:
    # nothing to replace there, but the name is no less wrong: it was ignored in silence
    args = ["new-worker", "text-echo", "--no-input", "--output-dir", str(tmp_path)]
    result = CliRunner().invoke(cli, [*args, "--overwrite", "src/text_echo/wroker.py"])
    assert (result.exit_code, result.stdout) == (2, "")
    assert result.stderr.startswith(
        "error: --overwrite src/text_echo/wroker.py: not a file new-worker writes\n"
    )
    assert list(tmp_path.iterdir()) == []  # nothing written, the staging folder removed
    named = CliRunner().invoke(cli, [*args, "--overwrite", "src/text_echo/worker.py"])
    assert named.exit_code == 0, named.output


@pytest.mark.parametrize("empty", ["", "  "])
def test_an_empty_capability_is_refused(tmp_path: Path, empty: str) -> None:
    """An empty --capability was dropped, and the default capability scaffolded instead."""
    args = ["new-worker", "text-echo", "--no-input", "--output-dir", str(tmp_path)]
    result = CliRunner().invoke(cli, [*args, "--capability", "text.echo", "--capability", empty])
    assert (result.exit_code, result.stdout) == (2, "")
    assert result.stderr == (
        f"error: --capability {empty!r} is empty: it needs a capability id\n"
        "  hint: name one such as text.echo, or leave --capability out for <package>.echo\n"
    )
    assert list(tmp_path.iterdir()) == []


def test_an_invalid_capability_is_refused(tmp_path: Path) -> None:
    args = ["new-worker", "text-echo", "--no-input", "--output-dir", str(tmp_path)]
    result = CliRunner().invoke(cli, [*args, "--capability", "Text Echo"])
    assert (result.exit_code, result.stdout) == (2, "")
    assert result.stderr == (
        "error: capability id 'Text Echo' is not a dotted lower-case id\n"
        "  hint: use ids such as text.echo or email.spam_detection\n"
    )
    assert list(tmp_path.iterdir()) == []


def test_empty_existing_target_is_used(tmp_path: Path) -> None:
    (tmp_path / "text-echo").mkdir()
    result = CliRunner().invoke(
        cli, ["new-worker", "text-echo", "--no-input", "--output-dir", str(tmp_path)]
    )
    assert result.exit_code == 0, result.output
    assert (tmp_path / "text-echo" / "Dockerfile").is_file()


def test_missing_output_dir_is_refused(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli, ["new-worker", "ok-name", "--no-input", "--output-dir", str(tmp_path / "nope")]
    )
    assert result.exit_code == 2
    assert result.stderr.startswith(f"error: output folder {tmp_path / 'nope'} does not exist")
    assert list(tmp_path.iterdir()) == []


def test_unwritable_output_dir_is_a_clear_error() -> None:
    # /proc accepts no new folders, not even from root
    result = CliRunner().invoke(
        cli, ["new-worker", "ok-name", "--no-input", "--output-dir", "/proc"]
    )
    assert result.exit_code == 2
    assert result.stderr == (
        "error: cannot write the worker into /proc: No such file or directory\n"
        "  hint: choose a writable --output-dir\n"
    )


def test_a_manifest_naming_its_worker_with_a_yaml_word_is_refused(worker_project: Path) -> None:
    """Quoted in crank.yaml it is a string, but the Deployment names the worker unquoted:
    `name: off` is the boolean false to Kubernetes."""
    manifest = worker_project / "src" / "text_echo" / "crank.yaml"
    manifest.write_text(manifest.read_text().replace("name: text-echo", 'name: "off"'))
    result = CliRunner().invoke(cli, ["check", str(worker_project)])
    assert result.exit_code == 2, result.output
    assert 'CRK002 a string "off" does not have the expected form' in result.stderr
    assert "hint: it must match the pattern ^(?!(y|n|yes|no|on|off|true|false|null)$)" in (
        result.stderr
    )
