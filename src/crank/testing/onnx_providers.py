"""Which onnxruntime execution provider a session *really* gets.

``onnxruntime-gpu`` lists ``CUDAExecutionProvider`` (and ``get_device()`` says
GPU) even where the CUDA libraries are missing; a session asked for CUDA then
silently runs on CPU, printing "Failed to create CUDAExecutionProvider" on the
process's stderr (native logging, not a Python warning). Plain ``onnxruntime``
emits a ``UserWarning`` instead. Only ``session.get_providers()`` tells the
truth, so :func:`probe_provider` creates a tiny session, captures both kinds of
noise (so ``filterwarnings = error`` does not turn them into errors) and keeps
them as evidence.
"""

from __future__ import annotations

import base64
import functools
import importlib
import os
import sys
import tempfile
import warnings
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

#: The serialized form of the model :func:`tiny_model_bytes` builds (Identity on
#: one float); used only when the ``onnx`` package is not installed.
_TINY_MODEL = (
    "CAgSBWNyYW5rOkEKEAoBeBIBeSIISWRlbnRpdHkSC2NyYW5rX3Byb2JlWg8KAXgSCgoICAESBAoCCAFiDwoB"
    "eRIKCggIARIECgIIAUIECgAQDQ=="
)

FALLBACK_MARKERS = ("Failed to create", "not in available provider names", "Falling back")


@functools.cache
def tiny_model_bytes() -> bytes:
    """A one-node ONNX model (``y = Identity(x)``), built in memory with ``onnx``."""
    try:
        from onnx import TensorProto, helper
    except ImportError:
        return base64.b64decode(_TINY_MODEL)
    node = helper.make_node("Identity", ["x"], ["y"])
    graph = helper.make_graph(
        [node],
        "crank_probe",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="crank"
    )
    model.ir_version = 8  # readable by every onnxruntime since 1.10
    data: bytes = model.SerializeToString()
    return data


@dataclass(frozen=True)
class ProviderProbe:
    """What happened when a session was asked for ``requested``."""

    requested: str
    build: str
    listed: tuple[str, ...]
    in_use: tuple[str, ...]
    native_log: tuple[str, ...] = ()
    python_warnings: tuple[str, ...] = ()

    @property
    def offered(self) -> bool:
        return self.requested in self.listed

    @property
    def usable(self) -> bool:
        return self.requested in self.in_use

    @property
    def fell_back(self) -> bool:
        """Listed by the build, yet the session runs on something else."""
        return self.offered and not self.usable

    def explanation(self) -> str:
        in_use = ", ".join(self.in_use) or "no provider"
        if self.usable:
            return f"{self.build}: a session runs on {self.requested}"
        if self.fell_back:
            text = (
                f"{self.build} lists {self.requested}, but a session asked for it fell back to "
                f"{in_use}"
            )
            failure = next((line for line in self.native_log if "Failed to create" in line), None)
            if failure is not None:
                text += f" (stderr: {_clean(failure)[:200]})"
            return text
        text = f"{self.build} does not offer {self.requested}; a session ran on {in_use}"
        if self.python_warnings:
            text += f" (UserWarning: {self.python_warnings[0][:160]})"
        return text


def _clean(line: str) -> str:
    """Strip ANSI colours and the timestamp/source prefix onnxruntime puts on log lines."""
    import re

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
    """Create a tiny session asking for ``requested`` (then CPU) and see what it got.

    Raises whatever onnxruntime raises when no session can be created at all;
    callers decide whether that is a broken install.
    """
    if ort is None:
        ort = importlib.import_module("onnxruntime")
    listed = tuple(ort.get_available_providers())
    providers = (
        [requested] if requested == "CPUExecutionProvider" else [requested, "CPUExecutionProvider"]
    )
    with _captured_stderr() as log, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        session = ort.InferenceSession(tiny_model_bytes(), providers=providers)
        in_use = tuple(session.get_providers())
    native = tuple(
        _clean(line) for line in log.text().splitlines() if any(m in line for m in FALLBACK_MARKERS)
    )
    return ProviderProbe(
        requested=requested,
        build=build_name(ort),
        listed=listed,
        in_use=in_use,
        native_log=native,
        python_warnings=tuple(str(w.message) for w in caught),
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
