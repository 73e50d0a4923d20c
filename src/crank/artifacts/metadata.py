"""The artifact metadata schema (shipped in the package) and its validation."""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
from importlib import resources
from typing import TYPE_CHECKING, Any

from crank.artifacts.errors import ArtifactMetadataInvalid
from crank.manifest.findings import json_path, schema_error_message

if TYPE_CHECKING:
    from collections.abc import Mapping

    from jsonschema.protocols import Validator

METADATA_SCHEMA_FILE = "metadata-v1.json"


@functools.cache
def metadata_schema() -> dict[str, Any]:
    """The JSON Schema every artifact's front-matter metadata must match."""
    text = (
        resources.files("crank.artifacts")
        .joinpath("schemas", METADATA_SCHEMA_FILE)
        .read_text("utf-8")
    )
    schema: dict[str, Any] = json.loads(text)
    return schema


@functools.cache
def _validator() -> Validator:
    from crank.manifest.jsonschema_lib import draft202012

    Draft202012Validator = draft202012()

    return Draft202012Validator(metadata_schema())


def metadata_errors(metadata: Any) -> list[dict[str, str]]:
    """``[{"path": "$.worker.version", "message": ...}]`` for every violation, sorted by path."""
    found = []
    for error in _validator().iter_errors(metadata):
        path = json_path(tuple(error.absolute_path))
        if error.validator == "required" and isinstance(error.instance, dict):
            # name the missing field itself (this error's: one error per field), not its
            # parent object
            required: list[str] = list(error.validator_value)  # type: ignore[arg-type]
            missing = [f for f in required if error.message == f"{f!r} is a required property"]
            if missing:
                path = json_path((*error.absolute_path, missing[0]))
        found.append({"path": path, "message": schema_error_message(error)})
    return sorted(found, key=lambda e: e["path"])


def validate_metadata(metadata: Any, *, where: str = "artifact metadata") -> None:
    """Raise :class:`ArtifactMetadataInvalid` naming the first offending field."""
    errors = metadata_errors(metadata)
    if errors:
        first = errors[0]
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise ArtifactMetadataInvalid(
            f"{where} is invalid: {first['path']}: {first['message']}{more}",
            hint="metadata needs source_format, target_format, created_at (UTC ISO-8601), "
            "parameters, original_sha256, worker {name, version} and capability; "
            "put anything else under `extra`",
            errors=errors,
            subject=first["path"],
        )


def utc_now() -> str:
    """The current time as the ISO-8601 UTC string ``created_at`` expects."""
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def canonical_json(value: Mapping[str, Any]) -> bytes:
    """Stable bytes for hashing metadata: sorted keys, no whitespace, UTF-8."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str
    ).encode()


def build_metadata(
    *,
    source_format: str,
    target_format: str,
    original: bytes,
    worker_name: str,
    worker_version: str,
    capability: str,
    parameters: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
    created_at: str | None = None,
) -> dict[str, Any]:
    """Metadata for an artifact derived from ``original`` (hashes it, stamps the time)."""
    metadata: dict[str, Any] = {
        "source_format": source_format,
        "target_format": target_format,
        "created_at": created_at or utc_now(),
        "parameters": dict(parameters or {}),
        "original_sha256": sha256_hex(original),
        "worker": {"name": worker_name, "version": worker_version},
        "capability": capability,
    }
    if extra:
        metadata["extra"] = dict(extra)
    return metadata
