"""crank's own subcommands, registered through the same hook third parties use."""

from __future__ import annotations

from typing import TYPE_CHECKING

from crank.cli.group import LazyCommand
from crank.hookspecs import hookimpl

if TYPE_CHECKING:
    from crank.plugin import RegisterCommand

#: name, "module:command", one-line help (shown by ``crank --help`` without imports).
BUILTIN_COMMANDS: tuple[tuple[str, str, str], ...] = (
    ("lint", "crank.cli.lint:lint", "Validate manifests (schema and lint rules)."),
    ("schema", "crank.cli.lint:schema", "Print the manifest JSON Schema."),
    ("plugins", "crank.cli.plugins:plugins", "List installed plugins and their status."),
    ("routes", "crank.cli.routing:routes", "Print the capability routing table."),
    ("compat", "crank.cli.routing:compat", "Find manifest changes that strand clients."),
    ("invoke", "crank.cli.workers:invoke", "Run a capability in-process through the router."),
    ("test-worker", "crank.cli.workers:test_worker", "Run a worker's examples and self-tests."),
    ("run", "crank.cli.run:run", "Serve workers over HTTP and from a durable queue."),
    ("status", "crank.cli.status:status", "Print the system health report of a running crank."),
    ("tasks", "crank.cli.tasks:tasks", "List, show, cancel and redrive tasks of a running crank."),
    ("new-worker", "crank.cli.generate:new_worker", "Scaffold a new worker package."),
    ("render", "crank.cli.generate:render", "Render one deployment artifact from a manifest."),
    (
        "check",
        "crank.cli.generate:check",
        "Find deployment artifacts that drifted from the manifest.",
    ),
    ("migration", "crank.cli.migration:migration", "Create and track worker migration checklists."),
    ("build", "crank.cli.build:build", "Build a worker's container image."),
    ("lock", "crank.cli.build:lock", "Lock a worker's dependencies with hashes."),
)


@hookimpl(tryfirst=True)
def crank_register_commands(register: RegisterCommand) -> None:
    for name, target, short_help in BUILTIN_COMMANDS:
        register(LazyCommand(name, target, short_help))
