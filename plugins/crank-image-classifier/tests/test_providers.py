"""Provider choice: asked-for vs really used (GPU paths exercised without a GPU)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
from crank_image_classifier.inference import DigitsModel, choose_providers
from crank_image_classifier.model import ensure_model

pytestmark = [pytest.mark.requires("onnxruntime", "sklearn", "skl2onnx"), pytest.mark.slow]

#: what onnxruntime-gpu lists, GPU or not
GPU_BUILD = ["CUDAExecutionProvider", "CPUExecutionProvider"]


@pytest.mark.parametrize(
    ("available", "requested", "chosen"),
    [
        (["CPUExecutionProvider"], None, ["CPUExecutionProvider"]),
        (
            ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
            None,
            ["CUDAExecutionProvider", "CPUExecutionProvider"],
        ),
        (
            ["CUDAExecutionProvider", "CPUExecutionProvider"],
            "CPUExecutionProvider",
            ["CPUExecutionProvider"],
        ),
        (["CPUExecutionProvider"], "CUDAExecutionProvider", ["CPUExecutionProvider"]),
    ],
)
def test_choose_providers(available: list[str], requested: str | None, chosen: list[str]) -> None:
    assert choose_providers(available, requested) == chosen


@dataclass
class FakeSession:
    """Stands in for a session of onnxruntime-gpu on a machine without a working CUDA."""

    in_use: list[str]
    asked: list[str] = field(default_factory=list)

    def get_providers(self) -> list[str]:
        return self.in_use

    def get_inputs(self) -> list[Any]:
        return [type("Input", (), {"name": "pixels"})()]


def test_a_gpu_build_that_falls_back_reports_the_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    import onnxruntime

    sessions: list[FakeSession] = []

    def session(data: bytes, sess_options: Any = None, providers: list[str] | None = None) -> Any:
        sessions.append(FakeSession(["CPUExecutionProvider"], list(providers or [])))
        return sessions[-1]

    monkeypatch.setattr(
        onnxruntime,
        "get_available_providers",
        lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"],
    )
    monkeypatch.setattr(onnxruntime, "InferenceSession", session)
    model = DigitsModel.load(ensure_model())
    assert sessions[0].asked == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    assert model.provider == "CPUExecutionProvider"  # the truth, not what was asked for


def test_mock_gpu_session_reports_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    import onnxruntime

    monkeypatch.setattr(
        onnxruntime,
        "get_available_providers",
        lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"],
    )
    monkeypatch.setattr(
        onnxruntime,
        "InferenceSession",
        lambda data, sess_options=None, providers=None: FakeSession(list(providers or [])),
    )
    assert DigitsModel.load(ensure_model()).provider == "CUDAExecutionProvider"


def test_env_var_forces_providers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRANK_ONNX_PROVIDERS", "CPUExecutionProvider")
    model = DigitsModel.load(ensure_model())
    assert model.session.get_providers() == ["CPUExecutionProvider"]
