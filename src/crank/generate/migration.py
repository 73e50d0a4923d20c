"""Worker migration checklists: created pre-filled from the manifest diff, tracked by status.

The template is ``deployment/worker-migration-checklist.yml`` (shipped in the
wheel as ``crank/_templates/worker-migration-checklist.yml``).
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from crank.errors import GenerateError, UsageError
from crank.generate.check import check_project
from crank.generate.project import load_project
from crank.generate.templates import templates_dir
from crank.manifest.loader import UniqueKeyLoader, describe_yaml_error
from crank.plugins import get_plugin_manager
from crank.routing.compat import compare_manifests
from crank.routing.sources import manifest_from_file, manifest_from_text, read_at_ref

if TYPE_CHECKING:
    from crank.generate.project import WorkerProject
    from crank.manifest import Manifest

CHECKLIST_NAME = "worker-migration-checklist.yml"


def checklist_template() -> Path:

    root = templates_dir()
    for candidate in (root / CHECKLIST_NAME, root.parent / "deployment" / CHECKLIST_NAME):
        if candidate.is_file():
            return candidate
    raise GenerateError(
        f"the migration checklist template {CHECKLIST_NAME} is missing from this installation",
        hint="reinstall crank",
    )


def _item(item_id: str, text: str) -> dict[str, Any]:
    return {"id": item_id, "item": text, "done": False}


def old_manifest(source: str, project: WorkerProject) -> Manifest | None:
    """``source`` is a manifest file or a git ref (the project's manifest at that ref).

    Returns None when the manifest did not exist at that ref (a brand-new worker).
    """

    path = Path(source)
    if path.is_file():
        return manifest_from_file(source)[0]
    if path.exists():
        raise UsageError(
            f"--from {source}: is a directory, not a manifest file",
            hint="pass the old crank.yaml itself, or a git ref",
            subject=source,
        )
    try:
        text = read_at_ref(source, project.manifest_path, option="--from")
    except UsageError as exc:
        # a missing file (a typo, say) is tried as a git ref; the ref's failure alone
        # ("--against has no history") hid that the file was not there
        raise UsageError(
            f"--from {source}: no such file, nor a git ref ({exc.message})",
            hint="pass the path of the old crank.yaml, or a branch, tag or commit of the "
            "worker's repository",
            subject=source,
        ) from None
    if text is None:
        return None
    return manifest_from_text(text, f"{project.manifest_relpath}@{source}")[0]


def compat_changes(old: Manifest | None, new: Manifest, today: dt.date) -> dict[str, Any]:
    """``{"added", "removed", "split", "renamed", "deprecated", "breaking"}`` from crank compat."""
    if old is None:
        return {
            "added": list(new.capability_ids),
            "removed": [],
            "split": [],
            "renamed": [],
            "deprecated": [],
            "breaking": [],
        }

    report = compare_manifests(old, new, today=today).as_dict()
    changes = report.get("changes", {})
    return {
        "added": list(changes.get("added", [])),
        "removed": list(changes.get("removed", [])),
        "split": list(changes.get("split", [])),
        "renamed": list(changes.get("renamed", [])),
        "deprecated": list(changes.get("deprecated", [])),
        "breaking": [
            f"{b.get('rule', '')} {b.get('message', '')}".strip()
            for b in report.get("breaking", [])
        ],
    }


#: What an infrastructure change asks of the platform, by the manifest field changed.
_INFRA_ACTIONS = {
    "worker.resources.gpu": "GPU nodes, the CUDA base image and the k8s/overlays/gpu overlay",
    "worker.resources.cpu": "node capacity, quotas and the pod's CPU request and limit",
    "worker.resources.memory": "node capacity, quotas and the pod's memory request and limit",
    "worker.scaling.min_workers": "the autoscaler's minimum (pods kept warm, cost)",
    "worker.scaling.max_workers": "the autoscaler's maximum (capacity, Redis connections, cost)",
    "worker.scaling.target_queue_per_worker": "how fast KEDA adds pods for a backlog",
    "dependencies.system": "the image's apt packages and CI's system dependencies",
    "timeout_s (longest)": "the shutdown grace: CRANK_GRACE_S, terminationGracePeriodSeconds, "
    "stop_grace_period",
}


def infrastructure_changes(old: Manifest | None, new: Manifest) -> list[dict[str, str]]:
    """Changes the platform must act on: resources (a GPU, more memory), scaling bounds,
    system packages, the longest timeout (the shutdown grace)."""
    if old is None:
        return []

    def facts(m: Manifest) -> dict[str, str]:
        res, scaling = m.worker.resources, m.worker.scaling
        return {
            "worker.resources.gpu": res.gpu,
            "worker.resources.cpu": res.cpu,
            "worker.resources.memory": res.memory,
            "worker.scaling.min_workers": str(scaling.min_workers),
            "worker.scaling.max_workers": str(scaling.max_workers),
            "worker.scaling.target_queue_per_worker": str(scaling.target_queue_per_worker),
            "dependencies.system": ", ".join(sorted(d.apt or d.name for d in m.dependencies.system))
            or "none",
            "timeout_s (longest)": f"{max((c.timeout_s for c in m.capabilities), default=0):g}",
        }

    before, after = facts(old), facts(new)
    return [
        {"field": key, "from": before[key], "to": after[key], "affects": _INFRA_ACTIONS[key]}
        for key in before
        if before[key] != after[key]
    ]


def retirement_timeline(new: Manifest, today: dt.date) -> list[dict[str, Any]]:
    return [
        {
            "capability": dep.id,
            "replaced_by": list(dep.replaced_by),
            "sunset": dep.sunset.isoformat(),
            "days_left": (dep.sunset - today).days,
            "legacy_routes": list(dep.legacy_routes),
        }
        for dep in sorted(new.deprecated, key=lambda d: d.sunset)
    ]


def drifted_artifacts(project: WorkerProject) -> list[dict[str, str]]:

    return [
        {"file": f.file, "kind": f.kind, "why": f.message} for f in check_project(project).findings
    ]


def _add_items(doc: dict[str, Any]) -> None:
    sections = doc["sections"]
    changes = doc["changes"]
    code = sections["code_changes"]["items"]
    for cap in changes["added"]:
        code.append(
            _item(
                f"implement-{cap}", f"Handler, schemas, examples and tests for new capability {cap}"
            )
        )
    strategy = sections["migration_strategy"]["items"]
    for split in changes["split"]:
        targets = ", ".join(split["to"])
        strategy.append(
            _item(
                f"shim-{split['from']}",
                f"Shim routes {split['from']} to {targets}; tested with existing client calls",
            )
        )
    for renamed in changes["renamed"]:
        strategy.append(
            _item(
                f"alias-{renamed['from']}",
                f"Calls to {renamed['from']} reach {renamed['to']} (alias shim)",
            )
        )
    for cap in changes["removed"]:
        strategy.append(_item(f"removed-{cap}", f"No client still calls removed capability {cap}"))
    for breaking in changes["breaking"]:
        strategy.append(_item("breaking", f"Resolve breaking change: {breaking}"))
    artifacts = sections["deployment_artifacts"]["items"]
    for art in doc["artifacts"]:
        artifacts.append(_item(f"update-{art['file']}", f"{art['file']}: {art['why']}"))
    infra = sections["infrastructure"]["items"]
    for change in changes.get("infrastructure", []):
        infra.append(
            _item(
                f"infra-{change['field']}",
                f"{change['field']}: {change['from']} -> {change['to']}; "
                f"update {change['affects']}",
            )
        )
    for entry in doc["retirement"]:
        infra.append(
            _item(
                f"retire-{entry['capability']}",
                f"Retire {entry['capability']} on {entry['sunset']} ({entry['days_left']} days): "
                f"clients moved to {', '.join(entry['replaced_by'])}, "
                "shim and legacy routes removed",
            )
        )


class _IndentedDumper(yaml.SafeDumper):
    """Indents a mapping's sequences under their key, as yamllint's default config wants."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)


def dump_yaml(doc: Any) -> str:
    """YAML that passes yamllint's default rules (with a 150-column line length)."""
    return yaml.dump(doc, Dumper=_IndentedDumper, sort_keys=False, width=100, allow_unicode=True)


def _shown_source(source: str | None, project: WorkerProject) -> str:
    """``--from`` as the checklist records it: a file as a path relative to the project
    (never an absolute path of this machine), a git ref as it is."""
    if not source:
        return ""
    path = Path(source)
    if not path.is_file():
        return source
    return Path(os.path.relpath(path.resolve(), project.root)).as_posix()


@dataclass(frozen=True)
class NewChecklist:
    path: Path
    document: dict[str, Any]


def new_checklist(
    project: WorkerProject,
    *,
    worker: str,
    source: str | None,
    today: dt.date,
    output_dir: Path,
    force: bool = False,
) -> NewChecklist:
    """Write ``<output_dir>/migration-<worker>-<date>.yml`` pre-filled for ``project``."""
    if worker != project.manifest.name:
        raise GenerateError(
            f"worker {worker!r} does not match the manifest {project.manifest_relpath} "
            f"(which names {project.manifest.name!r})",
            hint="pass --manifest with the worker's crank.yaml",
            subject=worker,
        )
    target = output_dir / f"migration-{worker}-{today.isoformat()}.yml"
    if target.exists() and not force:
        raise GenerateError(
            f"{target} already exists",
            hint="edit it, or pass --force to start it again",
            subject=str(target),
        )
    doc: dict[str, Any] = yaml.safe_load(checklist_template().read_text(encoding="utf-8"))
    old = old_manifest(source, project) if source else None
    doc.update(
        worker=worker,
        date=today.isoformat(),
        **{"from": _shown_source(source, project)},
        to=f"{project.manifest_relpath} (sha256 {project.manifest.digest()[:16]})",
    )
    if source:
        doc["changes"] = compat_changes(old, project.manifest, today)
        doc["changes"]["infrastructure"] = infrastructure_changes(old, project.manifest)
    doc["artifacts"] = drifted_artifacts(project)
    doc["retirement"] = retirement_timeline(project.manifest, today)
    _add_items(doc)
    header = (
        f"# Migration checklist for {worker}, created {today.isoformat()} by crank migration new.\n"
        "# Set `done: true` as items are completed; `crank migration status` lists open items.\n"
        "---\n"
    )
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
        target.write_text(header + dump_yaml(doc), encoding="utf-8")
    except OSError as exc:
        raise GenerateError(
            f"cannot write {target}: {exc.strerror or exc}",
            hint="choose a writable --output-dir",
            subject=str(target),
        ) from None
    return NewChecklist(target, doc)


@dataclass(frozen=True)
class OpenItem:
    section: str
    id: str
    item: str


@dataclass(frozen=True)
class ChecklistStatus:
    path: Path
    worker: str
    date: str
    total: int
    done: int
    open_items: tuple[OpenItem, ...]

    def as_dict(self) -> dict[str, Any]:
        return {
            "file": str(self.path),
            "worker": self.worker,
            "date": self.date,
            "total": self.total,
            "done": self.done,
            "open": [{"section": o.section, "id": o.id, "item": o.item} for o in self.open_items],
        }


def _not_a_checklist(path: Path, why: str) -> GenerateError:
    return GenerateError(
        f"{path}: {why}; not a migration checklist",
        hint="create checklists with `crank migration new`",
        subject=str(path),
    )


#: A key the checklist lacks, told apart from one set to null.
_MISSING = object()


_ITEM_HINT = "each item is `- id: some-id`, `item: what to do`, `done: false`"


def _wrong_value(path: Path, where: str, value: object, expected: str, hint: str) -> GenerateError:
    # the file is edited by hand: a value of the wrong type must stop the count, or
    # `done: "yes"` would be counted as open and `items: null` as an empty section
    return GenerateError(
        f"{path}: {where} is {_shown_value(value)}; expected {expected}",
        hint=hint,
        subject=str(path),
    )


def _shown_value(value: object) -> str:
    if value is _MISSING:
        return "missing"
    if value is None:
        return "empty (null)"
    if isinstance(value, (dict, list)):
        return f"a {'mapping' if isinstance(value, dict) else 'list'}"
    shown = repr(value)
    return shown if len(shown) <= 60 else f"{shown[:57]}..."


def _section_items(path: Path, name: object, section: object) -> list[dict[str, Any]]:
    """The items of one section, each a mapping with a text ``id`` and ``item`` and a
    boolean ``done``; a GenerateError naming the first value of the wrong type."""
    if not isinstance(section, dict):
        raise _wrong_value(
            path,
            f"sections.{name}",
            section,
            "a mapping with `title` and `items`",
            "restore the section from `crank migration new`, or delete it",
        )
    items = section.get("items", _MISSING)
    if not isinstance(items, list):
        raise _wrong_value(
            path,
            f"sections.{name}.items",
            items,
            "a list of items",
            "write `items: []` for a section with no items",
        )
    for index, item in enumerate(items):
        where = f"sections.{name}.items[{index}]"
        if not isinstance(item, dict):
            raise _wrong_value(
                path, where, item, "a mapping with `id`, `item` and `done`", _ITEM_HINT
            )
        for key in ("id", "item"):
            value = item.get(key, _MISSING)
            if not isinstance(value, str) or not value.strip():
                raise _wrong_value(path, f"{where}.{key}", value, "text", _ITEM_HINT)
        if not isinstance(item.get("done"), bool):
            raise _wrong_value(
                path,
                f"{where}.done (id {item['id']!r})",
                item.get("done", _MISSING),
                "true or false",
                "write `done: true` for a completed item, `done: false` for an open one",
            )
    return items


def _checklist_text(path: Path, doc: dict[Any, Any], key: str) -> str:
    """``worker`` or ``date`` of a checklist, as text."""
    value = doc.get(key, _MISSING)
    if key == "date" and isinstance(value, dt.date):
        return value.isoformat()  # an unquoted date, as a person types it
    if not isinstance(value, str) or not value.strip():
        expected = "a YYYY-MM-DD date" if key == "date" else "the worker's name"
        raise _wrong_value(
            path, f"`{key}`", value, expected, f"set `{key}` as `crank migration new` wrote it"
        )
    return value


def _read_checklist(path: Path) -> Any:
    """The YAML document of a checklist; a GenerateError in one line saying why not."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise GenerateError(
            f"{path}: not valid YAML ({exc})",
            hint="save the checklist as UTF-8",
            subject=str(path),
        ) from None
    except IsADirectoryError:
        raise GenerateError(
            f"{path}: is a directory, not a migration checklist",
            hint="rename or move it: every migration-*.yml in the folder is read as a checklist",
            subject=str(path),
        ) from None
    except OSError as exc:
        raise GenerateError(
            f"{path}: cannot read: {exc.strerror or exc}",
            hint="make the checklist readable by this user, or run as one who can read it",
            subject=str(path),
        ) from None
    try:
        return yaml.load(text, Loader=UniqueKeyLoader)  # noqa: S506 - a SafeLoader
    except yaml.MarkedYAMLError as exc:
        line, col, problem, hint = describe_yaml_error(exc)
        raise GenerateError(
            f"{path}:{line}:{col} not valid YAML: {problem}", hint=hint, subject=str(path)
        ) from None
    except yaml.YAMLError as exc:
        problem = " ".join(str(exc).split())
        raise GenerateError(
            f"{path}: not valid YAML: {problem}", hint="fix the checklist file", subject=str(path)
        ) from None


def checklist_status(path: Path) -> ChecklistStatus:
    doc = _read_checklist(path)
    sections = doc.get("sections") if isinstance(doc, dict) else None
    if not isinstance(sections, dict):
        raise _not_a_checklist(path, "no `sections` mapping")
    if not sections:
        raise _not_a_checklist(path, "`sections` is empty")
    total = done = 0
    open_items: list[OpenItem] = []
    for name, section in sections.items():
        for item in _section_items(path, name, section):
            total += 1
            if item["done"]:
                done += 1
            else:
                open_items.append(OpenItem(str(name), item["id"], item["item"]))
    worker, date = _checklist_text(path, doc, "worker"), _checklist_text(path, doc, "date")
    return ChecklistStatus(path, worker, date, total, done, tuple(open_items))


def find_checklists(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise GenerateError(
            f"{folder}: no such folder",
            hint="pass the folder holding migration-*.yml checklists",
            subject=str(folder),
        )
    return sorted(folder.glob("migration-*.yml"))


def worker_project(
    worker: str, manifest: Path | None = None, project: Path | None = None
) -> WorkerProject:
    """The project of ``worker``: given by --manifest/--project, else the project in the
    current folder, else the installed worker of that name (its manifest's project)."""

    if manifest is not None or project is not None:
        return load_project(project, manifest)
    try:
        return load_project(".")
    except GenerateError:
        pass

    manager = get_plugin_manager()
    found = manager.find_worker(worker)
    if found is not None:
        return load_project(None, found[0])
    raise GenerateError(
        f"no worker {worker!r}: no crank.yaml in the current folder and no installed worker "
        f"of that name (installed: {', '.join(manager.worker_names()) or 'none'})",
        hint="pass --manifest PATH or --project DIR, or install the worker (pip install -e DIR)",
        subject=worker,
    )
