"""GitHub Actions workflow, pre-commit configuration and yamllint configuration renderers.

Third-party actions and hooks are pinned: actions by commit SHA (a tag can be
moved; the tag stays beside it as a comment), hooks by release tag (what
pre-commit supports). ruff has one version in both CI and pre-commit.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from crank import DISTRIBUTION
from crank.generate.context import crank_version
from crank.generate.render import TemplateRenderer

if TYPE_CHECKING:
    from collections.abc import Mapping

    from crank.generate.project import WorkerProject


@dataclass(frozen=True)
class PinnedAction:
    repository: str
    sha: str
    tag: str

    @property
    def uses(self) -> str:
        return f"{self.repository}@{self.sha}  # {self.tag}"


CHECKOUT = PinnedAction("actions/checkout", "34e114876b0b11c390a56381ad16ebd13914f8d5", "v4.3.1")
SETUP_PYTHON = PinnedAction(
    "actions/setup-python", "a26af69be951a213d495a4c3e4e4022e16d87065", "v5.6.0"
)
RUFF_VERSION = "0.17.5"
YAMLLINT_VERSION = "1.38.0"
PRE_COMMIT_HOOKS_VERSION = "6.0.0"
GITLEAKS_VERSION = "8.21.2"


def ci_context(project: WorkerProject) -> Mapping[str, Any]:
    return {
        "crank_requirement": shlex.quote(f"{DISTRIBUTION}=={crank_version()}"),
        "checkout": CHECKOUT,
        "setup_python": SETUP_PYTHON,
        "ruff_requirement": shlex.quote(f"ruff=={RUFF_VERSION}"),
        "yamllint_requirement": shlex.quote(f"yamllint=={YAMLLINT_VERSION}"),
    }


def precommit_context(project: WorkerProject) -> Mapping[str, Any]:
    return {
        "crank_dependency": f"{DISTRIBUTION}=={crank_version()}",
        "ruff_version": RUFF_VERSION,
        "yamllint_version": YAMLLINT_VERSION,
        "pre_commit_hooks_version": PRE_COMMIT_HOOKS_VERSION,
        "gitleaks_version": GITLEAKS_VERSION,
    }


CI_WORKFLOW = TemplateRenderer(
    name="ci",
    description="GitHub Actions workflow: lint (crank lint, ruff, yamllint, crank check), "
    "tests on every supported Python, image build from the lock.",
    files=((".github/workflows/ci.yml", "ci.yml.j2"),),
    context_extra=ci_context,
)

PRE_COMMIT = TemplateRenderer(
    name="precommit",
    description=".pre-commit-config.yaml: file checks, ruff, yamllint, gitleaks, crank lint "
    "and crank check, all installable by pre-commit itself.",
    files=((".pre-commit-config.yaml", "precommit.yaml.j2"),),
    context_extra=precommit_context,
)

YAMLLINT = TemplateRenderer(
    name="yamllint",
    description=".yamllint: yamllint's default rules, which every generated YAML file passes.",
    files=((".yamllint", "yamllint.j2"),),
)
