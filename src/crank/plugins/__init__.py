"""crank's plugin machinery: loading, the manager and the contribution registry.

* :mod:`crank.plugins.loading`: entry-point discovery, blocked names, the
  process-wide manager (:func:`get_plugin_manager`).
* :mod:`crank.plugins.manager`: :class:`CrankPluginManager` and the load record
  of each plugin.
* :mod:`crank.plugins.registry`: the :class:`Registry` that gathers every kind
  of contribution with the same isolation and duplicate rules.

Plugin authors import from :mod:`crank.plugin` instead.
"""

from __future__ import annotations

from crank.plugins.loading import (
    BUILTIN_PLUGINS,
    DISABLE_ENV,
    ENTRY_POINT_GROUP,
    MANIFEST_NAME,
    blocked_lint_rules,
    blocked_names,
    build_plugin_manager,
    get_plugin_manager,
    reset_plugin_manager,
)
from crank.plugins.manager import WORKERS, CrankPluginManager, PluginRecord, PluginStatus
from crank.plugins.registry import PluginLoadWarning, Registry

__all__ = [
    "BUILTIN_PLUGINS",
    "DISABLE_ENV",
    "ENTRY_POINT_GROUP",
    "MANIFEST_NAME",
    "WORKERS",
    "CrankPluginManager",
    "PluginLoadWarning",
    "PluginRecord",
    "PluginStatus",
    "Registry",
    "blocked_lint_rules",
    "blocked_names",
    "build_plugin_manager",
    "get_plugin_manager",
    "reset_plugin_manager",
]
