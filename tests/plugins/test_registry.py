"""The Registry: one set of rules for every kind of contribution, through pluggy's calls."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
import pluggy
import pytest

from crank import hookspecs
from crank.cli.group import COMMANDS
from crank.generate.render import RENDERERS, RenderedFile
from crank.hookspecs import hookimpl
from crank.manifest.lint import LINT_RULES
from crank.manifest.rules import FunctionRule
from crank.plugins import WORKERS, CrankPluginManager, PluginLoadWarning
from crank.testing.dependencies import DEPENDENCY_CHECKERS, DependencyResult

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from crank.contributions import ContributionKind
    from crank.testing.specs import DependencySpec


#: A worker manifest that exists (a registered path must be a file).
MANIFEST = (
    Path(__file__).resolve().parents[2]
    / "plugins"
    / "crank-text-streamer"
    / "src"
    / "crank_text_streamer"
    / "crank.yaml"
)


@dataclass(frozen=True)
class Renderer:
    name: str
    description: str = "a test renderer"

    def render(self, project: Any) -> tuple[RenderedFile, ...]:
        return ()


def _checker(spec: DependencySpec) -> DependencyResult:
    return DependencyResult.found(spec)


def _other_checker(spec: DependencySpec) -> DependencyResult:
    return DependencyResult.missing(spec, "never there")


def _no_rule(ctx: Any) -> tuple[Any, ...]:
    return ()


def _describe(value: Any) -> str:
    """Commands compare by identity; their help tells the variants apart."""
    return f"{value.name}: {value.help}" if isinstance(value, click.Command) else repr(value)


@dataclass(frozen=True)
class Kind:
    """A contribution kind, and how to make the arguments of a registration of ``name``."""

    kind: ContributionKind[Any]
    name: str
    make: Callable[[int], tuple[Any, ...]]  # variant -> register(*args)
    unusable: tuple[Any, ...]
    unusable_message: str


KINDS = [
    Kind(
        COMMANDS,
        "greet",
        lambda n: (click.Command("greet", help=f"variant {n}"),),
        (click.Command(None),),
        "crank_register_commands got <Command None>, expected a named click.Command",
    ),
    Kind(
        LINT_RULES,
        "ACME001",
        lambda n: (FunctionRule("ACME001", f"variant {n}", _no_rule),),
        ("ACME001",),
        "crank_register_lint_rules got 'ACME001', which is not a lint rule",
    ),
    Kind(
        RENDERERS,
        "notes",
        lambda n: (Renderer("notes", f"variant {n}"),),
        ("notes",),
        "crank_register_renderers got 'notes', not an ArtifactRenderer",
    ),
    Kind(
        DEPENDENCY_CHECKERS,
        "office",
        lambda n: ("office", (_checker, _other_checker)[n]),
        ("office", None),
        "dependency checker for kind 'office' is not callable: None",
    ),
    Kind(
        WORKERS,
        str(MANIFEST),
        lambda n: (MANIFEST if n == 0 else str(MANIFEST),),
        (42,),
        "crank_register_workers got 42, not the path of a crank.yaml",
    ),
]
IDS = [k.kind.hook.removeprefix("crank_register_") for k in KINDS]


class Registers:
    """A plugin that registers the given argument tuples through one hook."""

    def __init__(self, hook: str, *registrations: tuple[Any, ...], raise_after: bool = False):
        self.registrations = registrations
        self.raise_after = raise_after

        def implementation(register: Callable[..., None]) -> None:
            for args in self.registrations:
                register(*args)
            if self.raise_after:
                raise RuntimeError("exploded after registering")

        setattr(self, hook, hookimpl(implementation))


@pytest.fixture
def manager() -> Iterator[CrankPluginManager]:
    """A manager with the hook specs and no plugin at all."""
    pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    yield CrankPluginManager(pm)


@pytest.mark.parametrize("case", KINDS, ids=IDS)
def test_a_name_registered_twice_keeps_the_first_call_and_reports_the_second(
    manager: CrankPluginManager, case: Kind
) -> None:
    manager.register(Registers(case.kind.hook, case.make(0)), name="older")
    manager.register(Registers(case.kind.hook, case.make(1)), name="newer")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        found = manager.collect(case.kind)
    # pluggy calls the last registered plugin first: its registration keeps the name
    assert list(found) == [case.name]
    assert found[case.name].plugin == "newer"
    assert _describe(found[case.name].value) == _describe(case.kind.accept(*case.make(1))[1])
    label = case.kind.name_label
    expected = (
        f"crank plugin 'older' registered {label} {case.name!r}, which was skipped: "
        f"{label} {case.name!r} is registered twice ('newer' registered it first)"
    )
    if case.kind is WORKERS:  # the same path, spelled twice: one worker, no conflict
        assert [str(w.message) for w in caught] == []
        assert manager.problems() == ()
        return
    assert [(w.category, str(w.message)) for w in caught] == [(PluginLoadWarning, expected)]
    (problem,) = manager.problems("older")
    assert (str(problem), problem.kind, problem.hook) == (expected, "duplicate", case.kind.hook)
    assert problem.hint == "disable one of the two plugins with CRANK_DISABLE_PLUGINS"


@pytest.mark.parametrize("case", KINDS, ids=IDS)
def test_the_same_contribution_twice_is_not_a_conflict(
    manager: CrankPluginManager, case: Kind
) -> None:
    args = case.make(0)
    manager.register(Registers(case.kind.hook, args, args), name="twice")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        found = manager.collect(case.kind)
    assert [(n, c.plugin) for n, c in found.items()] == [(case.name, "twice")]
    assert manager.problems() == ()


@pytest.mark.parametrize("case", KINDS, ids=IDS)
def test_an_unusable_contribution_is_skipped_and_the_rest_kept(
    manager: CrankPluginManager, case: Kind
) -> None:
    manager.register(Registers(case.kind.hook, case.unusable, case.make(0)), name="sloppy")
    with pytest.warns(PluginLoadWarning) as caught:
        found = manager.collect(case.kind)
    assert list(found) == [case.name]
    expected = (
        f"crank plugin 'sloppy' registered an unusable {case.kind.noun}, which was skipped: "
        f"{case.unusable_message}"
    )
    assert [str(w.message) for w in caught] == [expected]
    assert [p.kind for p in manager.problems("sloppy")] == ["unusable"]


@pytest.mark.parametrize("case", KINDS, ids=IDS)
def test_a_hook_that_raises_keeps_what_it_registered_and_spares_the_others(
    manager: CrankPluginManager, case: Kind
) -> None:
    manager.register(Registers(case.kind.hook, case.make(0), raise_after=True), name="broken")
    manager.register(Registers(case.kind.hook), name="healthy-but-empty")
    with pytest.warns(PluginLoadWarning) as caught:
        found = manager.collect(case.kind)
    assert [(n, c.plugin) for n, c in found.items()] == [(case.name, "broken")]
    assert [str(w.message) for w in caught] == [
        f"crank plugin 'broken' failed in {case.kind.hook} and was skipped: "
        "RuntimeError: exploded after registering"
    ]
    assert manager.problems("healthy-but-empty") == ()


def test_a_hook_that_calls_sys_exit_is_a_failed_plugin_not_the_end_of_crank(
    manager: CrankPluginManager,
) -> None:
    class Exits:
        @hookimpl
        def crank_register_commands(self, register: Callable[..., None]) -> None:
            raise SystemExit(3)

    manager.register(Exits(), name="exits")
    with pytest.warns(PluginLoadWarning) as caught:
        found = manager.collect(COMMANDS)
    assert found == {}
    assert [str(w.message) for w in caught] == [
        "crank plugin 'exits' failed in crank_register_commands and was skipped: SystemExit: 3"
    ]


def test_a_problem_is_warned_once_and_forgotten_with_its_plugin(
    manager: CrankPluginManager,
) -> None:
    args = KINDS[0].make(0)
    manager.register(Registers(COMMANDS.hook, args), name="first")
    manager.register(Registers(COMMANDS.hook, KINDS[0].make(1)), name="second")
    with pytest.warns(PluginLoadWarning):
        manager.collect(COMMANDS)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        manager.collect(COMMANDS)  # the same problem again: recorded, not re-warned
    assert [p.plugin for p in manager.problems()] == ["first"]
    manager.unregister("second")
    assert list(manager.collect(COMMANDS)) == ["greet"]
    assert manager.problems() == ()  # the latest collection found nothing wrong


def test_crank_own_contributions_come_first_and_tryfirst_is_honoured(
    manager: CrankPluginManager,
) -> None:
    class Builtin:
        @hookimpl(tryfirst=True)
        def crank_register_commands(self, register: Callable[..., None]) -> None:
            register(click.Command("lint", help="crank's own"))

    class Later:
        @hookimpl
        def crank_register_commands(self, register: Callable[..., None]) -> None:
            register(click.Command("lint", help="a plugin's"))

    manager.register(Builtin(), name="crank.cli.builtin")
    manager.register(Later(), name="later")
    with pytest.warns(PluginLoadWarning, match="'later' registered command 'lint'"):
        found = manager.collect(COMMANDS)
    assert found["lint"].plugin == "crank.cli.builtin"


def test_each_plugin_is_called_through_pluggy_with_tracing_and_wrappers(
    manager: CrankPluginManager,
) -> None:
    calls: list[list[str]] = []
    wrapped: list[str] = []

    def before(hook_name: str, impls: list[Any], kwargs: dict[str, Any]) -> None:
        calls.append([i.plugin_name for i in impls])

    class Wrapper:
        @hookimpl(wrapper=True)
        def crank_register_commands(self, register: Callable[..., None]) -> Iterator[None]:
            wrapped.append("around")
            return (yield)

    manager.register(Registers(COMMANDS.hook, (click.Command("a"),)), name="one")
    manager.register(Registers(COMMANDS.hook, (click.Command("b"),)), name="two")
    manager.register(Wrapper(), name="wrapper")
    undo = manager.pm.add_hookcall_monitoring(before, lambda *args: None)
    try:
        found = manager.collect(COMMANDS)
    finally:
        undo()
    assert sorted(found) == ["a", "b"]
    # one pluggy call per plugin, last registered first, the wrapper around each
    assert calls == [["two", "wrapper"], ["one", "wrapper"]]
    assert wrapped == ["around", "around"]


def test_contributions_returned_instead_of_registered_are_reported(
    manager: CrankPluginManager,
) -> None:
    class Returns:
        @hookimpl
        def crank_register_commands(self, register: Callable[..., None]) -> Any:
            register(click.Command("greet"))
            return [click.Command("wave")]

    manager.register(Returns(), name="returns")
    with pytest.warns(PluginLoadWarning) as caught:
        found = manager.collect(COMMANDS)
    assert list(found) == ["greet"]
    (problem,) = manager.problems("returns")
    assert (problem.kind, problem.hook) == ("unusable", COMMANDS.hook)
    assert str(problem) == (
        "crank plugin 'returns' returned [<Command wave>] from crank_register_commands, "
        "which was ignored: the hook's return value is not read"
    )
    assert [str(w.message) for w in caught] == [str(problem)]


def test_a_misspelt_hook_is_reported_and_not_listed_as_a_hook(
    manager: CrankPluginManager,
) -> None:
    class Misspelt:
        @hookimpl
        def crank_register_command(self, register: Callable[..., None]) -> None:
            register(click.Command("greet"))

        @hookimpl
        def crank_register_renderers(self, register: Callable[..., None]) -> None:
            pass

        def crank_helper(self) -> None:
            """Not a hook implementation: crank never calls it, and says nothing of it."""

    with pytest.warns(PluginLoadWarning) as caught:
        manager.register(Misspelt(), name="misspelt")
    (record,) = manager.records
    assert record.hooks == ("crank_register_renderers",)
    (problem,) = manager.problems("misspelt")
    assert (problem.kind, problem.hook) == ("unknown", "crank_register_command")
    assert str(problem) == (
        "crank plugin 'misspelt' implements crank_register_command, which is not a crank hook "
        "(did you mean crank_register_commands?), so it is never called"
    )
    assert [str(w.message) for w in caught] == [str(problem)]
    manager.unregister("misspelt")
    assert manager.problems() == ()


def test_a_worker_manifest_that_is_not_a_file_is_skipped(
    manager: CrankPluginManager, tmp_path: Path
) -> None:
    missing = tmp_path / "crank.yaml"
    manager.register(Registers(WORKERS.hook, (missing,), (MANIFEST,)), name="stale")
    with pytest.warns(PluginLoadWarning):
        assert manager.manifest_paths() == [MANIFEST]
    (problem,) = manager.problems("stale")
    assert str(problem) == (
        "crank plugin 'stale' registered an unusable worker manifest, which was skipped: "
        f"crank_register_workers got {str(missing)!r}, which is not a file"
    )


def test_a_hook_without_hookimpl_is_reported(manager: CrankPluginManager) -> None:
    class Undecorated:
        def crank_register_commands(self, register: Callable[..., None]) -> None:
            register(click.Command("greet"))

    with pytest.warns(PluginLoadWarning):
        manager.register(Undecorated(), name="undecorated")
    assert manager.records[0].hooks == ()
    assert [str(p) for p in manager.problems("undecorated")] == [
        "crank plugin 'undecorated' defines crank_register_commands without @hookimpl, so it "
        "is never called"
    ]
