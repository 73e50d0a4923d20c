"""Deployment settings of a worker project: ``[tool.crank.deploy]`` in its pyproject.toml.

The manifest says what the worker needs; these say where it runs: the image
registry, the Redis the cluster's workers share and the broker's key prefix.
They are template values of the rendered artifacts, so the Deployment, its
broker URL and the KEDA triggers cannot disagree. Every key is optional:

```toml
[tool.crank.deploy]
registry = "ghcr.io/acme"                      # image = <registry>/<worker>
image_digest = "sha256:..."                    # pins the image when known
redis_host = "redis.default.svc.cluster.local" # resolvable from KEDA's namespace too
redis_port = 6379
redis_db = 0
redis_tls = false                              # rediss:// and TLS for KEDA
broker_prefix = "crank"                        # the broker URL's ?prefix=
```
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

from crank.errors import GenerateError

if TYPE_CHECKING:
    from pathlib import Path

TABLE = "tool.crank.deploy"
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
_REGISTRY = re.compile(r"^[a-z0-9]([a-z0-9.:-]*[a-z0-9])?(/[a-z0-9._-]+)*$")
_HOST = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$")
_PREFIX = re.compile(r"^[A-Za-z0-9_.-]+$")


@dataclass(frozen=True)
class DeploySettings:
    """Where a worker is deployed; defaults fit a cluster with Redis in ``default``."""

    registry: str = "localhost:5000"
    image_digest: str = ""
    redis_host: str = "redis.default.svc.cluster.local"
    redis_port: int = 6379
    redis_db: int = 0
    redis_tls: bool = False
    broker_prefix: str = "crank"

    @property
    def redis_address(self) -> str:
        return f"{self.redis_host}:{self.redis_port}"


_CHECKS: dict[str, tuple[type, re.Pattern[str] | None, str]] = {
    "registry": (str, _REGISTRY, "a registry and path such as ghcr.io/acme"),
    "image_digest": (str, _DIGEST, "sha256: and 64 hex digits"),
    "redis_host": (str, _HOST, "a host name such as redis.default.svc.cluster.local"),
    "redis_port": (int, None, "a port number from 1 to 65535"),
    "redis_db": (int, None, "a database index from 0"),
    "redis_tls": (bool, None, "true or false"),
    "broker_prefix": (str, _PREFIX, "letters, digits, '_', '.' or '-'"),
}


def _problem(key: str, value: Any) -> str | None:
    kind, pattern, what = _CHECKS[key]
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            return what
        low, high = (1, 65535) if key == "redis_port" else (0, 2**31)
        return None if low <= value <= high else what
    if not isinstance(value, kind):
        return what
    if pattern is not None and isinstance(value, str) and value and not pattern.match(value):
        return what
    return None


def load_settings(pyproject: Path) -> DeploySettings:
    """The ``[tool.crank.deploy]`` table of ``pyproject`` (defaults when absent)."""
    if not pyproject.is_file():
        return DeploySettings()
    try:
        data = tomllib.loads(pyproject.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise GenerateError(
            f"{pyproject}: not valid TOML ({exc})",
            hint="fix the file; deployment settings live in its [tool.crank.deploy] table",
            subject=str(pyproject),
        ) from None
    table = data.get("tool", {}).get("crank", {}).get("deploy", {})
    if not isinstance(table, dict):
        raise GenerateError(
            f"{pyproject}: [{TABLE}] is not a table",
            hint="write it as a [tool.crank.deploy] section of keys",
            subject=str(pyproject),
        )
    known = {f.name for f in fields(DeploySettings)}
    for key, value in table.items():
        if key not in known:
            raise GenerateError(
                f"{pyproject}: [{TABLE}] has an unknown key {key!r}",
                hint=f"known keys: {', '.join(sorted(known))}",
                subject=str(pyproject),
            )
        problem = _problem(key, value)
        if problem is not None:
            raise GenerateError(
                f"{pyproject}: [{TABLE}] {key} = {value!r} is not valid",
                hint=f"{key} takes {problem}",
                subject=str(pyproject),
            )
    return DeploySettings(**table)
