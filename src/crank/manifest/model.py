"""The manifest as frozen dataclasses (built from an already validated document)."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path

API_VERSION = "crank.dev/v1"
GpuNeed = Literal["none", "optional", "required"]


@dataclass(frozen=True)
class Metadata:
    name: str
    version: str
    description: str = ""
    license: str | None = None
    authors: tuple[str, ...] = ()
    homepage: str | None = None


@dataclass(frozen=True)
class Resources:
    cpu: str = "500m"
    memory: str = "512Mi"
    gpu: GpuNeed = "none"


@dataclass(frozen=True)
class Scaling:
    min_workers: int = 1
    max_workers: int = 4
    target_queue_per_worker: int = 10


@dataclass(frozen=True)
class EnvVar:
    name: str
    description: str = ""
    default: str | None = None
    required: bool = False
    secret: bool = False


@dataclass(frozen=True)
class WorkerSpec:
    entrypoint: str
    resources: Resources = field(default_factory=Resources)
    scaling: Scaling = field(default_factory=Scaling)
    env: tuple[EnvVar, ...] = ()

    @property
    def module(self) -> str:
        return self.entrypoint.partition(":")[0]

    @property
    def class_name(self) -> str:
        return self.entrypoint.partition(":")[2]


@dataclass(frozen=True)
class SystemDependency:
    name: str
    check: str
    apt: str | None = None
    hint: str | None = None
    optional: bool = False
    version_command: str | None = None


@dataclass(frozen=True)
class Dependencies:
    python: tuple[str, ...] = ()
    system: tuple[SystemDependency, ...] = ()


@dataclass(frozen=True)
class ErrorCode:
    code: str
    retryable: bool = False
    description: str = ""


@dataclass(frozen=True)
class Example:
    input: Mapping[str, Any]
    name: str = ""
    output: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class Batching:
    """``batching:`` of a capability: how a worker process groups its tasks for one call."""

    max_batch_size: int
    max_latency_ms: float

    @property
    def max_latency_s(self) -> float:
        return self.max_latency_ms / 1000.0


@dataclass(frozen=True)
class Capability:
    id: str
    version: str
    input: Mapping[str, Any]
    output: Mapping[str, Any]
    description: str = ""
    errors: tuple[ErrorCode, ...] = ()
    timeout_s: float = 30.0
    max_attempts: int = 3
    streaming: bool = False
    essential: bool = True
    #: most calls running at once across the pool; None: no limit.
    max_concurrency: int | None = None
    examples: tuple[Example, ...] = ()
    #: None: the handler takes one input at a time.
    batching: Batching | None = None
    #: tasks of this capability one worker process runs at once (async handlers).
    concurrency: int = 1

    @property
    def batched_or_concurrent(self) -> bool:
        """Declares batching, or concurrency above 1: a batching worker loop serves it."""
        return self.batching is not None or self.concurrency > 1

    @property
    def major(self) -> int:
        return int(self.version.split(".", 1)[0])

    def error(self, code: str) -> ErrorCode | None:
        return next((e for e in self.errors if e.code == code), None)


@dataclass(frozen=True)
class Shim:
    select_by: str
    map: Mapping[str, str]
    default: str | None = None
    keep_selector: bool = False


@dataclass(frozen=True)
class Deprecation:
    id: str
    replaced_by: tuple[str, ...]
    sunset: dt.date
    shim: Shim | None = None
    deprecated_since: dt.date | None = None
    legacy_routes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Manifest:
    """One worker manifest. ``raw`` is the document as loaded; ``path`` may be None."""

    metadata: Metadata
    worker: WorkerSpec
    capabilities: tuple[Capability, ...]
    dependencies: Dependencies = field(default_factory=Dependencies)
    deprecated: tuple[Deprecation, ...] = ()
    api_version: str = API_VERSION
    path: Path | None = field(default=None, compare=False)
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def name(self) -> str:
        return self.metadata.name

    def capability(self, capability_id: str) -> Capability | None:
        return next((c for c in self.capabilities if c.id == capability_id), None)

    def deprecation(self, capability_id: str) -> Deprecation | None:
        return next((d for d in self.deprecated if d.id == capability_id), None)

    @property
    def capability_ids(self) -> tuple[str, ...]:
        return tuple(c.id for c in self.capabilities)

    def digest(self) -> str:
        """sha256 of the canonical JSON form: stable across formatting and key order."""
        canonical = json.dumps(self.raw, sort_keys=True, separators=(",", ":"), default=str)
        import hashlib  # only digests need it; keeps `crank lint` start-up small

        return hashlib.sha256(canonical.encode()).hexdigest()


def _date(value: Any) -> dt.date:
    return value if isinstance(value, dt.date) else dt.date.fromisoformat(str(value))


def manifest_from_dict(doc: Mapping[str, Any], path: Path | None = None) -> Manifest:
    """Build a :class:`Manifest` from a document that passed schema validation."""
    md = doc["metadata"]
    w = doc["worker"]
    res = w.get("resources", {})
    sc = w.get("scaling", {})
    deps = doc.get("dependencies", {})
    return Manifest(
        api_version=doc["apiVersion"],
        metadata=Metadata(
            name=md["name"],
            version=md["version"],
            description=md.get("description", ""),
            license=md.get("license"),
            authors=tuple(md.get("authors", ())),
            homepage=md.get("homepage"),
        ),
        worker=WorkerSpec(
            entrypoint=w["entrypoint"],
            resources=Resources(**res),
            # JSON Schema counts 2.0 as an integer: the replica counts written into
            # Kubernetes and compose files must read 2
            scaling=Scaling(**{k: int(v) for k, v in sc.items()}),
            env=tuple(EnvVar(**e) for e in w.get("env", ())),
        ),
        dependencies=Dependencies(
            python=tuple(deps.get("python", ())),
            system=tuple(SystemDependency(**s) for s in deps.get("system", ())),
        ),
        capabilities=tuple(
            Capability(
                id=c["id"],
                version=c["version"],
                input=c["input"],
                output=c["output"],
                description=c.get("description", ""),
                errors=tuple(ErrorCode(**e) for e in c.get("errors", ())),
                timeout_s=float(c.get("timeout_s", 30)),
                max_attempts=int(c.get("max_attempts", 3)),
                streaming=bool(c.get("streaming", False)),
                essential=bool(c.get("essential", True)),
                max_concurrency=(
                    int(c["max_concurrency"]) if c.get("max_concurrency") is not None else None
                ),
                examples=tuple(
                    Example(input=e["input"], name=e.get("name", ""), output=e.get("output"))
                    for e in c.get("examples", ())
                ),
                batching=(
                    Batching(
                        int(c["batching"]["max_batch_size"]),
                        float(c["batching"]["max_latency_ms"]),
                    )
                    if "batching" in c
                    else None
                ),
                concurrency=int(c.get("concurrency", 1)),
            )
            for c in doc["capabilities"]
        ),
        deprecated=tuple(
            Deprecation(
                id=d["id"],
                replaced_by=tuple(d["replaced_by"]),
                sunset=_date(d["sunset"]),
                shim=Shim(
                    select_by=d["shim"]["select_by"],
                    map=dict(d["shim"]["map"]),
                    default=d["shim"].get("default"),
                    keep_selector=bool(d["shim"].get("keep_selector", False)),
                )
                if "shim" in d
                else None,
                deprecated_since=_date(d["deprecated_since"]) if "deprecated_since" in d else None,
                legacy_routes=tuple(d.get("legacy_routes", ())),
            )
            for d in doc.get("deprecated", ())
        ),
        path=path,
        raw=doc,
    )
