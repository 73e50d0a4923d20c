"""An onnxruntime session over the digits model, reporting where its nodes really ran."""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pathlib import Path

    import numpy as np
    import numpy.typing as npt

    from crank.testing.onnx_providers import NodePlacement

PROVIDERS_ENV = "CRANK_ONNX_PROVIDERS"
GPU_PROVIDERS = ("CUDAExecutionProvider", "ROCMExecutionProvider")
PIXELS = 64
log = logging.getLogger("crank_image_classifier")


def choose_providers(available: list[str], requested: str | None = None) -> list[str]:
    """``CRANK_ONNX_PROVIDERS`` (comma list) if set, else the first GPU provider offered, then CPU.

    Only providers the installed build offers are asked for (asking plain onnxruntime
    for CUDA warns); whether a GPU provider then really runs the model is up to
    onnxruntime, which is why :attr:`DigitsModel.provider` reads a profiled run.
    """
    if requested:
        wanted = [p.strip() for p in requested.split(",") if p.strip()]
        chosen = [p for p in wanted if p in available]
        missing = [p for p in wanted if p not in available]
        if missing:  # a typo, or a GPU build that is not installed: say so, not only "CPU"
            log.warning(
                "%s names %s, which this onnxruntime build does not offer (it offers %s); "
                "asking for %s",
                PROVIDERS_ENV,
                ", ".join(missing),
                ", ".join(available),
                ", ".join(chosen) or "the CPU",
            )
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
    #: where each node ran in the profiled run at load time (onnxruntime's own profile).
    placement: NodePlacement
    #: the providers the session was asked for, in order.
    asked: tuple[str, ...] = ()

    @classmethod
    def load(cls, path: Path, providers: list[str] | None = None) -> DigitsModel:
        """Open a session and run one image through it with onnxruntime's profiler on, to
        learn which provider runs each node; onnxruntime's warnings about providers (a
        GPU build that falls back, nodes not assigned to the GPU) are logged, not hidden."""
        import numpy as np
        import onnxruntime

        from crank.testing.onnx_providers import open_profiled_session

        data = path.read_bytes()
        if providers is None:
            providers = choose_providers(
                list(onnxruntime.get_available_providers()), os.environ.get(PROVIDERS_ENV)
            )
        sample = {"pixels": np.zeros((1, PIXELS), dtype=np.float32)}
        profiled = open_profiled_session(onnxruntime, data, providers, sample)
        for line in (*profiled.native_log, *profiled.python_warnings):
            log.warning("onnxruntime: %s", line)
        placement = profiled.placement
        log.info(
            "digits model runs on %s: %s (asked for %s)",
            placement.provider,
            placement.describe(),
            ", ".join(providers),
        )
        session = profiled.session
        return cls(
            session,
            session.get_inputs()[0].name,
            hashlib.sha256(data).hexdigest(),
            placement,
            tuple(providers),
        )

    @property
    def provider(self) -> str:
        """The provider that ran the model's nodes (``A+B`` when they split), measured,
        not the one asked for nor the session's first."""
        return self.placement.provider

    def predict(
        self, images: npt.NDArray[np.float32]
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        labels, probabilities = self.session.run(None, {self.input_name: images})
        return labels, probabilities
