"""An onnxruntime session over the digits model, reporting the provider really in use."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pathlib import Path

    import numpy as np
    import numpy.typing as npt

PROVIDERS_ENV = "CRANK_ONNX_PROVIDERS"
GPU_PROVIDERS = ("CUDAExecutionProvider", "ROCMExecutionProvider")


def choose_providers(available: list[str], requested: str | None = None) -> list[str]:
    """``CRANK_ONNX_PROVIDERS`` (comma list) if set, else the first GPU provider offered, then CPU.

    Only providers the installed build offers are asked for (asking plain onnxruntime
    for CUDA warns); whether a GPU provider then really runs is up to onnxruntime,
    which is why :attr:`DigitsModel.provider` reads ``session.get_providers()``.
    """
    if requested:
        wanted = [p.strip() for p in requested.split(",") if p.strip()]
        chosen = [p for p in wanted if p in available]
    else:
        chosen = [p for p in GPU_PROVIDERS if p in available][:1]
    if "CPUExecutionProvider" not in chosen:
        chosen.append("CPUExecutionProvider")
    return chosen


@dataclass
class DigitsModel:
    session: Any
    input_name: str
    sha256: str

    @classmethod
    def load(cls, path: Path, providers: list[str] | None = None) -> DigitsModel:
        import onnxruntime

        data = path.read_bytes()
        if providers is None:
            providers = choose_providers(
                list(onnxruntime.get_available_providers()), os.environ.get(PROVIDERS_ENV)
            )
        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3  # errors only; the provider in use is reported instead
        session = onnxruntime.InferenceSession(data, sess_options=options, providers=providers)
        return cls(session, session.get_inputs()[0].name, hashlib.sha256(data).hexdigest())

    @property
    def provider(self) -> str:
        """The execution provider the session really runs on (not merely the one asked for)."""
        return str(self.session.get_providers()[0])

    def predict(
        self, images: npt.NDArray[np.float32]
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        labels, probabilities = self.session.run(None, {self.input_name: images})
        return labels, probabilities
