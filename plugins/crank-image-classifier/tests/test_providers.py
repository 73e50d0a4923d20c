"""Where the model runs: the provider reported is the one that ran its nodes, read from
onnxruntime's profile of a real run, on the CPU build and on the GPU build without CUDA."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from typing import TYPE_CHECKING

import pytest
from crank_image_classifier.inference import DigitsModel, choose_providers
from crank_image_classifier.model import OPERATORS, ensure_model, held_out_digits

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = [pytest.mark.requires("onnxruntime", "sklearn", "onnx"), pytest.mark.slow]


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


def test_a_requested_provider_the_build_lacks_is_named_in_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    available = ["CPUExecutionProvider"]
    with caplog.at_level(logging.WARNING, logger="crank_image_classifier"):
        chosen = choose_providers(available, "CUDAExecutionProvder,CPUExecutionProvider")
    assert chosen == ["CPUExecutionProvider"]
    assert caplog.messages == [
        "CRANK_ONNX_PROVIDERS names CUDAExecutionProvder, which this onnxruntime build does "
        "not offer (it offers CPUExecutionProvider); asking for CPUExecutionProvider"
    ]


def test_the_model_is_standard_onnx_operators_with_gpu_kernels() -> None:
    import onnx

    model = onnx.load(str(ensure_model()))
    # one opset, the standard one: no ai.onnx.ml operator (those run on the CPU only)
    assert [(o.domain, o.version) for o in model.opset_import] == [("", 13)]
    assert {node.domain for node in model.graph.node} == {""}
    assert [node.op_type for node in model.graph.node] == [
        "Gemm", "Relu", "Gemm", "Relu", "Gemm", "ArgMax", "Softmax",
    ]  # fmt: skip
    assert {node.op_type for node in model.graph.node} <= OPERATORS
    assert [o.name for o in model.graph.output] == ["labels", "probabilities"]


def test_on_the_cpu_build_every_node_runs_on_the_cpu_and_that_is_reported() -> None:
    model = DigitsModel.load(ensure_model())
    assert model.asked == ("CPUExecutionProvider",)
    nodes = model.placement.nodes
    # onnxruntime's CPU provider fuses each Gemm with its Relu; every node is there
    assert [op for _, op, _ in nodes].count("ArgMax") == 1
    assert {op for _, op, _ in nodes} >= {"ArgMax", "Softmax", "Gemm"}
    assert {provider for _, _, provider in nodes} == {"CPUExecutionProvider"}
    assert model.provider == "CPUExecutionProvider"
    images, truth = held_out_digits()
    labels, probabilities = model.predict(images[:50])
    assert probabilities.shape == (50, 10)
    assert (labels == truth[:50]).mean() >= 0.9  # it really classifies after the profiled run


def test_the_env_var_picks_the_providers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRANK_ONNX_PROVIDERS", "CPUExecutionProvider")
    model = DigitsModel.load(ensure_model())
    assert model.asked == ("CPUExecutionProvider",)
    assert model.session.get_providers() == ["CPUExecutionProvider"]
    assert model.provider == "CPUExecutionProvider"


LOAD_ON_THE_GPU_BUILD = """
import json, logging, sys
import onnxruntime
logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(levelname)s %(message)s")
from crank_image_classifier.inference import DigitsModel
from crank_image_classifier.model import ensure_model
model = DigitsModel.load(ensure_model())
print(json.dumps({
    "build_lists": onnxruntime.get_available_providers(),
    "asked": model.asked,
    "session": model.session.get_providers(),
    "nodes": model.placement.nodes,
    "provider": model.provider,
}))
"""


def test_a_gpu_build_without_cuda_reports_the_cpu_its_nodes_ran_on(
    onnxruntime_gpu_site: Path, model_dir: Path
) -> None:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(
            [str(onnxruntime_gpu_site), os.environ.get("PYTHONPATH", "")]
        ),
        "CRANK_MODEL_DIR": str(model_dir),
    }
    env.pop("CRANK_ONNX_PROVIDERS", None)
    proc = subprocess.run(
        [sys.executable, "-c", LOAD_ON_THE_GPU_BUILD],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    seen = json.loads(proc.stdout)
    # the GPU build lists CUDA, so the worker asks for it first...
    assert "CUDAExecutionProvider" in seen["build_lists"]
    assert seen["asked"] == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    # ...gets the CPU (no CUDA libraries here), and says so: every node ran on the CPU
    assert seen["session"] == ["CPUExecutionProvider"]
    assert {provider for _, _, provider in seen["nodes"]} == {"CPUExecutionProvider"}
    assert seen["provider"] == "CPUExecutionProvider"
    # onnxruntime's own words about the fallback reach the log as a warning, not hidden
    warnings = [
        line for line in proc.stderr.splitlines() if line.startswith("WARNING onnxruntime:")
    ]
    assert any("Failed to create CUDAExecutionProvider" in line for line in warnings), proc.stderr
    assert "INFO digits model runs on CPUExecutionProvider: all " in proc.stderr
