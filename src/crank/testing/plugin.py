"""The pytest plugin, auto-loaded through the ``pytest11`` entry point.

It is loaded in every pytest run where crank is installed, so it stays cheap
and quiet: only pytest and crank's small testing modules are imported here,
manifests are read only when strict mode needs them, dependency results are
cached per process, and the per-test hooks return early when no crank
dependency is involved. A project that has no crank manifest and sets no crank
option gets no header lines (``CI=true`` alone does not count); if its tests use
crank anyway, what applied is shown in the end-of-run summary instead.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import pytest

from crank.errors import UsageError
from crank.testing.dependencies import check_dependency
from crank.testing.ensure import OUTCOME_ATTR, dependency_mode, enforce
from crank.testing.fixtures import (
    crank_worker,
    gpu_strategy,
    gpu_strategy_for,
    mock_streaming_harness,
    onnxruntime_gpu_site,
    policy_key,
    strategy_key,
)
from crank.testing.strict import StrictPolicy, pop_policy, push_policy
from crank.testing.summary import DependencySummary

if TYPE_CHECKING:
    from collections.abc import Generator

    from crank.testing.ensure import DependencyOutcome
    from crank.testing.gpu import GpuStrategy

__all__ = ["crank_worker", "gpu_strategy", "mock_streaming_harness", "onnxruntime_gpu_site"]

summary_key = pytest.StashKey[DependencySummary]()
announced_key = pytest.StashKey[bool]()
REPORT_ATTR = "crank_dependency"
#: on the setup report of a test using ``gpu_strategy``: the strategy's summary lines
#: (a plain list, so that it reaches the xdist controller, which chose no strategy)
GPU_REPORT_ATTR = "crank_gpu_strategy"
#: environment variables that choose crank's test behaviour explicitly.
CRANK_ENV = ("CRANK_REQUIRE", "CRANK_GPU_STRATEGY")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("crank", "crank dependencies and GPU strategy")
    group.addoption(
        "--crank-require",
        dest="crank_require",
        default=None,
        metavar="all|declared|none|NAME,...",
        help="fail instead of skip when these dependencies are missing "
        "(default: CRANK_REQUIRE, else 'declared' when CI=true, else none)",
    )
    group.addoption(
        "--crank-gpu-strategy",
        dest="crank_gpu_strategy",
        default=None,
        metavar="auto|full_gpu|mock_gpu|cpu_fallback",
        help="force the GPU test strategy (default: CRANK_GPU_STRATEGY, else auto)",
    )
    parser.addini(
        "crank_manifests",
        type="linelist",
        default=[],
        help="extra globs (relative to the rootdir) of crank.yaml manifests whose declared "
        "dependencies strict mode requires",
    )
    parser.addini(
        "crank_dependencies",
        type="linelist",
        default=[],
        help="dependency specs the test suite itself needs (exe:redis-server, a test-only "
        "module); strict mode requires them like the manifests' (so CI=true fails, not skips)",
    )


def pytest_configure(config: pytest.Config) -> None:
    _check_gpu_strategy_request(config)
    config.addinivalue_line(
        "markers",
        "requires(*specs): skip (or fail in strict mode) unless every crank dependency spec "
        "is available, e.g. requires('exe:pandoc>=2.17', 'numpy>=1.26')",
    )
    _check_suite_specs(config)
    try:
        policy = StrictPolicy.resolve(
            config.getoption("crank_require"),
            os.environ,
            rootdir=config.rootpath,
            manifest_globs=tuple(config.getini("crank_manifests")),
            suite_specs=tuple(config.getini("crank_dependencies")),
            suite_file=config.inipath,
        )
    except UsageError as exc:
        raise pytest.UsageError(str(exc)) from None
    config.stash[policy_key] = policy
    session = SessionSummary(config)
    config.stash[summary_key] = session.summary
    config.pluginmanager.register(session, "crank-session-summary")
    push_policy(policy)


def _check_gpu_strategy_request(config: pytest.Config) -> None:
    """A misspelt strategy stops the run at start, as the header would (``-q`` has none)."""
    requested = config.getoption("crank_gpu_strategy")
    if not requested and not os.environ.get("CRANK_GPU_STRATEGY"):
        return  # the common case: nothing to check, nothing imported
    from crank.testing.gpu import resolve_request

    try:
        resolve_request(requested, os.environ)
    except UsageError as exc:
        raise pytest.UsageError(str(exc)) from None


def _check_suite_specs(config: pytest.Config) -> None:
    """A ``crank_dependencies`` spec crank cannot parse would match no dependency, so
    strict mode would silently not require it: refused at start instead."""
    specs = config.getini("crank_dependencies")
    if not specs:
        return  # the common case: no plugin loaded, nothing parsed
    from crank.testing.dependencies import dependency_registry
    from crank.testing.specs import parse_spec

    kinds = dependency_registry().checkers
    where = config.inipath or "the ini file"
    for spec in specs:
        try:
            parse_spec(spec, kinds)
        except UsageError as exc:
            raise pytest.UsageError(f"crank_dependencies in {where}: {exc}") from None


def pytest_unconfigure(config: pytest.Config) -> None:
    policy = config.stash.get(policy_key, None)
    if policy is not None:
        pop_policy(policy)


def project_uses_crank(config: pytest.Config) -> bool:
    """A crank manifest in the project, or a crank option set on purpose."""
    explicit = (
        config.getoption("crank_require") is not None
        or config.getoption("crank_gpu_strategy") is not None
        or any(os.environ.get(name, "").strip() for name in CRANK_ENV)
        or bool(config.getini("crank_manifests"))
        or bool(config.getini("crank_dependencies"))
    )
    return explicit or bool(config.stash[policy_key].manifests())


def crank_lines(config: pytest.Config, *, gpu: bool = True) -> list[str]:
    """What crank applies to this session: the strict policy and the GPU strategy."""

    lines = [f"crank: dependencies: {config.stash[policy_key].describe()}"]
    if not gpu:
        return lines
    try:
        strategy = gpu_strategy_for(config)
    except UsageError as exc:
        raise pytest.UsageError(str(exc)) from None
    return [*lines, *strategy_lines(strategy)]


def strategy_lines(strategy: GpuStrategy) -> list[str]:
    return [
        f"crank: gpu strategy: {strategy.name}",
        *(f"crank:   - {item}" for item in strategy.evidence),
    ]


def pytest_report_header(config: pytest.Config) -> list[str]:
    announce = project_uses_crank(config)
    config.stash[announced_key] = announce
    return crank_lines(config) if announce else []


@pytest.hookimpl(wrapper=True)
def pytest_runtestloop(session: pytest.Session) -> Generator[None, object, object]:
    # Set once around the whole test loop rather than per test: tests run in this
    # context, and a per-test wrapper would cost every test of every suite.
    with dependency_mode("pytest"):
        return (yield)


# Not tryfirst: after pytest's own skip/skipif evaluation (tryfirst), so a test marked
# to skip is skipped for its own reason, not failed in strict mode for a dependency it
# will never use; still before the fixtures, which pytest's runner (registered before
# any plugin, so called after) sets up.
@pytest.hookimpl
def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("requires") is None:  # the common case: one cheap lookup
        return
    marks = list(item.iter_markers("requires"))

    path, line = item.reportinfo()[:2]
    location = (os.fspath(path), (line or 0) + 1)
    for mark in marks:
        problem: str | None = None
        try:
            _check_marker(mark)
            results = [check_dependency(spec) for spec in mark.args]
        except UsageError as exc:  # a test author's mistake: said once, no traceback
            problem = str(exc)
        if problem is not None:
            where = f"{location[0]}:{location[1]}"
            pytest.fail(f"{where}: @pytest.mark.requires: {problem}", pytrace=False)
        for result in results:
            if not result.available:
                enforce(
                    result,
                    skip_message=mark.kwargs.get("reason"),
                    install_hint=mark.kwargs.get("hint"),
                    location=location,
                )


#: the keywords ``@pytest.mark.requires`` takes.
_MARKER_KEYWORDS = ("reason", "hint")


def _check_marker(mark: pytest.Mark) -> None:
    """A marker that names nothing, or not as specs, or with an unknown keyword."""
    example = (
        "write it like @pytest.mark.requires('exe:pandoc>=2.17', hint='apt-get install pandoc')"
    )
    if not mark.args:
        raise UsageError("names no dependency, so it checks nothing", hint=example)
    for spec in mark.args:
        if not isinstance(spec, str):
            raise UsageError(f"takes spec strings, got {spec!r}", hint=example)
    unknown = sorted(set(mark.kwargs) - set(_MARKER_KEYWORDS))
    if unknown:
        raise UsageError(
            f"unknown keyword {unknown[0]}=",
            hint=f"it takes {' and '.join(k + '=' for k in _MARKER_KEYWORDS)}",
        )
    for key in _MARKER_KEYWORDS:
        # None is the documented default: a helper forwarding hint=hint may pass it
        if mark.kwargs.get(key) is not None and not isinstance(mark.kwargs[key], str):
            raise UsageError(f"{key}= takes a string, got {mark.kwargs[key]!r}", hint=example)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if call.when == "setup" and "gpu_strategy" in getattr(item, "fixturenames", ()):
        strategy = item.config.stash.get(strategy_key, None)
        if strategy is not None:
            setattr(report, GPU_REPORT_ATTR, strategy_lines(strategy))
    excinfo = call.excinfo
    if excinfo is None:
        return report
    outcome: DependencyOutcome | None = getattr(excinfo.value, OUTCOME_ATTR, None)
    if outcome is None:
        return report
    if hasattr(report, "wasxfail"):
        if _xfail_names_the_error(item):
            return report  # xfail(raises=DependencyBroken): expected, reported as xfailed
        # An xfail is the test's own expected failure, not a missing install step or a
        # broken import: those fail, as the summary says, instead of passing as xfailed.
        del report.wasxfail
        report.outcome = "failed"
    setattr(report, REPORT_ATTR, outcome.as_dict())
    if report.skipped and outcome.path is not None and isinstance(report.longrepr, tuple):
        # Report the skip where the test asked for the dependency, not inside crank.
        report.longrepr = (outcome.path, outcome.lineno or 0, report.longrepr[2])
    return report


def _xfail_names_the_error(item: pytest.Item) -> bool:
    """An ``xfail`` whose ``raises=`` matched: pytest kept it xfailed only if it did."""
    mark = item.get_closest_marker("xfail")
    return mark is not None and mark.kwargs.get("raises") is not None


class SessionSummary:
    """Per-session hooks that need the config: collect dependency outcomes, print them."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.summary = DependencySummary()
        #: the GPU strategy tests used, as reported (by xdist workers, too)
        self.gpu_lines: list[str] | None = None
        #: ``--crank-require=NAME,...`` only: the names of every dependency a collected
        #: test's marker names or a test checked (xdist workers send theirs)
        self.used_keys: set[str] | None = (
            set() if config.stash[policy_key].mode == "names" else None
        )

    def pytest_itemcollected(self, item: pytest.Item) -> None:
        # every collected item, deselected ones too: a name used there is not misspelt
        if self.used_keys is None or item.get_closest_marker("requires") is None:
            return
        from crank.testing.dependencies import dependency_registry
        from crank.testing.specs import parse_spec
        from crank.testing.strict import spec_keys

        kinds = dependency_registry().checkers
        for mark in item.iter_markers("requires"):
            for spec in mark.args:
                try:
                    parsed = parse_spec(spec, kinds)
                except (UsageError, AttributeError, TypeError):
                    continue  # a marker written wrong fails its test at setup
                self.used_keys.update(spec_keys(parsed.raw.strip(), parsed.kind, parsed.name))

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if self.used_keys is None:
            return
        from crank.testing.dependencies import cached_results
        from crank.testing.strict import dependency_keys

        for result in cached_results().values():
            self.used_keys.update(dependency_keys(result))
        workeroutput = getattr(self.config, "workeroutput", None)
        if workeroutput is not None:  # an xdist worker: the controller prints the summary
            workeroutput["crank_used_keys"] = sorted(self.used_keys)

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: Any, error: object) -> None:
        if self.used_keys is not None:
            self.used_keys.update(getattr(node, "workeroutput", {}).get("crank_used_keys", ()))

    def unmatched_lines(self) -> list[str]:
        """A required name no dependency answered to: a misspelling that requires nothing."""
        if self.used_keys is None or self.config.option.collectonly:
            return []
        policy = self.config.stash[policy_key]
        try:
            unmatched = policy.unmatched_names(self.used_keys)
        except UsageError:  # a manifest strict mode cannot read: its tests said so
            return []
        return [
            f"crank: warning: {name!r} ({policy.source}) matched no dependency: no test "
            "checked it, no requires marker names it and no manifest or crank_dependencies "
            "declares it, so it required nothing (misspelt?)"
            for name in unmatched
        ]

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        gpu_lines: list[str] | None = getattr(report, GPU_REPORT_ATTR, None)
        if gpu_lines is not None:
            self.gpu_lines = list(gpu_lines)
        info: dict[str, Any] | None = getattr(report, REPORT_ATTR, None)
        if info is not None:
            self.summary.record(report.nodeid, info)

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        lines = [*self.summary.lines(), *self.unmatched_lines()]
        # Quiet header (a project without crank manifests) or no header (-q): if the
        # tests used crank, say here which policy and strategy applied to them.
        gpu_lines = self.gpu_lines
        if gpu_lines is None and strategy_key in self.config.stash:
            gpu_lines = strategy_lines(self.config.stash[strategy_key])
        context: list[str] = []
        if not self.config.stash.get(announced_key, False) and (lines or gpu_lines):
            context = [*crank_lines(self.config, gpu=False), *(gpu_lines or [])]
        if lines or context:
            terminalreporter.section("crank dependencies", sep="-")
            for line in [*context, *lines]:
                terminalreporter.write_line(line)
