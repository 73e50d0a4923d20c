"""GitHub Actions workflow and pre-commit configuration renderers."""

from __future__ import annotations

import shlex
from typing import TYPE_CHECKING, Any

from crank import DISTRIBUTION
from crank.generate.context import crank_version
from crank.generate.render import TemplateRenderer

if TYPE_CHECKING:
    from collections.abc import Mapping

    from crank.generate.project import WorkerProject


def ci_context(project: WorkerProject) -> Mapping[str, Any]:
    return {"crank_requirement": shlex.quote(f"{DISTRIBUTION}=={crank_version()}")}


CI_WORKFLOW = TemplateRenderer(
    name="ci",
    description="GitHub Actions workflow: lint (crank lint, ruff), test (pytest, strict), build.",
    files=((".github/workflows/ci.yml", "ci.yml.j2"),),
    context_extra=ci_context,
)

PRE_COMMIT = TemplateRenderer(
    name="precommit",
    description=".pre-commit-config.yaml with crank-lint, crank check, gitleaks and ruff.",
    files=((".pre-commit-config.yaml", "precommit.yaml.j2"),),
)
