"""crank's own lint rules (CRK1xx), registered through ``crank_register_lint_rules``.

Rules read the document as loaded (it may break the schema, so every access is
defensive) and locate each finding at the exact node it is about.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from crank.hookspecs import hookimpl
from crank.manifest.findings import Finding, quoted, schema_error_message
from crank.manifest.model import Scaling
from crank.manifest.quickcheck import conforms, is_plain_valid_schema
from crank.manifest.schema_keywords import schema_problems
from crank.manifest.schema_refs import unresolved_ref_problem, unresolved_refs

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator

    from crank.manifest.lint import LintContext
    from crank.manifest.loader import LoadedDocument
    from crank.plugin import RegisterLintRule

#: Days before a sunset date from which CRK106 warns.
SUNSET_WARNING_DAYS = 30

Path_ = tuple[str | int, ...]


@dataclass(frozen=True)
class FunctionRule:
    """A lint rule made of an id, a summary and a check function."""

    id: str
    summary: str
    func: Callable[[LintContext], Iterable[Finding]]

    def check(self, ctx: LintContext) -> Iterable[Finding]:
        return self.func(ctx)


# --- reading the raw document defensively --------------------------------------


def _entries(data: Any, key: str) -> Iterator[tuple[int, dict[str, Any]]]:
    items = data.get(key) if isinstance(data, dict) else None
    if isinstance(items, list):
        for i, item in enumerate(items):
            if isinstance(item, dict):
                yield i, item


def capabilities(data: Any) -> Iterator[tuple[int, dict[str, Any]]]:
    return _entries(data, "capabilities")


def deprecations(data: Any) -> Iterator[tuple[int, dict[str, Any]]]:
    return _entries(data, "deprecated")


def capability_ids(data: Any) -> set[str]:
    return {c["id"] for _, c in capabilities(data) if isinstance(c.get("id"), str)}


def _date(value: Any) -> dt.date | None:
    if isinstance(value, dt.date):
        return value
    if isinstance(value, str):
        try:
            return dt.date.fromisoformat(value)
        except ValueError:
            return None  # the schema's format check reports it
    return None


def _worker_name(doc: LoadedDocument) -> str:
    md = doc.data.get("metadata") if isinstance(doc.data, dict) else None
    name = md.get("name") if isinstance(md, dict) else None
    return str(name) if name else "?"


# --- the rules ------------------------------------------------------------------


def unique_in_file(ctx: LintContext) -> Iterator[Finding]:
    for section, label in (("capabilities", "capability"), ("deprecated", "deprecated capability")):
        first: dict[str, int] = {}
        for i, entry in _entries(ctx.data, section):
            cid = entry.get("id")
            if not isinstance(cid, str):
                continue
            if cid in first:
                line = ctx.doc.position((section, first[cid], "id"))[0]
                yield ctx.finding(
                    "CRK101",
                    (section, i, "id"),
                    f"{label} id {quoted(cid)} is declared twice (first at line {line})",
                    hint="each id appears once per file; remove or rename one of them",
                )
            else:
                first[cid] = i
    # the router maps each legacy route to one deprecated id
    routes: dict[str, tuple[int, int]] = {}
    for i, dep in _entries(ctx.data, "deprecated"):
        paths = dep.get("legacy_routes")
        for j, route in enumerate(paths if isinstance(paths, list) else ()):
            if not isinstance(route, str):
                continue
            if route not in routes:
                routes[route] = (i, j)
                continue
            at = ("deprecated", *routes[route][:1], "legacy_routes", routes[route][1])
            yield ctx.finding(
                "CRK101",
                ("deprecated", i, "legacy_routes", j),
                f"legacy route {quoted(route)} is declared twice (first at line "
                f"{ctx.doc.position(at)[0]})",
                hint="a legacy route leads to one deprecated capability; keep it on one entry",
            )
    yield from _unique_names(ctx)


def _named_twice(
    ctx: LintContext, base: tuple[str | int, ...], entries: Any, key: str, label: str, hint: str
) -> Iterator[Finding]:
    """A finding at each entry of the list ``entries`` (at ``base``) whose ``key`` an
    earlier entry has already: the code reads one of them, and which is not said."""
    first: dict[str, int] = {}
    for i, entry in enumerate(entries if isinstance(entries, list) else ()):
        name = entry.get(key) if isinstance(entry, dict) else None
        if not isinstance(name, str):
            continue
        if name not in first:
            first[name] = i
            continue
        line = ctx.doc.position((*base, first[name], key))[0]
        yield ctx.finding(
            "CRK101",
            (*base, i, key),
            f"{label} {quoted(name)} is declared twice (first at line {line})",
            hint=hint,
        )


#: The lists in which CRK101 checks that no name is given twice: where the list is
#: (``*``: in each item of a list), the key naming an entry, what it is, the hint.
_NAMED_ONCE: tuple[tuple[tuple[str, ...], str, str, str], ...] = (
    (
        ("capabilities", "*", "errors"),
        "code",
        "error code",
        "each code is one exception class with one retryable flag; keep one entry",
    ),
    (
        ("worker", "env"),
        "name",
        "environment variable",
        "a variable has one value; keep one entry (its description, default, secret)",
    ),
    (
        ("dependencies", "system"),
        "name",
        "system dependency",
        "describe each dependency once; put a version constraint in its check",
    ),
)


def _nodes_at(data: Any, pattern: tuple[str, ...], path: Path_ = ()) -> Iterator[tuple[Path_, Any]]:
    """(path, value) of each node ``pattern`` leads to in ``data``; ``*`` steps into each
    item of a list. Steps through what is not a mapping (or a list) lead nowhere."""
    if not pattern:
        yield path, data
    elif pattern[0] == "*":
        for i, item in enumerate(data if isinstance(data, list) else ()):
            yield from _nodes_at(item, pattern[1:], (*path, i))
    elif isinstance(data, dict) and pattern[0] in data:
        yield from _nodes_at(data[pattern[0]], pattern[1:], (*path, pattern[0]))


def _unique_names(ctx: LintContext) -> Iterator[Finding]:
    for pattern, key, label, hint in _NAMED_ONCE:
        for base, entries in _nodes_at(ctx.data, pattern):
            yield from _named_twice(ctx, base, entries, key, label, hint)


#: The codes crank gives a task's error for a failure of its own, which no handler can
#: mean: declared by a capability, such a task passes for the handler's declared error
#: (a crash is answered 422 INTERNAL, not 502 WORKER_FAILED).
CRANK_TASK_ERROR_CODES: dict[str, str] = {
    "CANCELLED": "a task cancelled while it ran",
    "CAPABILITY_NOT_SERVED": "a task no worker process serves",
    "INTERNAL": "a handler that crashed",
    "OUTPUT_INVALID": "an output its schema refuses",
    "OUTPUT_NOT_JSON": "an output that is not JSON",
    "WORKER_FAILED": "a worker that failed a task",
    "WORKER_LOST": "a task whose worker kept dying",
}
#: The two task codes a handler can mean just as crank does (its input refused, its
#: time run out): a capability may declare them for its own refusals and time-outs.
CRANK_SHARED_CODES = frozenset({"INVALID_INPUT", "TIMEOUT"})
#: The codes of crank's other answers: declared, the handler's and crank's differ only
#: by the HTTP status.
CRANK_ANSWER_CODES: dict[str, str] = {
    **dict.fromkeys(
        (
            "BODY_TOO_LARGE",
            "BROKER_UNAVAILABLE",
            "CAPABILITY_GONE",
            "CAPABILITY_NOT_FOUND",
            "CAPABILITY_PAUSED",
            "CLIENT_CLOSED_REQUEST",
            "CONCURRENCY_LIMIT",
            "IDEMPOTENCY_KEY_REUSED",
            "MALFORMED_REQUEST",
            "MANIFEST_ERROR",
            "METHOD_NOT_ALLOWED",
            "NOT_A_DEAD_LETTER",
            "NOT_FOUND",
            "NOT_STREAMING",
            "OVERLOADED",
            "QUEUE_FULL",
            "SCHEMA_UNUSABLE",
            "TASK_FINISHED",
            "TASK_NOT_JSON",
            "TASK_NOT_FOUND",
            "UNAUTHORIZED",
            "UNAVAILABLE",
            "UNSUPPORTED_MEDIA_TYPE",
            "WORKER_UNAVAILABLE",
        ),
        "one of its HTTP answers",
    ),
}


def error_codes_are_the_worker_s(ctx: LintContext) -> Iterator[Finding]:
    """CRK117 at each declared error code crank answers with itself: an error where
    crank's own failure would pass for the handler's, a warning where only the HTTP
    status tells them apart."""
    for i, cap in capabilities(ctx.data):
        for j, entry in _entries(cap, "errors"):
            code = entry.get("code")
            if not isinstance(code, str):
                continue
            if code in CRANK_TASK_ERROR_CODES:
                yield ctx.finding(
                    "CRK117",
                    ("capabilities", i, "errors", j, "code"),
                    f"error code {quoted(code)} is crank's own for "
                    f"{CRANK_TASK_ERROR_CODES[code]}: declared, such a task is answered as "
                    "the handler's declared error, and clients cannot tell which it was",
                    hint="give the worker's error a code of its own (crank's are listed "
                    "under CRK117 in the manifest reference)",
                )
            elif code in CRANK_ANSWER_CODES:
                yield ctx.finding(
                    "CRK117",
                    ("capabilities", i, "errors", j, "code"),
                    f"error code {quoted(code)} is crank's own for {CRANK_ANSWER_CODES[code]}: "
                    "clients tell the handler's from crank's only by the HTTP status",
                    hint="give the worker's error a code of its own",
                    severity="warning",
                )


def unique_across_plugins(ctx: LintContext) -> Iterator[Finding]:
    ours = [(i, c["id"]) for i, c in capabilities(ctx.data) if isinstance(c.get("id"), str)]
    if not ours:
        return
    for other in ctx.installed():
        theirs = capability_ids(other.data)
        for i, cid in ours:
            if cid in theirs:
                yield ctx.finding(
                    "CRK102",
                    ("capabilities", i, "id"),
                    f"capability id {quoted(cid)} is also declared by installed worker "
                    f"{quoted(_worker_name(other))} ({other.file})",
                    hint="capability ids are global; rename one, or uninstall the other worker",
                )


def deprecated_ids(data: Any) -> set[str]:
    return {d["id"] for _, d in deprecations(data) if isinstance(d.get("id"), str)}


def _targets(dep: dict[str, Any]) -> list[str]:
    """Where a deprecated entry routes: its replaced_by and its shim's map values."""
    found = dep.get("replaced_by")
    targets = [t for t in found if isinstance(t, str)] if isinstance(found, list) else []
    shim = dep.get("shim")
    mapping = shim.get("map") if isinstance(shim, dict) else None
    if isinstance(mapping, dict):
        targets += [t for t in mapping.values() if isinstance(t, str) and t not in targets]
    return targets


def _loop(start: str, edges: dict[str, list[str]]) -> list[str] | None:
    """The shortest route from ``start`` back to itself through deprecated ids, if any."""
    paths = [[start]]
    seen = {start}
    while paths:
        path = paths.pop(0)
        for nxt in edges.get(path[-1], ()):
            if nxt == start:
                return [*path, start]
            if nxt in edges and nxt not in seen:
                seen.add(nxt)
                paths.append([*path, nxt])
    return None


def routing_loops(ctx: LintContext) -> Iterator[Finding]:
    """CRK103 at each deprecated id whose replacements lead back to it: every call of
    it fails."""
    entries = list(deprecations(ctx.data))
    edges = {dep["id"]: _targets(dep) for _, dep in entries if isinstance(dep.get("id"), str)}
    for i, dep in entries:
        cid = dep.get("id")
        loop = _loop(cid, edges) if isinstance(cid, str) else None
        if loop is not None:
            yield ctx.finding(
                "CRK103",
                ("deprecated", i, "id"),
                f"deprecated capability {quoted(cid)} routes back to itself: {' -> '.join(loop)}",
                hint="every chain of replacements must end at a live capability",
            )


def replaced_by_exists(ctx: LintContext) -> Iterator[Finding]:
    # a deprecated id may be replaced by another deprecated id (renamed twice)
    known = capability_ids(ctx.data) | deprecated_ids(ctx.data)
    entries = list(deprecations(ctx.data))
    if not entries:
        return
    yield from routing_loops(ctx)
    installed: set[str] | None = None
    for i, dep in entries:
        targets = dep.get("replaced_by")
        if not isinstance(targets, list):
            continue
        for j, target in enumerate(targets):
            if not isinstance(target, str) or target in known:
                continue
            if installed is None:
                installed = set().union(
                    *(capability_ids(d.data) | deprecated_ids(d.data) for d in ctx.installed())
                )
            if target in installed:
                continue
            yield ctx.finding(
                "CRK103",
                ("deprecated", i, "replaced_by", j),
                f"replacement {quoted(target)} is not a capability of this manifest "
                "or of any installed worker",
                hint="declare it under `capabilities:`, install the worker that serves it, "
                "or fix the id",
            )


def _replacements(dep: dict[str, Any]) -> list[str]:
    targets = dep.get("replaced_by")
    return [t for t in targets if isinstance(t, str)] if isinstance(targets, list) else []


def splits_without_shim(ctx: LintContext) -> Iterator[Finding]:
    """CRK104 at each deprecated id split in several without a shim: every call of it
    fails, as nothing says which successor takes it."""
    for i, dep in deprecations(ctx.data):
        targets = _replacements(dep)
        if len(targets) > 1 and dep.get("shim") is None:
            yield ctx.finding(
                "CRK104",
                ("deprecated", i, "replaced_by"),
                f"{quoted(dep.get('id'))} is split into {len(targets)} capabilities but has no "
                "shim, so old clients cannot be routed",
                hint="add `shim: {select_by: FIELD, map: {VALUE: NEW_ID, ...}, default: VALUE}`",
            )


def shim_defaults_in_map(ctx: LintContext) -> Iterator[Finding]:
    """CRK104 at each shim default that is not a key of its map: every call of the
    deprecated id without the selector fails, as the default picks no successor."""
    for i, dep in deprecations(ctx.data):
        shim = dep.get("shim")
        mapping = shim.get("map") if isinstance(shim, dict) else None
        if not isinstance(shim, dict) or not isinstance(mapping, dict):
            continue
        default = shim.get("default")
        if isinstance(default, str) and default not in mapping:
            select_by = shim.get("select_by")
            yield ctx.finding(
                "CRK104",
                ("deprecated", i, "shim", "default"),
                f"shim default {quoted(default)} is not a key of shim.map, so a call without "
                f"{quoted(select_by)} cannot be routed",
                hint=f"use one of: {', '.join(str(k) for k in mapping)}",
            )


def _shim_map_outside_replacements(
    ctx: LintContext,
) -> Iterator[tuple[int, Any, str, list[str], dict[str, Any]]]:
    """(index, key, target, replaced_by, shim) of each shim map value not in its
    entry's replaced_by."""
    for i, dep in deprecations(ctx.data):
        targets = _replacements(dep)
        shim = dep.get("shim")
        mapping = shim.get("map") if isinstance(shim, dict) else None
        if not isinstance(shim, dict) or not isinstance(mapping, dict) or not targets:
            continue
        for key, target in mapping.items():
            if isinstance(target, str) and target not in targets:
                yield i, key, target, targets, shim


def _declared_anywhere(ctx: LintContext) -> Callable[[str], bool]:
    """Whether this manifest or an installed worker declares an id (live or deprecated);
    the installed manifests are read on the first id this file does not declare."""
    here = capability_ids(ctx.data) | deprecated_ids(ctx.data)
    installed: set[str] | None = None

    def declared(target: str) -> bool:
        nonlocal installed
        if target in here:
            return True
        if installed is None:
            installed = set().union(
                *(capability_ids(d.data) | deprecated_ids(d.data) for d in ctx.installed())
            )
        return target in installed

    return declared


def _unroutable_map_value(
    ctx: LintContext, i: int, key: Any, target: str, targets: list[str], shim: dict[str, Any]
) -> Finding:
    return ctx.finding(
        "CRK104",
        ("deprecated", i, "shim", "map", key),
        f"shim maps {quoted(key)} to {quoted(target)}, which is neither in replaced_by nor a "
        "capability of this manifest or of any installed worker, so a call whose "
        f"{quoted(shim.get('select_by'))} is {quoted(key)} cannot be routed",
        hint=f"map to one of: {', '.join(targets)}",
    )


def shim_map_values_exist(ctx: LintContext) -> Iterator[Finding]:
    """CRK104 at each shim map value outside replaced_by that neither this manifest nor
    an installed worker declares: every call whose selector picks it fails."""
    declared = _declared_anywhere(ctx)
    for i, key, target, targets, shim in _shim_map_outside_replacements(ctx):
        if not declared(target):
            yield _unroutable_map_value(ctx, i, key, target, targets, shim)


def split_has_shim(ctx: LintContext) -> Iterator[Finding]:
    yield from splits_without_shim(ctx)
    yield from shim_defaults_in_map(ctx)
    declared = _declared_anywhere(ctx)
    for i, key, target, targets, shim in _shim_map_outside_replacements(ctx):
        if not declared(target):
            yield _unroutable_map_value(ctx, i, key, target, targets, shim)
            continue
        yield ctx.finding(
            "CRK104",
            ("deprecated", i, "shim", "map", key),
            f"shim maps {quoted(key)} to {quoted(target)}, which is not in replaced_by",
            hint=f"map to one of: {', '.join(targets)}",
        )


def sunset_after_deprecation(ctx: LintContext) -> Iterator[Finding]:
    for i, dep in deprecations(ctx.data):
        since, sunset = _date(dep.get("deprecated_since")), _date(dep.get("sunset"))
        if since is not None and sunset is not None and sunset <= since:
            yield ctx.finding(
                "CRK105",
                ("deprecated", i, "sunset"),
                f"sunset {sunset.isoformat()} is not after deprecated_since {since.isoformat()}",
                hint="give clients time to migrate: set sunset after deprecated_since",
            )


def sunset_approaching(ctx: LintContext) -> Iterator[Finding]:
    for i, dep in deprecations(ctx.data):
        sunset = _date(dep.get("sunset"))
        if sunset is None:
            continue
        days = (sunset - ctx.today).days
        cid = dep.get("id")
        if days < 0:
            yield ctx.finding(
                "CRK106",
                ("deprecated", i, "sunset"),
                f"{quoted(cid)} passed its sunset on {sunset.isoformat()}; calls are answered "
                "410 Gone",
                hint="remove the deprecated entry (and its legacy routes), or move the sunset",
            )
        elif days <= SUNSET_WARNING_DAYS:
            when = "today" if days == 0 else f"in {days} day{'s' if days != 1 else ''}"
            yield ctx.finding(
                "CRK106",
                ("deprecated", i, "sunset"),
                f"{quoted(cid)} reaches its sunset {when} ({sunset.isoformat()})",
                hint="make sure clients have migrated, or move the sunset",
                severity="warning",
            )


#: How to fix a ``pattern`` (or ``patternProperties`` key) that Python's ``re`` refuses.
_PATTERN_HINT = (
    "crank checks patterns with Python's `re`, which lacks some ECMA-262 syntax such as "
    "\\p{L}: write it for Python (letters: [^\\W\\d_]) or drop the pattern"
)


def schemas_are_valid(ctx: LintContext) -> Iterator[Finding]:
    for i, cap in capabilities(ctx.data):
        for part in ("input", "output"):
            schema = cap.get(part)
            if not isinstance(schema, dict):
                continue  # the manifest schema reports a missing or non-mapping schema
            if is_plain_valid_schema(schema):
                continue  # certainly valid, decided without importing jsonschema
            from crank.manifest.jsonschema_lib import draft202012

            Draft202012Validator = draft202012()
            from jsonschema.exceptions import SchemaError

            try:
                Draft202012Validator.check_schema(schema)
            except SchemaError as exc:
                path: Path_ = ("capabilities", i, part, *exc.absolute_path)
                yield ctx.finding(
                    "CRK107",
                    path,
                    f"{part} is not a valid JSON Schema: {schema_error_message(exc)}",
                    hint=_PATTERN_HINT
                    if (exc.validator, exc.validator_value) == ("format", "regex")
                    else "see https://json-schema.org/draft/2020-12 for the keywords and values",
                )
                continue
            for where, ref in unresolved_refs(schema):
                message, hint = unresolved_ref_problem(part, ref)
                yield ctx.finding(
                    "CRK107", ("capabilities", i, part, *where, "$ref"), message, hint=hint
                )


def _walk(value: Any, path: Path_) -> Iterator[tuple[Path_, Any]]:
    yield path, value
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _walk(v, (*path, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _walk(v, (*path, i))


def _path_at(doc: LoadedDocument, line: int, col: int) -> Path_:
    """The innermost node starting at or before ``line:col``; ``()`` inside a comment."""
    lines = doc.text.splitlines()
    text = lines[line - 1] if line <= len(lines) else ""
    if "#" in text[: col - 1] and not any(pos[0] == line for pos in doc.positions.values()):
        return ()
    best: tuple[tuple[int, int], Path_] = ((0, 0), ())
    for path, pos in doc.positions.items():
        if best[0] < pos <= (line, col) or (pos == best[0] and len(path) > len(best[1])):
            best = (pos, path)
    return best[1]


def no_secrets(ctx: LintContext) -> Iterator[Finding]:
    from crank.manifest import secrets  # its patterns compile on first use, not at start-up

    hint = (
        "keep secrets out of manifests: read them from the environment (worker.env, secret: true)"
    )
    reported: set[Path_] = set()
    for match in secrets.scan_text(ctx.doc.text):
        path = _path_at(ctx.doc, match.line, match.col)
        if path:
            reported.add(path)
        yield _at(ctx, match.line, match.col, path, f"value looks like {match.kind}", hint)
    for path, value in _walk(ctx.data, ()):
        if path in reported or not path or not isinstance(path[-1], str):
            continue
        key = path[-1]
        if (
            secrets.is_secret_key(key)
            and isinstance(value, str | int | float)
            and secrets.is_literal_secret(value)
        ):
            reported.add(path)
            yield ctx.finding(
                "CRK109", path, f"{quoted(key)} holds a literal credential", hint=hint
            )
    for i, env in _entries(ctx.data.get("worker"), "env"):
        path = ("worker", "env", i, "default")
        name = env.get("name")
        literal = secrets.is_literal_secret(env.get("default"))
        if path in reported or not literal:
            continue
        if env.get("secret") is True:
            what = f"secret variable {quoted(name)}"
        elif isinstance(name, str) and secrets.is_secret_key(name):
            what = f"variable {quoted(name)}, named like a credential,"
        else:
            continue
        yield ctx.finding(
            "CRK109",
            path,
            f"{what} has a literal default",
            hint="secrets have no default in the manifest; set them in the environment "
            "(and mark the variable `secret: true`)",
        )


def _at(ctx: LintContext, line: int, col: int, path: Path_, message: str, hint: str) -> Finding:
    return Finding(ctx.doc.file, line, col, "CRK109", message, "error", path, hint)


def deprecated_not_active(ctx: LintContext) -> Iterator[Finding]:
    active = capability_ids(ctx.data)
    for i, dep in deprecations(ctx.data):
        cid = dep.get("id")
        if isinstance(cid, str) and cid in active:
            yield ctx.finding(
                "CRK110",
                ("deprecated", i, "id"),
                f"{quoted(cid)} is both deprecated and an active capability",
                hint="remove it from `capabilities:` (the shim routes old calls), "
                "or drop the deprecation",
            )


def scaling_bounds(ctx: LintContext) -> Iterator[Finding]:
    worker = ctx.data.get("worker")
    scaling = worker.get("scaling") if isinstance(worker, dict) else None
    if not isinstance(scaling, dict):
        return
    # an unset bound is its default: min_workers: 5 alone is above max_workers' 4
    low = scaling.get("min_workers", Scaling.min_workers)
    high = scaling.get("max_workers", Scaling.max_workers)
    if isinstance(low, int) and isinstance(high, int) and low > high:
        shown = f"{high}" if "max_workers" in scaling else f"{high}, its default"
        yield ctx.finding(
            "CRK111",
            ("worker", "scaling", "min_workers"),
            f"min_workers ({low}) is greater than max_workers ({shown})",
            hint="raise max_workers or lower min_workers",
        )


def examples_match_schemas(ctx: LintContext) -> Iterator[Finding]:
    for i, cap in capabilities(ctx.data):
        schema = cap.get("input")
        if not isinstance(schema, dict):
            continue
        inputs = [(j, e.get("input")) for j, e in _entries(cap, "examples")]
        inputs = [(j, data) for j, data in inputs if isinstance(data, dict)]
        if not inputs or (
            is_plain_valid_schema(schema) and all(conforms(d, schema) for _, d in inputs)
        ):
            continue  # nothing to check, or certainly fine without importing jsonschema
        from crank.manifest.jsonschema_lib import draft202012

        Draft202012Validator = draft202012()
        from jsonschema.exceptions import SchemaError

        try:
            Draft202012Validator.check_schema(schema)
        except SchemaError:
            continue  # CRK107 reports it
        if unresolved_refs(schema):
            continue  # CRK107 reports it: validating would fail on the reference
        validator = Draft202012Validator(schema)
        for j, data in inputs:
            error = next(iter(sorted(validator.iter_errors(data), key=lambda e: e.path)), None)
            if error is not None:
                yield ctx.finding(
                    "CRK112",
                    ("capabilities", i, "examples", j, "input", *error.absolute_path),
                    f"example input does not match the input schema: {schema_error_message(error)}",
                    hint="fix the example, or the capability's input schema",
                )


def schemas_say_what_they_mean(ctx: LintContext) -> Iterator[Finding]:
    """Unknown keywords and nulls in input/output schemas (see :mod:`.schema_keywords`)."""
    for i, cap in capabilities(ctx.data):
        for part in ("input", "output"):
            for problem in schema_problems(cap.get(part)):
                yield ctx.finding(
                    "CRK113",
                    ("capabilities", i, part, *problem.path),
                    f"{part} schema: {problem.message}",
                    hint=problem.hint,
                    key=problem.kind == "unknown-keyword",
                )
    yield from _yaml_booleans_in_data(ctx)


#: YAML 1.1 reads these unquoted words as booleans; JSON (and YAML 1.2) as text.
_WORD_BOOLEANS = frozenset({"yes", "no", "on", "off"})
#: Schema keywords whose values are data, not schemas.
_DATA_KEYWORDS = frozenset({"enum", "const", "default", "examples"})
#: Schema keywords whose keys are names, not keywords (``properties: {enum: ...}``).
_NAMING_KEYWORDS = frozenset(
    {"properties", "patternProperties", "$defs", "definitions", "dependentSchemas"}
)


def _is_data(path: Path_) -> bool:
    """Whether ``path``, inside a capability's input/output schema, is in a data value."""
    return any(
        key in _DATA_KEYWORDS and (k == 0 or path[k - 1] not in _NAMING_KEYWORDS)
        for k, key in enumerate(path)
    )


def _yaml_booleans_in_data(ctx: LintContext) -> Iterator[Finding]:
    """An unquoted ``yes``/``no``/``on``/``off`` in an enum, a const or an example is
    the boolean true or false to YAML: ``enum: [yes, no]`` refuses the text "yes"."""
    for path, spelling in sorted(ctx.doc.spellings.items(), key=lambda item: str(item[0])):
        if spelling.lower() not in _WORD_BOOLEANS or path[:1] != ("capabilities",):
            continue
        rest = path[2:]
        if rest[:1] in (("input",), ("output",)) and _is_data(rest[1:]):
            where = f"{rest[0]} schema"
        elif rest[:1] == ("examples",) and len(rest) > 3 and rest[2] in ("input", "output"):
            where = f"example {rest[2]}"
        else:
            continue
        value = "true" if spelling.lower() in ("yes", "on") else "false"
        yield ctx.finding(
            "CRK113",
            path,
            f"{where}: YAML reads the unquoted {spelling} as the boolean {value}, not as text",
            hint=f'quote it ("{spelling}") to mean the text, or write {value} to mean the boolean',
            severity="warning",
        )


def batching_fits_capability(ctx: LintContext) -> Iterator[Finding]:
    """A streaming task runs alone: no batching, no concurrency. A batch handler returns
    one output per input, so the output schema describes one item's output."""
    for i, cap in capabilities(ctx.data):
        batching = cap.get("batching")
        concurrency = cap.get("concurrency")
        if cap.get("streaming") is True:
            for key, present in (
                ("batching", isinstance(batching, dict)),
                ("concurrency", isinstance(concurrency, int) and concurrency > 1),
            ):
                if present:
                    yield ctx.finding(
                        "CRK114",
                        ("capabilities", i, key),
                        f"a streaming capability cannot declare {key}: a streaming task runs "
                        "alone, publishing its events as it goes",
                        hint=f"remove `{key}:`, or make the capability non-streaming",
                        key=True,
                    )
        output = cap.get("output")
        shape = output.get("type") if isinstance(output, dict) else None
        if isinstance(batching, dict) and shape == "array":
            yield ctx.finding(
                "CRK114",
                ("capabilities", i, "output", "type"),
                "with batching the output schema describes one task's output (the batch "
                "handler returns a list of them, one per input); an array here reads like "
                "the whole batch's",
                hint="describe one item's output, or disable CRK114 for this file if each "
                "task really answers a list",
                severity="warning",
            )


#: The checks whose errors make every call of a capability (or every call of a deprecated
#: id without its shim's selector) fail at run time, whatever else is installed: ``crank
#: run`` and worker processes refuse such a manifest at start
#: (:func:`crank.manifest.reading.unservable_findings`), with the findings of ``crank lint``.
SERVING_CHECKS: tuple[Callable[[LintContext], Iterable[Finding]], ...] = (
    schemas_are_valid,
    routing_loops,
    splits_without_shim,
    shim_defaults_in_map,
)


RULES: tuple[FunctionRule, ...] = (
    FunctionRule(
        "CRK101",
        "capability ids and legacy routes are unique within a file, and so are a "
        "capability's error codes, worker.env names and dependencies.system names",
        unique_in_file,
    ),
    FunctionRule(
        "CRK102", "capability ids are unique across installed workers", unique_across_plugins
    ),
    FunctionRule(
        "CRK103",
        "every replaced_by target exists, and no chain of replacements loops",
        replaced_by_exists,
    ),
    FunctionRule(
        "CRK104", "a split has a shim whose map and default are consistent", split_has_shim
    ),
    FunctionRule("CRK105", "sunset is after deprecated_since", sunset_after_deprecation),
    FunctionRule("CRK106", "warn 30 days before a sunset, error after it", sunset_approaching),
    FunctionRule(
        "CRK107",
        "input and output are valid JSON Schemas, each `$ref` resolving within its schema",
        schemas_are_valid,
    ),
    FunctionRule("CRK109", "no secret-looking values", no_secrets),
    FunctionRule(
        "CRK110", "a deprecated id is not also an active capability", deprecated_not_active
    ),
    FunctionRule("CRK111", "min_workers is not above max_workers", scaling_bounds),
    FunctionRule(
        "CRK112", "examples match their capability's input schema", examples_match_schemas
    ),
    FunctionRule(
        "CRK113",
        "input and output schemas use only JSON Schema keywords, and no null values; "
        "no unquoted yes/no/on/off in their data or in examples",
        schemas_say_what_they_mean,
    ),
    FunctionRule(
        "CRK114",
        "batching and concurrency are not declared on a streaming capability; a batching "
        "capability's output schema is one item's",
        batching_fits_capability,
    ),
    FunctionRule(
        "CRK117",
        "a capability's error codes are not codes crank answers with itself",
        error_codes_are_the_worker_s,
    ),
)


@hookimpl(tryfirst=True)
def crank_register_lint_rules(register: RegisterLintRule) -> None:
    for rule in RULES:
        register(rule)
