"""CRK116: the manifest's dependencies can be read by the tools that use them.

``dependencies.python`` feeds pip, the generated pyproject and lock files, and
``dependencies.system[].check`` the dependency checkers of ``crank test-worker`` and
the runtime. A spec that does not parse used to pass lint and fail only there. The
checkers' kinds are registered by plugins, so the rule belongs to the testing layer
and is registered through ``crank_register_lint_rules`` like any plugin's rule.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from crank.errors import UsageError
from crank.hookspecs import hookimpl
from crank.manifest.findings import quoted
from crank.manifest.rules import FunctionRule

if TYPE_CHECKING:
    from collections.abc import Iterator

    from crank.manifest.findings import Finding
    from crank.manifest.lint import LintContext
    from crank.plugin import RegisterLintRule


def _list(value: Any, key: str) -> list[Any]:
    items = value.get(key) if isinstance(value, dict) else None
    return items if isinstance(items, list) else []


def dependencies_parse(ctx: LintContext) -> Iterator[Finding]:
    deps = ctx.data.get("dependencies")
    python = [(i, r) for i, r in enumerate(_list(deps, "python")) if isinstance(r, str)]
    if python:
        from packaging.requirements import InvalidRequirement, Requirement

        for i, text in python:
            try:
                Requirement(text)
            except InvalidRequirement as exc:
                why = str(exc).splitlines()[0]
                yield ctx.finding(
                    "CRK116",
                    ("dependencies", "python", i),
                    f"{quoted(text)} is not a PEP 508 requirement: {why}",
                    hint="write a distribution name, optionally with a version: "
                    "'scikit-learn>=1.4'",
                )
    system = [(i, e) for i, e in enumerate(_list(deps, "system")) if isinstance(e, dict)]
    if not system:
        return
    from crank.testing.dependencies import check_version_command_applies, dependency_registry
    from crank.testing.gpu_checks import check_gpu_spec
    from crank.testing.specs import parse_spec, version_argv

    kinds = dependency_registry().checkers
    for i, entry in system:
        check, command = entry.get("check"), entry.get("version_command")
        problems: list[tuple[str, UsageError]] = []
        if isinstance(check, str) and check.strip():  # the schema reports an empty one
            try:
                parsed = parse_spec(check, kinds)
                check_gpu_spec(parsed)
            except UsageError as exc:
                problems.append(("check", exc))
            else:
                if isinstance(command, str):
                    try:
                        check_version_command_applies(parsed)
                    except UsageError as exc:
                        problems.append(("version_command", exc))
        if isinstance(command, str):
            try:
                version_argv(command)
            except UsageError as exc:
                problems.append(("version_command", exc))
        for key, problem in problems:
            yield ctx.finding(
                "CRK116", ("dependencies", "system", i, key), problem.message, hint=problem.hint
            )


RULE = FunctionRule(
    "CRK116",
    "dependencies.python holds PEP 508 requirements and dependencies.system checks are "
    "specs a dependency checker reads",
    dependencies_parse,
)


@hookimpl
def crank_register_lint_rules(register: RegisterLintRule) -> None:
    register(RULE)
