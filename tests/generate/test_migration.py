"""Migration checklists: the template's sections, `migration new` pre-filled from compat,
drift and sunsets, and `migration status` across checklists."""

from __future__ import annotations

import copy
import json
import subprocess
from typing import TYPE_CHECKING, Any

import yaml
from click.testing import CliRunner

from crank.cli import cli
from crank.generate.migration import checklist_template

from ..permissions import crank_unprivileged

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    import pytest

SECTIONS = [
    "code_changes",
    "deployment_artifacts",
    "infrastructure",
    "migration_strategy",
    "validation",
    "success_criteria",
    "rollback_plan",
]


def test_template_has_every_section_and_all_items_open() -> None:
    doc = yaml.safe_load(checklist_template().read_text())
    assert list(doc["sections"]) == SECTIONS
    for section in doc["sections"].values():
        assert section["items"]
        assert all(item["done"] is False for item in section["items"])


def _split_project(worker_project: Path) -> tuple[Path, Path]:
    """Old manifest: one capability text.echo. New: split into text.upper and text.lower."""
    manifest = worker_project / "src" / "text_echo" / "crank.yaml"
    new = yaml.safe_load(manifest.read_text())
    cap = new["capabilities"][0]
    old = json.loads(json.dumps(new))
    old["capabilities"][0]["id"] = "text.echo"
    old_path = worker_project.parent / "old-crank.yaml"
    old_path.write_text(yaml.safe_dump(old, sort_keys=False))
    new["capabilities"] = [dict(cap, id="text.upper"), dict(cap, id="text.lower")]
    new["deprecated"] = [
        {
            "id": "text.echo",
            "replaced_by": ["text.upper", "text.lower"],
            "shim": {
                "select_by": "case",
                "default": "upper",
                "map": {"upper": "text.upper", "lower": "text.lower"},
            },
            "sunset": "2027-06-30",
        }
    ]
    manifest.write_text(yaml.safe_dump(new, sort_keys=False))
    return manifest, old_path


def test_migration_new_refuses_a_date_too_far_ahead(worker_project: Path, tmp_path: Path) -> None:
    manifest, old = _split_project(worker_project)
    out = tmp_path / "deployment"
    result = CliRunner().invoke(
        cli,
        [
            *("migration", "new", "text-echo", "--from", str(old), "--manifest", str(manifest)),
            *("--date", "9999-12-31", "--output-dir", str(out)),
        ],
    )
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error: --date 9999-12-31 is too far ahead: ")
    assert not out.exists()


def test_migration_new_is_prefilled(worker_project: Path, tmp_path: Path) -> None:
    manifest, old = _split_project(worker_project)
    out = tmp_path / "deployment"
    result = CliRunner().invoke(
        cli,
        [
            "migration",
            "new",
            "text-echo",
            "--from",
            str(old),
            "--manifest",
            str(manifest),
            "--date",
            "2026-11-22",
            "--output-dir",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    path = out / "migration-text-echo-2026-11-22.yml"
    assert result.stdout == (
        f"created {path}\n"
        "  added 2, removed 1, split 1, breaking 0, infrastructure 0; 3 artifact(s) to update, "
        "1 retirement(s)\n"
    )
    doc = yaml.safe_load(path.read_text())
    assert list(doc["sections"]) == SECTIONS
    assert doc["changes"]["added"] == ["text.lower", "text.upper"]
    assert doc["changes"]["split"] == [{"from": "text.echo", "to": ["text.upper", "text.lower"]}]
    assert doc["retirement"] == [
        {
            "capability": "text.echo",
            "replaced_by": ["text.upper", "text.lower"],
            "sunset": "2027-06-30",
            "days_left": 220,
            "legacy_routes": [],
        }
    ]
    # only what the new capability ids change: the KEDA triggers, and the code to write
    assert sorted((a["file"], a["kind"]) for a in doc["artifacts"]) == [
        ("k8s/overlays/keda/scaledobject.yaml", "drift"),
        ("src/text_echo/crank.yaml", "semantic"),
        ("src/text_echo/crank.yaml", "semantic"),
    ]
    strategy = [i["item"] for i in doc["sections"]["migration_strategy"]["items"]]
    assert (
        "Shim routes text.echo to text.upper, text.lower; tested with existing client calls"
        in strategy
    )
    infra = [i["item"] for i in doc["sections"]["infrastructure"]["items"]]
    assert infra[-1].startswith("Retire text.echo on 2027-06-30 (220 days)")
    code = [i["id"] for i in doc["sections"]["code_changes"]["items"]]
    assert code[-2:] == ["implement-text.lower", "implement-text.upper"]

    again = CliRunner().invoke(
        cli,
        [
            "migration",
            "new",
            "text-echo",
            "--manifest",
            str(manifest),
            "--date",
            "2026-11-22",
            "--output-dir",
            str(out),
        ],
    )
    assert again.exit_code == 2
    assert again.stderr == (
        f"error: {path} already exists\n  hint: edit it, or pass --force to start it again\n"
    )


def test_migration_from_a_missing_file_or_a_folder_says_so(
    worker_project: Path, tmp_path: Path
) -> None:
    # a typo in --from was read as a git ref only: "... so --against has no history to
    # read", of an option the command does not have, and not a word of the missing file
    def new_from(source: str) -> tuple[int, str]:
        result = CliRunner().invoke(
            cli,
            [
                "migration",
                "new",
                "text-echo",
                "--from",
                source,
                "--project",
                str(worker_project),
                "--output-dir",
                str(tmp_path / "d"),
            ],
        )
        return result.exit_code, result.stderr

    typo = str(tmp_path / "typo.yaml")
    code, err = new_from(typo)
    assert code == 2
    assert err.startswith(f"error: --from {typo}: no such file, nor a git ref (")
    assert "--against" not in err
    code, err = new_from(str(tmp_path))
    assert (code, err) == (
        2,
        f"error: --from {tmp_path}: is a directory, not a manifest file\n"
        "  hint: pass the old crank.yaml itself, or a git ref\n",
    )
    assert not (tmp_path / "d").exists()


def test_migration_from_git_ref(worker_project: Path, tmp_path: Path) -> None:
    def git(*args: str) -> None:
        subprocess.run(["git", "-C", str(worker_project), *args], check=True, capture_output=True)

    for rel in ("src/text_echo/crank.yaml", "src/text_echo/worker.py"):
        path = worker_project / rel
        path.write_text(path.read_text().replace("text_echo.echo", "text.echo"))
    git("init", "-q")
    git(
        "-c",
        "user.email=t@example.invalid",
        "-c",
        "user.name=t",
        "commit",
        "-q",
        "--allow-empty",
        "-m",
        "empty",
    )
    git("add", ".")
    git("-c", "user.email=t@example.invalid", "-c", "user.name=t", "commit", "-q", "-m", "v1")
    (worker_project / "k8s" / "base" / "service.yaml").unlink()
    _split_project(worker_project)
    out = tmp_path / "d"
    result = CliRunner().invoke(
        cli,
        [
            "migration",
            "new",
            "text-echo",
            "--from",
            "HEAD",
            "--project",
            str(worker_project),
            "--date",
            "2026-11-22",
            "--output-dir",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    doc = yaml.safe_load((out / "migration-text-echo-2026-11-22.yml").read_text())
    assert doc["from"] == "HEAD"
    assert doc["changes"]["split"] == [{"from": "text.echo", "to": ["text.upper", "text.lower"]}]
    assert {
        "file": "k8s/base/service.yaml",
        "kind": "missing",
        "why": "managed artifact 'k8s' is missing",
    } in doc["artifacts"]


def test_migration_new_refuses_another_workers_manifest(
    pristine_worker: Path, tmp_path: Path
) -> None:
    result = CliRunner().invoke(
        cli,
        [
            "migration",
            "new",
            "other",
            "--project",
            str(pristine_worker),
            "--output-dir",
            str(tmp_path),
        ],
    )
    assert result.exit_code == 2
    assert result.stderr.startswith(
        "error: worker 'other' does not match the manifest src/text_echo/crank.yaml "
        "(which names 'text-echo')"
    )
    assert list(tmp_path.iterdir()) == []


def test_bad_date_is_a_usage_error(pristine_worker: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli,
        [
            "migration",
            "new",
            "text-echo",
            "--project",
            str(pristine_worker),
            "--date",
            "22/11/2026",
            "--output-dir",
            str(tmp_path),
        ],
    )
    assert result.exit_code == 2
    assert result.stderr == (
        "error: --date '22/11/2026' is not a YYYY-MM-DD date\n  hint: e.g. --date 2026-11-22\n"
    )


def test_status_counts_open_items(pristine_worker: Path, tmp_path: Path) -> None:
    for day in ("2026-11-01", "2026-11-02"):
        created = CliRunner().invoke(
            cli,
            [
                "migration",
                "new",
                "text-echo",
                "--project",
                str(pristine_worker),
                "--date",
                day,
                "--output-dir",
                str(tmp_path),
            ],
        )
        assert created.exit_code == 0, created.output
    first = tmp_path / "migration-text-echo-2026-11-01.yml"
    doc = yaml.safe_load(first.read_text())
    for section in doc["sections"].values():
        for item in section["items"]:
            item["done"] = True
    doc["sections"]["rollback_plan"]["items"][0]["done"] = False
    first.write_text(yaml.safe_dump(doc, sort_keys=False))
    (tmp_path / "notes.yml").write_text("not: a checklist\n")

    result = CliRunner().invoke(cli, ["migration", "status", str(tmp_path), "--format", "json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    total = sum(len(s["items"]) for s in doc["sections"].values())
    assert [(c["done"], c["total"]) for c in report["checklists"]] == [
        (total - 1, total),
        (0, total),
    ]
    assert report["open"] == total + 1
    assert report["checklists"][0]["open"] == [
        {
            "section": "rollback_plan",
            "id": "previous-image",
            "item": "The previous image tag is recorded and can be redeployed",
        }
    ]
    text = CliRunner().invoke(cli, ["migration", "status", str(tmp_path)])
    assert text.stdout.splitlines()[:2] == [
        f"{first}: text-echo (2026-11-01) {total - 1}/{total} done",
        "  [ ] rollback_plan: The previous image tag is recorded and can be redeployed",
    ]
    assert text.stdout.endswith(f"2 checklist(s), {total + 1} open item(s)\n")


def test_status_of_a_broken_checklist_and_missing_folder(tmp_path: Path) -> None:
    (tmp_path / "migration-x-2026-01-01.yml").write_text("sections: [unclosed\n")
    broken = CliRunner().invoke(cli, ["migration", "status", str(tmp_path)])
    assert broken.exit_code == 2
    assert broken.stderr == (  # one line, not PyYAML's account of the document
        f"error: {tmp_path / 'migration-x-2026-01-01.yml'}:2:1 not valid YAML: expected ',' "
        "or ']', but got '<stream end>'\n"
        "  hint: fix the YAML syntax at this position\n"
    )
    (tmp_path / "migration-x-2026-01-01.yml").write_text(
        "sections:\n  a:\n    items:\n      - id: x\n        done: false\n        done: true\n"
    )
    twice = CliRunner().invoke(cli, ["migration", "status", str(tmp_path)])
    assert (twice.exit_code, twice.stderr) == (
        2,
        f"error: {tmp_path / 'migration-x-2026-01-01.yml'}:6:9 not valid YAML: duplicate key "
        "'done' (first defined at line 5)\n"
        "  hint: YAML keeps only one value per key; remove or rename one of them\n",
    )
    checklist = tmp_path / "migration-x-2026-01-01.yml"
    for content, why in (
        (b"\xff\xfe\x00", "not valid YAML ('utf-8' codec can't decode byte 0xff"),
        (b"sections:\n  a:\n    - 5\n", "sections.a is a list; expected a mapping"),
        (b"sections:\n  a:\n    items: [5]\n", "sections.a.items[0] is 5; expected a mapping"),
    ):
        checklist.write_bytes(content)
        odd = CliRunner().invoke(cli, ["migration", "status", str(tmp_path)])
        assert odd.exit_code == 2, odd.output
        assert odd.stderr.startswith(f"error: {checklist}: {why}"), odd.stderr
    checklist.unlink()
    checklist.mkdir()
    folder = CliRunner().invoke(cli, ["migration", "status", str(tmp_path)])
    assert (folder.exit_code, folder.stderr) == (
        2,
        f"error: {checklist}: is a directory, not a migration checklist\n"
        "  hint: rename or move it: every migration-*.yml in the folder is read as a checklist\n",
    )
    checklist.rmdir()
    missing = CliRunner().invoke(cli, ["migration", "status", str(tmp_path / "nope")])
    assert missing.exit_code == 2
    assert missing.stderr.startswith(f"error: {tmp_path / 'nope'}: no such folder")


def test_status_refuses_a_hand_edited_value_of_the_wrong_type(
    pristine_worker: Path, tmp_path: Path
) -> None:
    """A checklist is edited by hand: `done: "yes"` must not be counted as open, nor a
    section with `items: null` dropped, nor a missing worker shown as None."""
    created = CliRunner().invoke(
        cli,
        [
            "migration",
            "new",
            "text-echo",
            "--project",
            str(pristine_worker),
            "--date",
            "2026-11-01",
            "--output-dir",
            str(tmp_path),
        ],
    )
    assert created.exit_code == 0, created.output
    checklist = tmp_path / "migration-text-echo-2026-11-01.yml"
    pristine = yaml.safe_load(checklist.read_text())

    def edited(change: Callable[[dict[str, Any]], object]) -> str:
        doc = copy.deepcopy(pristine)
        change(doc)
        checklist.write_text(yaml.safe_dump(doc, sort_keys=False))
        result = CliRunner().invoke(cli, ["migration", "status", str(tmp_path)])
        assert (result.exit_code, result.stdout) == (2, ""), result.output
        return result.stderr

    first = pristine["sections"]["code_changes"]["items"][0]["id"]
    assert edited(lambda d: d["sections"]["code_changes"]["items"][0].update(done="yes")) == (
        f"error: {checklist}: sections.code_changes.items[0].done (id {first!r}) is 'yes'; "
        "expected true or false\n"
        "  hint: write `done: true` for a completed item, `done: false` for an open one\n"
    )
    assert edited(lambda d: d["sections"]["rollback_plan"].update(items=None)) == (
        f"error: {checklist}: sections.rollback_plan.items is empty (null); "
        "expected a list of items\n"
        "  hint: write `items: []` for a section with no items\n"
    )
    assert edited(lambda d: d["sections"]["validation"]["items"][1].pop("item")) == (
        f"error: {checklist}: sections.validation.items[1].item is missing; expected text\n"
        "  hint: each item is `- id: some-id`, `item: what to do`, `done: false`\n"
    )
    assert edited(lambda d: d.update(worker=None)) == (
        f"error: {checklist}: `worker` is empty (null); expected the worker's name\n"
        "  hint: set `worker` as `crank migration new` wrote it\n"
    )
    assert edited(lambda d: d.pop("date")) == (
        f"error: {checklist}: `date` is missing; expected a YYYY-MM-DD date\n"
        "  hint: set `date` as `crank migration new` wrote it\n"
    )
    assert edited(lambda d: d.update(sections={})) == (
        f"error: {checklist}: `sections` is empty; not a migration checklist\n"
        "  hint: create checklists with `crank migration new`\n"
    )

    # what a person types by hand and means: an unquoted date, an emptied section
    doc = copy.deepcopy(pristine)
    doc["sections"]["rollback_plan"]["items"] = []
    checklist.write_text(
        yaml.safe_dump(doc, sort_keys=False).replace("date: '2026-11-01'", "date: 2026-11-01")
    )
    kept = CliRunner().invoke(cli, ["migration", "status", str(tmp_path)])
    assert kept.exit_code == 0, kept.output
    assert kept.stdout.startswith(f"{checklist}: text-echo (2026-11-01) 0/")


def test_worker_is_found_by_name_among_installed_workers(
    pristine_worker: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from crank.hookspecs import hookimpl
    from crank.plugins import get_plugin_manager

    manifest = pristine_worker / "src" / "text_echo" / "crank.yaml"

    class Installed:
        @hookimpl
        def crank_register_workers(self, register):  # type: ignore[no-untyped-def]
            register(manifest)

    monkeypatch.chdir(tmp_path)
    manager = get_plugin_manager()
    manager.register(Installed(), name="test-installed-text-echo")
    try:
        result = CliRunner().invoke(cli, ["migration", "new", "text-echo", "--date", "2026-11-22"])
        missing = CliRunner().invoke(cli, ["migration", "new", "no-such-worker"])
    finally:
        manager.unregister("test-installed-text-echo")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("created deployment/migration-text-echo-2026-11-22.yml\n")
    doc = yaml.safe_load(
        (tmp_path / "deployment" / "migration-text-echo-2026-11-22.yml").read_text()
    )
    assert doc["to"].startswith("src/text_echo/crank.yaml (sha256 ")
    assert missing.exit_code == 2
    assert missing.stderr.startswith(
        "error: no worker 'no-such-worker': no crank.yaml in the current folder and no installed "
        "worker of that name (installed: "
    )
    assert "text-echo" in missing.stderr


def test_infrastructure_changes_are_flagged_and_paths_are_relative(
    worker_project: Path, tmp_path: Path
) -> None:
    """A GPU none -> required and a 256Mi -> 2Gi change are infrastructure changes; the
    checklist records no absolute path of this machine and passes yamllint."""
    import shutil

    from .conftest import tool

    manifest = worker_project / "src" / "text_echo" / "crank.yaml"
    old = worker_project / "deployment" / "old-crank.yaml"
    old.parent.mkdir()
    shutil.copy(manifest, old)
    manifest.write_text(
        manifest.read_text()
        .replace("gpu: none", "gpu: required")
        .replace("memory: 256Mi", "memory: 2Gi")
    )
    out = worker_project / "deployment"
    result = CliRunner().invoke(
        cli,
        ["migration", "new", "text-echo", "--from", str(old), "--project",
         str(worker_project), "--date", "2026-11-22", "--output-dir", str(out)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "infrastructure 2;" in result.stdout
    path = out / "migration-text-echo-2026-11-22.yml"
    text = path.read_text()
    assert str(tmp_path) not in text and "/tmp" not in text
    doc = yaml.safe_load(text)
    assert doc["from"] == "deployment/old-crank.yaml"
    assert doc["changes"]["infrastructure"] == [
        {
            "field": "worker.resources.gpu",
            "from": "none",
            "to": "required",
            "affects": "GPU nodes, the CUDA base image and the k8s/overlays/gpu overlay",
        },
        {
            "field": "worker.resources.memory",
            "from": "256Mi",
            "to": "2Gi",
            "affects": "node capacity, quotas and the pod's memory request and limit",
        },
    ]
    infra = {i["id"]: i["item"] for i in doc["sections"]["infrastructure"]["items"]}
    assert infra["infra-worker.resources.gpu"] == (
        "worker.resources.gpu: none -> required; update GPU nodes, the CUDA base image and the "
        "k8s/overlays/gpu overlay"
    )
    assert "infra-worker.resources.memory" in infra
    config = worker_project / ".yamllint"
    subprocess.run(
        [tool("yamllint"), "--strict", "-c", str(config), str(path)], check=True, timeout=60
    )


def test_status_of_a_checklist_it_may_not_read(tmp_path: Path) -> None:
    checklist = tmp_path / "migration-x-2026-01-01.yml"
    checklist.write_text("sections: {}\n")
    checklist.chmod(0)
    done = crank_unprivileged(["migration", "status", "."], cwd=tmp_path)
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == (
        "error: migration-x-2026-01-01.yml: cannot read: Permission denied\n"
        "  hint: make the checklist readable by this user, or run as one who can read it\n"
    )
