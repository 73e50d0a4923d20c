"""The lint engine: load, schema-check and run every registered rule on manifests.

A rule is any object with an ``id``, a one-line ``summary`` and a
``check(ctx)`` method returning findings (see :class:`LintRule`). The engine is
given its rules: crank's own live in :mod:`crank.manifest.rules` and
:mod:`crank.worker.lint_rules`, plugins add theirs, and all of them are gathered
through the ``crank_register_lint_rules`` hook (:data:`LINT_RULES`) by the
layers above. A file opts out of rules with a comment anywhere in it::

    # crank-lint: disable=CRK106,CRK109
"""

from __future__ import annotations

import datetime as dt
import difflib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import yaml

from crank.contributions import ContributionKind
from crank.errors import ManifestError, PluginError, UsageError
from crank.manifest.findings import Finding, Severity, quoted
from crank.manifest.loader import LOAD_RULE, LoadedDocument, load_document
from crank.manifest.model import manifest_from_dict
from crank.manifest.validate import SCHEMA_RULE, schema_findings

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence

    from crank.manifest.model import Manifest

RULE_ID_RE = re.compile(r"^[A-Z][A-Z0-9]*[0-9]{3}$")
_WORD = r"[A-Za-z0-9_.-]+"
#: ``# crank-lint: disable=CRK106,CRK109`` (anything after the list is a free comment).
#: Any word is taken as an id, so that one that names no rule (a typo) can be reported.
DISABLE_RE = re.compile(
    rf"#[ \t]*crank-lint:[ \t]*disable=[ \t]*({_WORD}(?:[ \t]*,[ \t]*{_WORD})*)"
)
#: Any ``# crank-lint`` comment: one that is not a disable list turns nothing off.
_LINT_COMMENT_RE = re.compile(r"#[ \t]*crank-lint\b[^\n]*")
#: Directories never searched for manifests.
SKIP_DIRS = frozenset(
    {
        ".git",
        ".hg",
        ".nox",
        ".tox",
        ".venv",
        "venv",
        "node_modules",
        "build",
        "dist",
        "__pycache__",
        ".mypy_cache",
        ".ruff_cache",
        ".pytest_cache",
    }
)


@runtime_checkable
class LintRule(Protocol):
    """One lint rule. ``id`` is stable (``CRK123`` or a plugin's own prefix)."""

    @property
    def id(self) -> str: ...

    @property
    def summary(self) -> str: ...

    def check(self, ctx: LintContext) -> Iterable[Finding]: ...


@dataclass
class LintContext:
    """What a rule sees: the loaded document, the installed manifests and today's date."""

    doc: LoadedDocument
    today: dt.date
    schema_valid: bool = True
    #: Returns the installed plugins' manifests; called by the rules that need them.
    installed_source: Callable[[], Iterable[LoadedDocument]] = tuple
    _manifest: Manifest | None = field(default=None, repr=False)

    @property
    def data(self) -> dict[str, Any]:
        return self.doc.data if isinstance(self.doc.data, dict) else {}

    @property
    def manifest(self) -> Manifest | None:
        """The document as a :class:`Manifest`, or None when it breaks the schema."""
        if not self.schema_valid:
            return None
        if self._manifest is None:
            self._manifest = manifest_from_dict(self.data, Path(self.doc.file))
        return self._manifest

    def installed(self) -> list[LoadedDocument]:
        """Every installed manifest of *another* worker.

        This file itself (an editable install) and any installed copy of the same
        worker (``pip install .`` puts one in site-packages) are left out: the file
        under lint is the worker's truth. Comparing with its own older copy reported
        each example worker as clashing with itself, and hid a new version that drops
        a capability its own ``replaced_by`` still names.
        """
        own = _resolved(self.doc.file)
        name = _worker_name(self.data)
        return [
            d
            for d in self.installed_source()
            if _resolved(d.file) != own
            and (name is None or _worker_name(d.data if isinstance(d.data, dict) else {}) != name)
        ]

    def finding(
        self,
        rule: str,
        path: tuple[str | int, ...],
        message: str,
        *,
        hint: str | None = None,
        severity: Severity = "error",
        key: bool = False,
    ) -> Finding:
        """A finding located at the node (or, with ``key``, the mapping key) of ``path``."""
        line, col = self.doc.position(path, key=key)
        return Finding(
            file=self.doc.file,
            line=line,
            col=col,
            rule=rule,
            message=message,
            severity=severity,
            path=path,
            hint=hint,
        )


def _worker_name(data: dict[str, Any]) -> str | None:
    metadata = data.get("metadata")
    name = metadata.get("name") if isinstance(metadata, dict) else None
    return name if isinstance(name, str) and name else None


def _resolved(path: str | Path) -> Path:
    try:
        return Path(path).resolve()
    except OSError:  # pragma: no cover - resolve() only fails on exotic filesystems
        return Path(path)


def _comments(pattern: re.Pattern[str], text: str) -> list[re.Match[str]]:
    """The matches of ``pattern`` (starting with ``#``) that are YAML comments: a ``#``
    inside a value (``description: "see # crank-lint: disable=CRK109"``, a ``|`` block,
    ``http://host/#x``) is text, and turns nothing off. The YAML scanner's tokens locate
    the values; past a scanning error, every match counts as a comment."""
    found = list(pattern.finditer(text))
    if not found:
        return found  # most manifests: no scanning
    spans: list[tuple[int, int]] = []
    try:
        for token in yaml.scan(text, Loader=yaml.SafeLoader):
            spans.append((token.start_mark.index, token.end_mark.index))
    except yaml.YAMLError:
        # past the error nothing is known: count what follows the last token read
        pass
    return [m for m in found if not any(start <= m.start() < end for start, end in spans)]


def _disabled_ids(text: str) -> Iterator[tuple[str, int]]:
    """(id, offset in ``text``) of each id a ``# crank-lint: disable=`` comment names."""
    for match in _comments(DISABLE_RE, text):
        for word in re.finditer(r"[^,\s]+", match.group(1)):
            yield word.group().upper(), match.start(1) + word.start()


def disabled_rules(text: str) -> frozenset[str]:
    """Rule ids named by ``# crank-lint: disable=...`` comments in ``text`` (YAML
    comments only: the same words inside a value turn nothing off)."""
    return frozenset(rule_id for rule_id, _ in _disabled_ids(text))


def _at_offset(
    doc: LoadedDocument, offset: int, message: str, hint: str, severity: Severity = "warning"
) -> Finding:
    line = doc.text.count("\n", 0, offset) + 1
    col = offset - doc.text.rfind("\n", 0, offset)
    return Finding(doc.file, line, col, LOAD_RULE, message, severity, (), hint)


def disable_comment_findings(
    doc: LoadedDocument,
    known: Iterable[str],
    blocked_rules: Mapping[str, str] | None = None,
    blocked_plugins: Sequence[str] = (),
) -> list[Finding]:
    """A warning at each ``# crank-lint`` comment that turns nothing off: an id that
    names none of the ``known`` rules (a typo: ``CRK10``), or a comment that is not of
    the form ``# crank-lint: disable=ID,...``: unreported, either leaves a rule on unnoticed.

    An id in ``blocked_rules`` (id -> the plugin registering it, blocked by
    CRANK_DISABLE_PLUGINS) names a rule that exists: a note says why it is not run.
    ``blocked_plugins`` are the other blocked plugins, whose rules are not known."""
    ids = sorted(set(known))
    blocked = blocked_rules or {}
    found: list[Finding] = []
    for rule_id, offset in _disabled_ids(doc.text):
        if rule_id in ids:
            continue
        if rule_id in blocked:
            plugin = blocked[rule_id]
            found.append(
                _at_offset(
                    doc,
                    offset,
                    f"`crank-lint: disable=` names {rule_id}, which is not run: its plugin "
                    f"{quoted(plugin)} is blocked by CRANK_DISABLE_PLUGINS",
                    f"nothing to fix in the manifest; to run {rule_id}, take {plugin} out of "
                    "CRANK_DISABLE_PLUGINS",
                    "info",
                )
            )
            continue
        close = difflib.get_close_matches(rule_id, ids, n=1)
        install = (
            "install the plugin that registers the rule, or take it out of "
            f"CRANK_DISABLE_PLUGINS (which blocks {', '.join(blocked_plugins)})"
            if blocked_plugins
            else "or install the plugin that registers the rule"
        )
        found.append(
            _at_offset(
                doc,
                offset,
                f"`crank-lint: disable=` names {rule_id}, which is not the id of any lint rule"
                + (f" (did you mean {close[0]}?)" if close else ""),
                f"fix the id (each finding of `crank lint` names its rule), {install}",
            )
        )
    lists = {m.start() for m in DISABLE_RE.finditer(doc.text)}
    for comment in _comments(_LINT_COMMENT_RE, doc.text):
        if comment.start() not in lists:
            found.append(
                _at_offset(
                    doc,
                    comment.start(),
                    f"{quoted(comment.group().strip())} turns no rule off",
                    "write it `# crank-lint: disable=ID,ID` (a colon after crank-lint, the ids "
                    "after `disable=`)",
                )
            )
    return found


def _accept_rule(rule: object) -> tuple[str, LintRule]:
    rule_id = getattr(rule, "id", None)
    if not isinstance(rule, LintRule) or not isinstance(rule_id, str):
        raise PluginError(
            f"crank_register_lint_rules got {rule!r}, which is not a lint rule",
            hint="register an object with `id`, `summary` and `check(ctx)`",
            subject=rule,
        )
    if not RULE_ID_RE.match(rule_id):
        raise PluginError(
            f"lint rule id {rule_id!r} is not of the form PREFIX + three digits",
            hint="name rules like CRK123 or ACME001",
            subject=rule_id,
        )
    return rule_id, rule


#: Lint rules, gathered through ``crank_register_lint_rules``. The load and schema
#: checks are not rules, but their ids are taken.
LINT_RULES: ContributionKind[LintRule] = ContributionKind(
    "crank_register_lint_rules",
    "lint rule",
    _accept_rule,
    label="lint rule id",
    reserved={LOAD_RULE: "crank", SCHEMA_RULE: "crank"},
    crank_prefix="CRK",
)


@dataclass(frozen=True)
class LintResult:
    """The findings of one lint run over ``files``, sorted by file and position."""

    files: tuple[str, ...]
    findings: tuple[Finding, ...]

    def count(self, severity: Severity) -> int:
        return sum(1 for f in self.findings if f.severity == severity)

    def failed(self, *, strict: bool = False) -> bool:
        return any(
            f.severity == "error" or (strict and f.severity == "warning") for f in self.findings
        )


def _cannot_be_disabled(finding: Finding) -> bool:
    """A manifest that does not load or breaks the schema is refused by every other crank
    command: a disable comment must not make ``crank lint`` call it clean."""
    return finding.severity == "error" and finding.rule in (LOAD_RULE, SCHEMA_RULE)


class Linter:
    """Runs the schema check and ``rules``; one instance lints many files.

    ``installed_paths`` are the installed workers' manifests, which the rules
    about other workers (CRK102, CRK103) compare against; they are read once,
    when a rule first asks. ``blocked_rules`` and ``blocked_plugins`` say which rules
    CRANK_DISABLE_PLUGINS keeps from running (see :func:`disable_comment_findings`).
    """

    def __init__(
        self,
        rules: Iterable[LintRule],
        *,
        today: dt.date | None = None,
        installed_paths: Iterable[Path] = (),
        blocked_rules: Mapping[str, str] | None = None,
        blocked_plugins: Sequence[str] = (),
    ) -> None:
        self.rules = list(rules)
        self.blocked_rules = dict(blocked_rules or {})
        self.blocked_plugins = tuple(blocked_plugins)
        self.today = today or dt.date.today()
        self._installed_paths = tuple(installed_paths)
        self._installed: list[LoadedDocument] | None = None

    def installed_documents(self) -> list[LoadedDocument]:
        """The installed plugins' manifests, loaded once; unreadable ones are skipped
        (they are reported when linted themselves)."""
        if self._installed is None:
            docs: list[LoadedDocument] = []
            for path in self._installed_paths:
                try:
                    docs.append(load_document(path))
                except ManifestError:
                    continue
            self._installed = docs
        return self._installed

    def lint_file(self, path: Path | str) -> list[Finding]:
        try:
            doc = load_document(path)
        except ManifestError as exc:
            if exc.findings:
                return list(exc.findings)
            raise
        return self.lint_document(doc)

    def lint_document(self, doc: LoadedDocument) -> list[Finding]:
        disabled = disabled_rules(doc.text)
        known = {rule.id for rule in self.rules} | set(LINT_RULES.reserved)
        findings = (
            schema_findings(doc)
            + _misread_numbers(doc)
            + disable_comment_findings(doc, known, self.blocked_rules, self.blocked_plugins)
        )
        ctx = LintContext(
            doc=doc,
            today=self.today,
            schema_valid=not any(f.severity == "error" for f in findings),
            installed_source=self.installed_documents,
        )
        for rule in self.rules:
            if rule.id in disabled:
                continue
            try:
                produced = list(rule.check(ctx))
            except Exception as exc:  # a broken (plugin) rule must not hide the others
                findings.append(
                    ctx.finding(
                        rule.id,
                        (),
                        f"rule {rule.id} crashed: {type(exc).__name__}: {exc}",
                        hint=f"a bug in the rule; skip it with `# crank-lint: disable={rule.id}`",
                    )
                )
                continue
            wrong = next((f for f in produced if not isinstance(f, Finding)), None)
            if wrong is not None:  # the same bug: it would crash whatever reads the findings
                findings.append(
                    ctx.finding(
                        rule.id,
                        (),
                        f"rule {rule.id} produced {wrong!r}, which is not a Finding",
                        hint="a bug in the rule (its check(ctx) yields ctx.finding(...)); skip "
                        f"it with `# crank-lint: disable={rule.id}`",
                    )
                )
                continue
            findings.extend(produced)
        kept = {f for f in findings if f.rule not in disabled or _cannot_be_disabled(f)}
        return sorted(kept, key=_order)

    def lint_paths(self, paths: Iterable[Path | str]) -> LintResult:
        unreadable: list[OSError] = []
        files = [str(p) for p in discover_manifests(paths, unreadable=unreadable)]
        findings = [_unreadable_folder(exc) for exc in unreadable]
        for file in files:
            findings.extend(self.lint_file(file))
        return LintResult(files=tuple(files), findings=tuple(findings))


#: YAML 1.1 integers that do not mean what they look like: ``010`` is octal (8), and
#: ``1:30`` base 60 (90); JSON and YAML 1.2 have neither.
_OCTAL_RE = re.compile(r"^[-+]?0[0-7_]+$")
_SEXAGESIMAL_RE = re.compile(r"^[-+]?[0-9][0-9_]*(:[0-5]?[0-9])+(\.[0-9_]*)?$")


def _misread_numbers(doc: LoadedDocument) -> list[Finding]:
    """A warning at each unquoted number YAML reads as another value than it shows."""
    found: list[Finding] = []
    for path, spelling in doc.spellings.items():
        value = _value_at(doc.data, path)
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue
        quote = f"quote it ({json.dumps(spelling)}) for the text"
        if _OCTAL_RE.match(spelling):
            if int(spelling.replace("_", ""), 10) == value:
                continue  # 07 is 7 either way
            how = f"the octal number {value}"
            hint = f"drop the leading zero for a decimal number, or {quote}"
        elif _SEXAGESIMAL_RE.match(spelling):
            how = f"the base-60 number {value}"
            hint = f"write {value} for that number, or {quote}"
        else:
            continue
        line, col = doc.position(path)
        found.append(
            Finding(
                file=doc.file,
                line=line,
                col=col,
                rule=LOAD_RULE,
                message=f"YAML reads the unquoted {spelling} as {how}",
                severity="warning",
                path=path,
                hint=hint,
            )
        )
    return found


def _value_at(data: Any, path: tuple[str | int, ...]) -> Any:
    for step in path:
        data = data[step]  # every path in spellings leads to a value
    return data


def _unreadable_folder(exc: OSError) -> Finding:
    """A warning naming a folder the search for manifests could not look into."""
    return Finding(
        file=str(Path(exc.filename)),
        line=1,
        col=1,
        rule=LOAD_RULE,
        message=f"cannot read this folder ({exc.strerror or exc}): manifests in it were not linted",
        severity="warning",
        hint="make the folder readable by this user, or lint the manifests it holds by path",
    )


def _order(f: Finding) -> tuple[str, int, int, str, str]:
    return (f.file, f.line, f.col, f.rule, f.message)


def is_manifest_name(name: str) -> bool:
    return name == "crank.yaml" or name.endswith(".crank.yaml")


def discover_manifests(
    paths: Iterable[Path | str], *, unreadable: list[OSError] | None = None
) -> list[Path]:
    """Files named on the command line, plus manifests found under directories.

    Raises :class:`UsageError` for a path that does not exist or a directory
    holding no manifest. A folder that cannot be searched is appended to
    ``unreadable`` (its error names it) and skipped.
    """
    found: list[Path] = []
    errors = unreadable if unreadable is not None else []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            before = len(errors)
            inside = sorted(_walk(path, errors.append))
            if not inside:
                skipped = [f"{Path(e.filename)} ({e.strerror or e})" for e in errors[before:]]
                raise UsageError(
                    f"{raw}: no crank.yaml or *.crank.yaml found in this directory"
                    + (f"; could not read {', '.join(skipped)}" if skipped else ""),
                    hint="make the folders readable by this user"
                    if skipped
                    else "pass a manifest file, or a directory that contains one",
                    subject=str(raw),
                )
            found.extend(inside)
        elif path.exists() or path.is_symlink():  # a dangling link is reported as a file
            found.append(path)
        else:
            raise UsageError(
                f"{raw}: no such file or directory",
                hint="check the path; crank lint takes manifest files and directories",
                subject=str(raw),
            )
    unique: dict[Path, None] = {}
    for p in found:
        unique.setdefault(p, None)
    return list(unique)


def _walk(root: Path, onerror: Callable[[OSError], None]) -> Iterator[Path]:
    for dirpath, dirnames, filenames in os.walk(root, onerror=onerror):
        dirnames[:] = sorted(
            d for d in dirnames if d not in SKIP_DIRS and not d.endswith(".egg-info")
        )
        for name in filenames:
            if is_manifest_name(name):
                yield Path(dirpath) / name


__all__ = [
    "LINT_RULES",
    "LintContext",
    "LintResult",
    "LintRule",
    "Linter",
    "disable_comment_findings",
    "disabled_rules",
    "discover_manifests",
    "is_manifest_name",
]
