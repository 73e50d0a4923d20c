"""The workers ``benchmarks/batching.py`` serves: one digit per task, with and without
batching, and an async capability awaiting a stand-in for a slow service.

The ONNX model is the one the benchmark builds (``CRANK_BENCH_MODEL``); onnxruntime
runs on one thread, so what batching saves is per-call overhead, not parallelism.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import numpy as np
import onnxruntime as ort

from crank.worker import BatchItem, TaskContext, WorkerApplication, capability

MODEL_ENV = "CRANK_BENCH_MODEL"


def _session() -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    return ort.InferenceSession(os.environ[MODEL_ENV], options, providers=["CPUExecutionProvider"])


class Digits(WorkerApplication):
    """One image per handler call."""

    def setup(self) -> None:
        self.session = _session()

    @capability("bench.digit")
    def digit(self, data: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
        pixels = np.asarray([data["image"]], dtype=np.float32)
        [labels] = self.session.run(["labels"], {"pixels": pixels})
        return {"label": int(labels[0])}


class BatchedDigits(WorkerApplication):
    """The images of a whole batch of tasks in one model run."""

    def setup(self) -> None:
        self.session = _session()

    @capability("bench.digit", batch=True)
    def digit(self, items: list[BatchItem]) -> list[Any]:
        pixels = np.asarray([item.data["image"] for item in items], dtype=np.float32)
        [labels] = self.session.run(["labels"], {"pixels": pixels})
        return [{"label": int(label)} for label in labels]

    @capability("bench.await")
    async def wait(self, data: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
        await asyncio.sleep(float(data["seconds"]))  # stands for a slow remote service
        return {}
