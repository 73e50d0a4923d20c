"""crank's own artifact renderers, registered the way a third party would."""

from __future__ import annotations

from typing import TYPE_CHECKING

from crank.hookspecs import hookimpl

if TYPE_CHECKING:
    from crank.plugin import RegisterRenderer


@hookimpl(tryfirst=True)
def crank_register_renderers(register: RegisterRenderer) -> None:
    # lazy: this module loads with every crank command; the renderers are wanted
    # only by render, check and new-worker
    from crank.generate.ci import CI_WORKFLOW, PRE_COMMIT, YAMLLINT
    from crank.generate.compose import COMPOSE
    from crank.generate.docker import DOCKERFILE, DOCKERIGNORE
    from crank.generate.envfile import ENV_EXAMPLE
    from crank.generate.k8s import K8S

    for renderer in (
        DOCKERFILE,
        DOCKERIGNORE,
        CI_WORKFLOW,
        COMPOSE,
        K8S,
        PRE_COMMIT,
        ENV_EXAMPLE,
        YAMLLINT,
    ):
        register(renderer)
