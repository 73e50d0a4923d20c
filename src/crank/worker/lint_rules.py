"""The lint rules that need the worker machinery: CRK108, the entrypoint matches, and
CRK115, each handler fits its capability's batching and concurrency.

They import the worker's entrypoint and compare its handlers with the declared
capabilities, so they belong to the worker layer, above the manifest; they are
registered through ``crank_register_lint_rules`` like any plugin's rules.
"""

from __future__ import annotations

import importlib.util
import sys
from typing import TYPE_CHECKING

from crank.errors import WorkerError
from crank.hookspecs import hookimpl
from crank.manifest.rules import FunctionRule, Path_, capabilities

if TYPE_CHECKING:
    from collections.abc import Iterator

    from crank.manifest.findings import Finding
    from crank.manifest.lint import LintContext
    from crank.plugin import RegisterLintRule


def entrypoint_matches(ctx: LintContext) -> Iterator[Finding]:
    if not ctx.schema_valid:
        return
    where: Path_ = ("worker", "entrypoint")
    module = str(ctx.data["worker"]["entrypoint"]).partition(":")[0]
    if not _top_level_installed(module):
        # the common case for a package not installed yet: answered without
        # building the model or importing the worker machinery
        yield _not_installed(ctx, where, module)
        return
    manifest = ctx.manifest
    if manifest is None:  # pragma: no cover - schema_valid guarantees a manifest
        return

    # lazy: the host pulls in asyncio, and this plugin module loads with every
    # crank command while the rule runs only under `crank lint`
    from crank.worker.host import check_handlers, import_entrypoint

    try:
        cls = import_entrypoint(manifest)
    except WorkerError as exc:
        cause = exc.__cause__
        if isinstance(cause, ModuleNotFoundError):
            yield _fails_to_import(ctx, where, module, cause)
            return
        yield ctx.finding("CRK108", where, exc.message, hint=exc.hint)
        return
    except Exception as exc:  # the module itself raised while importing
        yield _fails_to_import(ctx, where, module, exc)
        return
    try:
        check_handlers(manifest, cls)
    except WorkerError:
        implemented = set(cls.handlers())
        declared = set(manifest.capability_ids)
        for i, cap in capabilities(ctx.data):
            cid = cap.get("id")
            if isinstance(cid, str) and cid not in implemented:
                yield ctx.finding(
                    "CRK108",
                    ("capabilities", i, "id"),
                    f"{manifest.worker.entrypoint} has no @capability({cid!r}) handler",
                    hint="add the handler to the worker class, or remove the capability",
                )
        for cid in sorted(implemented - declared):
            yield ctx.finding(
                "CRK108",
                where,
                f"{manifest.worker.entrypoint} handles {cid!r}, not declared in this manifest",
                hint="declare it under `capabilities:`, or remove the handler",
            )


def _top_level_installed(module: str) -> bool:
    top = module.partition(".")[0]
    return top in sys.modules or importlib.util.find_spec(top) is not None


def _not_installed(ctx: LintContext, where: Path_, module: str) -> Finding:
    """The worker's package is not installed (yet): a note, its handlers are not checked."""
    return ctx.finding(
        "CRK108",
        where,
        f"entrypoint not checked: module {module!r} is not installed",
        hint="install the worker package (pip install -e .) to check its handlers",
        severity="info",
    )


def _fails_to_import(ctx: LintContext, where: Path_, module: str, error: BaseException) -> Finding:
    """The worker's package is installed but its entrypoint module does not import."""
    top = module.partition(".")[0]
    if isinstance(error, ModuleNotFoundError) and (
        error.name == module or module.startswith(f"{error.name}.")
    ):
        return ctx.finding(
            "CRK108",
            where,
            f"entrypoint module {module!r} does not exist in the installed package {top!r}",
            hint="fix the module path in worker.entrypoint, or reinstall the package",
        )
    if isinstance(error, ModuleNotFoundError):
        hint = (
            f"install what it imports (pip install {error.name}); `pip install -e .` installs "
            "the dependencies the package declares"
        )
    else:
        hint = "fix the error in the worker module; crank imports it to serve the worker"
    return ctx.finding(
        "CRK108",
        where,
        f"module {module!r} is installed but fails to import: {type(error).__name__}: {error}",
        hint=hint,
    )


def handlers_fit(ctx: LintContext) -> Iterator[Finding]:
    """Batching declared where, and only where, the handler is a batch handler taking the
    list of items; concurrency above 1 only with an async handler."""
    manifest = ctx.manifest
    if not ctx.schema_valid or manifest is None:
        return
    module = manifest.worker.module
    if not _top_level_installed(module):
        return  # CRK108 says it was not checked
    from crank.worker.batch import handler_misfits
    from crank.worker.host import import_entrypoint

    try:
        cls = import_entrypoint(manifest)
    except Exception:
        return  # CRK108 reports why it does not import
    index = {cid: i for i, cid in enumerate(manifest.capability_ids)}
    for misfit in handler_misfits(manifest, cls):
        yield ctx.finding(
            "CRK115",
            ("capabilities", index[misfit.capability], misfit.key),
            misfit.message,
            hint=misfit.hint,
            key=True,
        )


#: CRK108, as registered.
ENTRYPOINT_RULE = FunctionRule(
    "CRK108", "the entrypoint implements exactly the declared capabilities", entrypoint_matches
)
#: CRK115, as registered.
HANDLER_FIT_RULE = FunctionRule(
    "CRK115",
    "a batching capability has a batch handler (taking the list of items) and the reverse; "
    "concurrency above 1 has an async handler",
    handlers_fit,
)


@hookimpl(tryfirst=True)
def crank_register_lint_rules(register: RegisterLintRule) -> None:
    register(ENTRYPOINT_RULE)
    register(HANDLER_FIT_RULE)
