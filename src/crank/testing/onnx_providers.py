"""Which onnxruntime execution provider *really* runs a model's nodes.

``onnxruntime-gpu`` lists ``CUDAExecutionProvider`` (and ``get_device()`` says
GPU) even where the CUDA libraries are missing; a session asked for CUDA then
silently runs on CPU, printing "Failed to create CUDAExecutionProvider" on the
process's stderr (native logging, not a Python warning). Plain ``onnxruntime``
emits a ``UserWarning`` instead. And even a session that got CUDA may place nodes
without a CUDA kernel (an ``ai.onnx.ml`` operator, say) on the CPU.
``session.get_providers()`` answers the first question only, so
:func:`open_profiled_session` runs the model once with onnxruntime's profiler on
and reads, per node, the provider that ran it (:class:`NodePlacement`); it
captures the native and Python noise around it (so ``filterwarnings = error`` does
not turn it into errors) and keeps it as evidence. :func:`probe_provider` does
that with a tiny model; a worker does it with its own.
"""

from __future__ import annotations

import base64
import functools
import importlib
import json
import os
import re
import sys
import tempfile
import warnings
from collections import Counter
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

#: The serialized form of the model :func:`tiny_model_bytes` builds (``y = Relu(x @ w)``
#: on a 1x2 float); used only when the ``onnx`` package is not installed.
_TINY_MODEL = (
    "CAgSBWNyYW5rOoUBChoKAXgKAXcSAnh3GgZtYXRtdWwiBk1hdE11bAoTCgJ4dxIBeRoEcmVsdSIEUmVsdRIL"
    "Y3JhbmtfcHJvYmUqGwgCCAIQASIQAACAPwAAgL8AAAA/AAAAQEIBd1oTCgF4Eg4KDAgBEggKAggBCgIIAmIT"
    "CgF5Eg4KDAgBEggKAggBCgIIAkIECgAQDQ=="
)
#: Lines of onnxruntime's native log that say a provider was not (fully) used.
FALLBACK_MARKERS = (
    "Failed to create",
    "not in available provider names",
    "Falling back",
    "not assigned to the preferred execution providers",
)


@functools.cache
def tiny_model_bytes() -> bytes:
    """A two-node ONNX model (``y = Relu(MatMul(x, w))``), built in memory with ``onnx``.

    Real compute nodes, with kernels in every execution provider: a profiled run shows
    where they ran (an ``Identity`` could be optimised away).
    """
    try:
        from onnx import TensorProto, helper
    except ImportError:
        return base64.b64decode(_TINY_MODEL)
    weights = helper.make_tensor("w", TensorProto.FLOAT, [2, 2], [1.0, -1.0, 0.5, 2.0])
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["xw"], name="matmul"),
        helper.make_node("Relu", ["xw"], ["y"], name="relu"),
    ]
    graph = helper.make_graph(
        nodes,
        "crank_probe",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])],
        [weights],
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="crank"
    )
    model.ir_version = 8  # readable by every onnxruntime since 1.10
    data: bytes = model.SerializeToString()
    return data


def tiny_model_feeds() -> dict[str, Any]:
    import numpy as np

    return {"x": np.ones((1, 2), dtype=np.float32)}


@dataclass(frozen=True)
class NodePlacement:
    """Which execution provider ran each node in one run (from onnxruntime's profile).

    ``nodes`` holds ``(node name, operator, provider)`` in the order the profile
    lists them; a node onnxruntime fused (``FusedGemm``) appears under its fused name.
    """

    nodes: tuple[tuple[str, str, str], ...]

    @property
    def providers(self) -> tuple[str, ...]:
        """Every provider that ran a node, the one that ran most first."""
        counts = Counter(provider for _, _, provider in self.nodes)
        return tuple(sorted(counts, key=lambda p: (-counts[p], p)))

    @property
    def provider(self) -> str:
        """The provider that ran every node, or ``A+B`` when they split (most nodes first)."""
        return "+".join(self.providers) or "no provider"

    def ran_only_on(self, provider: str) -> bool:
        return bool(self.nodes) and all(p == provider for _, _, p in self.nodes)

    def describe(self) -> str:
        """``all 2 nodes on CPUExecutionProvider``, or one part per provider."""
        if not self.nodes:
            return "no node"
        if len(self.providers) == 1:
            count = len(self.nodes)
            return f"all {count} node{'s' if count != 1 else ''} on {self.providers[0]}"
        parts = []
        for provider in self.providers:
            ops = [op for _, op, p in self.nodes if p == provider]
            parts.append(f"{len(ops)} on {provider} ({', '.join(sorted(set(ops)))})")
        first, *rest = parts
        return f"{first.replace(' on ', ' nodes on ', 1)} and {' and '.join(rest)}"


def parse_profile(events: Sequence[Mapping[str, Any]]) -> NodePlacement:
    """The node placement recorded in onnxruntime's profile (its JSON events)."""
    nodes = []
    for event in events:
        args = event.get("args") or {}
        if event.get("cat") != "Node" or "provider" not in args:
            continue
        name = str(event.get("name", "")).removesuffix("_kernel_time")
        nodes.append((name, str(args.get("op_name", "?")), str(args["provider"])))
    return NodePlacement(tuple(nodes))


@dataclass(frozen=True)
class ProfiledSession:
    """A session that has run once, with where its nodes ran and what it printed then."""

    session: Any
    placement: NodePlacement
    native_log: tuple[str, ...] = ()
    python_warnings: tuple[str, ...] = ()


def open_profiled_session(
    ort: Any,
    model: bytes | str,
    providers: Sequence[str],
    feeds: Mapping[str, Any],
    *,
    options: Any | None = None,
) -> ProfiledSession:
    """Create a session asking for ``providers``, run ``feeds`` through it once with the
    profiler on, and read which provider ran each node; the session then runs unprofiled.

    onnxruntime's native log lines about providers (:data:`FALLBACK_MARKERS`) and its
    Python warnings from that time are kept as evidence instead of being printed; any
    other native output is written back to stderr. Raises whatever onnxruntime raises
    when no session can be created or the model does not run.
    """
    opts = options if options is not None else ort.SessionOptions()
    with tempfile.TemporaryDirectory(prefix="crank-ort-profile-") as tmp:
        opts.enable_profiling = True
        opts.profile_file_prefix = str(Path(tmp) / "placement")
        with _captured_stderr() as log, warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            session = ort.InferenceSession(model, sess_options=opts, providers=list(providers))
            try:
                session.run(None, dict(feeds))
            finally:
                profile = session.end_profiling()  # later runs are not profiled
        events = json.loads(Path(profile).read_text(encoding="utf-8")) if profile else []
    evidence, other = _split_native_log(log.text())
    if other:
        sys.stderr.write("\n".join(other) + "\n")
    return ProfiledSession(
        session,
        parse_profile(events if isinstance(events, list) else []),
        tuple(evidence),
        tuple(str(w.message) for w in caught),
    )


@dataclass(frozen=True)
class ProviderProbe:
    """What happened when a session asked for ``requested`` ran a tiny model."""

    requested: str
    build: str
    listed: tuple[str, ...]
    in_use: tuple[str, ...]
    placement: NodePlacement
    native_log: tuple[str, ...] = ()
    python_warnings: tuple[str, ...] = ()

    @property
    def offered(self) -> bool:
        return self.requested in self.listed

    @property
    def usable(self) -> bool:
        """The session got ``requested`` and every node of a real run ran on it."""
        return self.requested in self.in_use and self.placement.ran_only_on(self.requested)

    @property
    def fell_back(self) -> bool:
        """Listed by the build, yet the session ran on something else."""
        return self.offered and not self.usable

    def explanation(self) -> str:
        ran = f"ran {self.placement.describe()}"
        if self.usable:
            return f"{self.build}: a session {ran}"
        if self.fell_back:
            text = (
                f"{self.build} lists {self.requested}, but a session asked for it fell back "
                f"and {ran}"
            )
            failure = next(
                (line for line in self.native_log if any(m in line for m in FALLBACK_MARKERS)),
                None,
            )
            if failure is not None:
                text += f" (stderr: {failure[:200]})"
            return text
        text = f"{self.build} does not offer {self.requested}; a session {ran}"
        if self.python_warnings:
            text += f" (UserWarning: {self.python_warnings[0][:160]})"
        return text


_ORT_LOG_LINE = re.compile(r"\[[VIWEF]:onnxruntime:")


def _split_native_log(text: str) -> tuple[list[str], list[str]]:
    """(onnxruntime's log lines and lines about providers, cleaned; everything else)."""
    evidence: list[str] = []
    other: list[str] = []
    for line in text.splitlines():
        if _ORT_LOG_LINE.search(line) or any(m in line for m in FALLBACK_MARKERS):
            cleaned = _clean(line)
            if cleaned:
                evidence.append(cleaned)
        elif _clean(line):
            other.append(line)
    return evidence, other


def _clean(line: str) -> str:
    """Strip ANSI colours and the timestamp/source prefix onnxruntime puts on log lines."""
    line = re.sub(r"\x1b\[[0-9;]*m", "", line).strip()
    return re.sub(r"^\S+ \S+ \[[A-Z]:onnxruntime:[^\]]*\]\s*", "", line)


def build_name(ort: Any) -> str:
    """``onnxruntime-gpu 1.31.1``: the distribution the imported module belongs to."""
    version = str(getattr(ort, "__version__", "?"))
    module_file = getattr(ort, "__file__", None)
    if module_file:
        site = str(Path(module_file).resolve().parent.parent)
        for dist in metadata.distributions(path=[site]):
            name = dist.metadata["Name"] or ""
            if name.lower().startswith("onnxruntime"):
                return f"{name} {dist.version}"
    return f"onnxruntime {version}"


def probe_provider(requested: str, ort: Any | None = None) -> ProviderProbe:
    """Run a tiny model in a session asking for ``requested`` (then CPU) and see which
    provider the session got and which ran its nodes.

    Raises whatever onnxruntime raises when no session can be created or run at all;
    callers decide whether that is a broken install.
    """
    if ort is None:
        ort = importlib.import_module("onnxruntime")
    listed = tuple(ort.get_available_providers())
    providers = (
        [requested] if requested == "CPUExecutionProvider" else [requested, "CPUExecutionProvider"]
    )
    profiled = open_profiled_session(ort, tiny_model_bytes(), providers, tiny_model_feeds())
    return ProviderProbe(
        requested=requested,
        build=build_name(ort),
        listed=listed,
        in_use=tuple(profiled.session.get_providers()),
        placement=profiled.placement,
        native_log=profiled.native_log,
        python_warnings=profiled.python_warnings,
    )


class _StderrLog:
    def __init__(self) -> None:
        self._text = ""

    def text(self) -> str:
        return self._text


class _captured_stderr:
    """Redirect file descriptor 2 (native libraries write there) to a temporary file."""

    def __enter__(self) -> _StderrLog:
        self.log = _StderrLog()
        self.file = tempfile.TemporaryFile()
        sys.stderr.flush()
        self.saved = os.dup(2)
        os.dup2(self.file.fileno(), 2)
        return self.log

    def __exit__(self, *exc: object) -> None:
        try:
            sys.stderr.flush()
            os.dup2(self.saved, 2)
        finally:
            os.close(self.saved)
            self.file.seek(0)
            self.log._text = self.file.read().decode("utf-8", errors="replace")
            self.file.close()
