"""requirements.lock: resolved by uv from pyproject.toml, read back, kept current, and
turned into a wheelhouse whose every file matches a locked hash."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pytest
from click.testing import CliRunner

from crank.cli import cli
from crank.errors import GenerateError
from crank.generate.lock import (
    LockedRequirement,
    _may_apply,
    lock_changes,
    lock_state,
    lock_status,
    parse_lock,
    platform_tags,
)
from crank.generate.project import load_project

if TYPE_CHECKING:
    from pathlib import Path

SAMPLE = """# crank:lock inputs=0123456789abcdef crank=0.2.0 python>=3.11
# Do not edit: run `crank lock`.
anyio==4.6.0 \\
    --hash=sha256:aa \\
    --hash=sha256:bb
    # via httpx
async-timeout==5.0.1 ; python_full_version < '3.11.3' \\
    --hash=sha256:cc
    # via redis
colorama==0.4.6 ; sys_platform == 'win32' \\
    --hash=sha256:dd
tomli==2.0.1 ; python_version < '3.11' --hash=sha256:ee
"""


def test_a_lock_is_read_with_markers_and_hashes() -> None:
    assert parse_lock(SAMPLE) == [
        LockedRequirement("anyio", "4.6.0", "", ("sha256:aa", "sha256:bb")),
        LockedRequirement(
            "async-timeout", "5.0.1", 'python_full_version < "3.11.3"', ("sha256:cc",)
        ),
        LockedRequirement("colorama", "0.4.6", 'sys_platform == "win32"', ("sha256:dd",)),
        LockedRequirement("tomli", "2.0.1", 'python_version < "3.11"', ("sha256:ee",)),
    ]
    assert parse_lock(SAMPLE)[0].line == "anyio==4.6.0 --hash=sha256:aa --hash=sha256:bb"


@pytest.mark.parametrize(
    "text", ["idna>=3 --hash=sha256:aa\n", "idna==3.10\n", "not a requirement ==\n"]
)
def test_a_lock_without_pins_and_hashes_is_refused(text: str) -> None:
    with pytest.raises(GenerateError, match=r"requirements\.lock: ") as info:
        parse_lock(text)
    assert info.value.hint == "regenerate it with `crank lock`"


def test_markers_decide_what_each_python_needs() -> None:
    anyio, timeout, colorama, tomli = parse_lock(SAMPLE)
    assert _may_apply(anyio, "3.12", "x86_64")
    assert _may_apply(timeout, "3.11", "x86_64")  # 3.11.0 - 3.11.2 need it
    assert not _may_apply(timeout, "3.12", "x86_64")
    assert not _may_apply(colorama, "3.12", "x86_64")  # never on Linux
    assert not _may_apply(tomli, "3.11", "aarch64")


def test_platform_tags_cover_glibc_linux_down_to_manylinux1() -> None:
    tags = platform_tags("aarch64")
    assert tags[0] == "manylinux_2_36_aarch64"
    assert "manylinux_2_17_aarch64" in tags and "manylinux_2_16_aarch64" not in tags
    assert tags[-3:] == ["manylinux2014_aarch64", "manylinux2010_aarch64", "manylinux1_aarch64"]


def locked_line(name: str, version: str) -> str:
    return f"{name}=={version} --hash=sha256:{'0' * 64}\n"


def fake_lock(project_dir: Path, **versions: str) -> Path:
    """A lock pinning every requirement of crank and the image at its newest allowed
    version range's floor or above, plus ``versions``."""
    from packaging.requirements import Requirement

    from crank.generate.lock import IMAGE_REQUIREMENTS, crank_requirements

    lines = ["# crank:lock python>=3.11\n"]
    for text in [*crank_requirements(), *IMAGE_REQUIREMENTS]:
        req = Requirement(text)
        floor = next((s.version for s in req.specifier if s.operator == ">="), "1")
        lines.append(locked_line(req.name, floor))
    lines += [locked_line(name, version) for name, version in versions.items()]
    lock = project_dir / "requirements.lock"
    lock.write_text("".join(lines))
    return lock


def test_lock_status_is_whether_every_requirement_is_met(worker_project: Path) -> None:
    project = load_project(worker_project)
    assert lock_state(project) == ("missing", [])
    lock = fake_lock(worker_project)
    assert lock_state(project) == ("current", [])
    check = CliRunner().invoke(cli, ["lock", "--check", str(worker_project)])
    assert (check.exit_code, check.stdout) == (0, f"{lock}: current\n")
    pyproject = worker_project / "pyproject.toml"
    pyproject.write_text(
        pyproject.read_text().replace("dependencies = [", 'dependencies = ["idna>=3.7",')
    )
    assert lock_state(project) == ("stale", ["idna>=3.7 is not locked"])
    fake_lock(worker_project, idna="3.6")
    assert lock_state(project) == ("stale", ["idna>=3.7 is locked at 3.6"])
    fake_lock(worker_project, idna="3.10")
    assert lock_status(project) == "current"
    # a requirement only Windows has is not the image's business
    pyproject.write_text(
        pyproject.read_text().replace(
            '"idna>=3.7",', '"idna>=3.7", "pywin32>=300; sys_platform == \'win32\'",'
        )
    )
    assert lock_status(project) == "current"
    lock.write_text("idna>=3 --hash=sha256:00\n")
    status, problems = lock_state(project)
    assert status == "stale" and problems[0].startswith(
        "requirements.lock: 'idna>=3' is not pinned"
    )
    check = CliRunner().invoke(cli, ["lock", "--check", str(worker_project)])
    assert (check.exit_code, check.stdout) == (
        1,
        f"{lock}: stale\n  {problems[0]}\n  hint: run `crank lock` and commit requirements.lock\n",
    )
    lock.unlink()
    check = CliRunner().invoke(cli, ["lock", "--check", str(worker_project)])
    assert (check.exit_code, check.stdout) == (
        1,
        f"{lock}: missing\n  hint: run `crank lock` and commit requirements.lock\n",
    )


def test_lock_check_of_a_pyproject_that_is_not_toml_is_a_usage_error(
    worker_project: Path,
) -> None:
    # it said "requirements.lock: stale", exit 1, "run crank lock", which fails the same
    fake_lock(worker_project)
    pyproject = worker_project / "pyproject.toml"
    pyproject.write_text(pyproject.read_text() + "[project\n")
    check = CliRunner().invoke(cli, ["lock", "--check", str(worker_project)])
    assert (check.exit_code, check.stdout) == (2, "")
    assert check.stderr.startswith(f"error: {pyproject}: not valid TOML (")
    assert check.stderr.endswith("  hint: fix the file\n")


def test_lock_check_of_a_lock_that_is_a_directory_is_a_usage_error(
    worker_project: Path,
) -> None:
    # it said "missing", and `crank lock` could not write the lock there either
    lock = worker_project / "requirements.lock"
    lock.mkdir()
    check = CliRunner().invoke(cli, ["lock", "--check", str(worker_project)])
    assert (check.exit_code, check.stdout) == (2, "")
    assert check.stderr == (
        f"error: {lock}: is a directory, not a lock file\n"
        "  hint: move it away, then run `crank lock` to write the lock\n"
    )


@pytest.mark.slow
def test_crank_lock_resolves_the_project_with_hashes(worker_project: Path) -> None:
    """uv against the package index, as a user's `crank lock` does."""
    pyproject = worker_project / "pyproject.toml"
    pyproject.write_text(
        pyproject.read_text().replace("dependencies = [", 'dependencies = ["idna>=3",')
    )
    result = CliRunner().invoke(cli, ["lock", str(worker_project)])
    assert result.exit_code == 0, result.output
    lock = worker_project / "requirements.lock"
    locked = parse_lock(lock.read_text())
    assert result.stdout == f"locked {len(locked)} packages in {lock} (commit it)\n"
    names = {r.name.lower() for r in locked}
    assert {"idna", "dumb-init", "pyyaml", "click", "pluggy"} <= names
    assert "crank-workers" not in names  # crank comes from its own wheel
    assert all(r.hashes and all(h.startswith("sha256:") for h in r.hashes) for r in locked)
    assert lock_status(load_project(worker_project)) == "current"
    first = lock.read_text()
    assert first.startswith("# crank:lock python>=3.11 ")
    assert str(worker_project) not in first and "/tmp" not in first
    # resolving again gives the same file (nothing random or local in it)
    assert CliRunner().invoke(cli, ["lock", str(worker_project)]).exit_code == 0
    assert lock.read_text() == first


def test_lock_changes_name_each_package_once() -> None:
    def pin(name: str, version: str, marker: str = "") -> LockedRequirement:
        return LockedRequirement(name, version, marker, ("sha256:aa",))

    before = [
        pin("numpy", "1.26.4", 'python_version < "3.12"'),
        pin("numpy", "2.0.0", 'python_version >= "3.12"'),
        pin("Redis", "8.2.0"),
        pin("idna", "3.6"),
        pin("click", "8.1.7"),
    ]
    after = [
        pin("numpy", "2.0.0", 'python_version < "3.12"'),
        pin("numpy", "2.0.0", 'python_version >= "3.12"'),
        pin("idna", "3.6"),
        pin("click", "8.1.8"),
        pin("typing_extensions", "4.12.2"),
    ]
    assert lock_changes(before, after) == [
        "~ click 8.1.7 -> 8.1.8",
        "~ numpy 1.26.4, 2.0.0 -> 2.0.0",
        "- redis 8.2.0",
        "+ typing-extensions 4.12.2",
    ]
    assert lock_changes(after, after) == []


def _pinned(lock: Path, name: str) -> tuple[int, ...]:
    [version] = [r.version for r in parse_lock(lock.read_text()) if r.name.lower() == name]
    return tuple(int(part) for part in version.split("."))


def _dotted(version: tuple[int, ...]) -> str:
    return ".".join(map(str, version))


def _lock_with(worker_project: Path, requirement: str | None, *options: str) -> list[str]:
    """Lock the project with ``requirement`` as its one extra dependency (none: without);
    what `crank lock` printed after naming the lock, then its other lines."""
    pyproject = worker_project / "pyproject.toml"
    text = pyproject.read_text()
    start = text.index("dependencies = [") + len("dependencies = [")
    text = text[:start] + text[start:].split(" # lock-test\n", 1)[-1]
    if requirement is not None:
        text = text[:start] + f'"{requirement}", # lock-test\n' + text[start:]
    pyproject.write_text(text)
    result = CliRunner().invoke(cli, ["lock", *options, str(worker_project)])
    assert result.exit_code == 0, result.output
    first, *changes = result.stdout.splitlines()
    lock = worker_project / "requirements.lock"
    head = f"locked {len(parse_lock(lock.read_text()))} packages in {lock}"
    assert first.startswith(head)
    return [first.removeprefix(head), *changes]


@pytest.mark.slow
def test_locking_again_keeps_the_pinned_versions_until_upgrade(worker_project: Path) -> None:
    """uv against the package index: a lock made again changes only what must change,
    and says what it changed."""
    lock = worker_project / "requirements.lock"
    assert _lock_with(worker_project, "idna>=3,<3.7") == [" (commit it)"]  # a first lock
    assert _pinned(lock, "idna") == (3, 6)
    # the range now allows newer versions: the pinned one stays, and is current
    assert _lock_with(worker_project, "idna>=3") == [": no version changed"]
    assert _pinned(lock, "idna") == (3, 6)
    assert lock_status(load_project(worker_project)) == "current"
    # --upgrade resolves afresh: the newest idna allowed
    upgraded = _lock_with(worker_project, "idna>=3", "--upgrade")
    newest = _pinned(lock, "idna")
    assert newest >= (3, 7)
    assert upgraded[0] == " (commit it)"
    assert f"  ~ idna 3.6 -> {_dotted(newest)}" in upgraded[1:]
    # a range the pin leaves is followed, down as well as up
    assert _lock_with(worker_project, "idna>=3,<3.7") == [
        " (commit it)",
        f"  ~ idna {_dotted(newest)} -> 3.6",
    ]
    _lock_with(worker_project, "idna>=3.7")
    assert _pinned(lock, "idna") >= newest
    # a package added, then one nothing needs any more, which leaves the lock
    added = _lock_with(worker_project, "tomli-w>=1")
    tomli_w = _dotted(_pinned(lock, "tomli-w"))
    assert added == [" (commit it)", f"  + tomli-w {tomli_w}"]
    assert _lock_with(worker_project, None) == [" (commit it)", f"  - tomli-w {tomli_w}"]
    assert "tomli-w" not in {r.name.lower() for r in parse_lock(lock.read_text())}


@pytest.mark.slow
def test_a_lock_that_does_not_parse_is_resolved_afresh(worker_project: Path) -> None:
    lock = worker_project / "requirements.lock"
    lock.write_text("this is not a lock ==\n")
    result = CliRunner().invoke(cli, ["lock", str(worker_project)])
    assert result.exit_code == 0, result.output
    assert lock_status(load_project(worker_project)) == "current"


def test_check_and_upgrade_together_are_a_usage_error(worker_project: Path) -> None:
    result = CliRunner().invoke(cli, ["lock", "--check", "--upgrade", str(worker_project)])
    assert result.exit_code == 2
    assert result.stderr == (
        "error: --check and --upgrade cannot be used together: --check only reads the lock\n"
        "  hint: run `crank lock --upgrade`, then `crank lock --check`\n"
    )


@pytest.mark.slow
def test_an_unresolvable_dependency_is_a_clear_error(worker_project: Path) -> None:
    pyproject = worker_project / "pyproject.toml"
    pyproject.write_text(
        pyproject.read_text().replace(
            "dependencies = [", 'dependencies = ["crank-no-such-package-xyz>=1",'
        )
    )
    result = CliRunner().invoke(cli, ["lock", str(worker_project)])
    assert result.exit_code == 2
    assert result.stderr.startswith(f"error: locking {pyproject} failed: ")
    assert "crank-no-such-package-xyz" in result.stderr
    assert result.stderr.rstrip().endswith(
        "hint: check that its dependencies resolve; uv reads the package index "
        "(UV_INDEX_URL / UV_DEFAULT_INDEX name a mirror)"
    )
    assert not (worker_project / "requirements.lock").exists()


@pytest.mark.parametrize(
    ("gpu", "locked", "found"),
    [
        ("required", ["onnxruntime"], True),
        ("required", ["onnxruntime_gpu", "onnxruntime"], False),  # the GPU build is there
        ("required", ["onnxruntime-gpu"], False),
        ("optional", ["onnxruntime"], False),  # a CPU image: the CPU build is right
    ],
)
def test_a_gpu_worker_that_locks_the_cpu_build_of_onnxruntime_is_named(
    worker_project: Path, gpu: str, locked: list[str], found: bool
) -> None:
    # the CUDA image would run the model on the CPU, the GPU it was given unused
    manifest = worker_project / "src" / "text_echo" / "crank.yaml"
    manifest.write_text(manifest.read_text().replace("gpu: none", f"gpu: {gpu}"))
    assert CliRunner().invoke(cli, ["check", str(worker_project), "--fix"]).exit_code == 0
    lock = worker_project / "requirements.lock"
    lock.write_text("".join(f"{name}==1.20.0 --hash=sha256:{'ab' * 32}\n" for name in locked))
    result = CliRunner().invoke(cli, ["check", str(worker_project), "--format", "json"])
    findings = json.loads(result.stdout)["projects"][0]["findings"]
    named = [f for f in findings if "the CPU build" in f["message"]]
    assert bool(named) is found
    if found:
        assert result.exit_code == 1
        assert named[0]["file"] == "requirements.lock"
        assert named[0]["message"] == (
            "the worker requires a GPU (worker.resources.gpu: required), but the lock holds "
            "onnxruntime, the CPU build: in the CUDA image the model would run on the CPU and "
            "the GPU sit unused; depend on onnxruntime-gpu instead of onnxruntime in "
            "pyproject.toml, then run `crank lock`"
        )
