"""crank example plugin: workers that depend on HTTP services.

Registered through the ``crank`` entry-point group (see pyproject.toml), it adds
one contribution of each kind:

* the dependency kinds ``http`` and ``https``: ``ensure_dependency(
  "http://127.0.0.1:9200/health")`` and a manifest's ``check: http://...`` ask
  the service itself (:mod:`crank_plugin_example.checker`);
* the lint rule ``EXA001``: a system dependency checked over HTTP says how to
  start the service (:mod:`crank_plugin_example.rule`);
* the artifact ``wait-for-services``: ``deployment/wait-for-services.sh``, which
  waits for every declared HTTP service before the worker starts
  (:mod:`crank_plugin_example.renderer`);
* the command ``crank services``: is each declared HTTP service up?
  (:mod:`crank_plugin_example.command`).

crank imports this module in every ``crank`` command, ``crank --help``
included, so it imports nothing but the hook marker; each hook imports what it
registers when crank asks for it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from crank.plugin import hookimpl

if TYPE_CHECKING:
    from crank.plugin import (
        RegisterCommand,
        RegisterDependencyChecker,
        RegisterLintRule,
        RegisterRenderer,
    )


@hookimpl
def crank_register_commands(register: RegisterCommand) -> None:
    from crank.plugin import LazyCommand

    # listed by `crank --help` without importing the command's module
    register(
        LazyCommand(
            "services",
            "crank_plugin_example.command:services",
            "Check the HTTP services the workers declare.",
        )
    )


@hookimpl
def crank_register_lint_rules(register: RegisterLintRule) -> None:
    from crank_plugin_example.rule import HTTP_DEPENDENCY_HINT

    register(HTTP_DEPENDENCY_HINT)


@hookimpl
def crank_register_renderers(register: RegisterRenderer) -> None:
    from crank_plugin_example.renderer import WaitForServices

    register(WaitForServices())


@hookimpl
def crank_register_dependency_checkers(register: RegisterDependencyChecker) -> None:
    from crank_plugin_example.checker import check_http

    register("http", check_http)  # a URL's scheme is its kind: http://... and https://...
    register("https", check_http)
