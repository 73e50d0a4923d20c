"""Throughput of the image-classifier worker next to bare onnxruntime on the same model.

Three ways to classify the same batch of held-out digits, interleaved and repeated:

* ``bare``: ``np.asarray(images) -> session.run -> .tolist()`` — what any service must
  do with a JSON batch, without crank;
* ``worker``: ``WorkerHost.call("image.classify", ...)`` — input and output validated
  against the manifest's schemas, values checked by the worker, provider reported;
* ``worker, per-element schema``: the same worker with ``items`` schemas on every image
  and probability row (what a naive manifest would declare), to show what JSON Schema
  validation of a tensor costs.

Run: ``python benchmarks/classifier.py`` (prints a table; numbers go to RESULTS.md).
"""

from __future__ import annotations

import copy
import os
import platform
import statistics
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from crank_image_classifier.model import held_out_digits

from crank.manifest import load_manifest, manifest_from_dict
from crank.worker.host import WorkerHost

if TYPE_CHECKING:
    from collections.abc import Callable

MANIFEST = (
    Path(__file__).parents[1]
    / "plugins/crank-image-classifier/src/crank_image_classifier/crank.yaml"
)
BATCHES = (1, 32, 256, 512)  # 512 is the manifest's maxItems
ROUNDS = 7
ROUND_S = 0.4


def strict_manifest() -> object:
    manifest = load_manifest(MANIFEST)
    raw = copy.deepcopy(dict(manifest.raw))
    cap = raw["capabilities"][0]
    cap["input"]["properties"]["images"]["items"] = {
        "type": "array",
        "minItems": 64,
        "maxItems": 64,
        "items": {"type": "number", "minimum": 0, "maximum": 16},
    }
    cap["output"]["properties"]["labels"]["items"] = {"type": "integer", "minimum": 0, "maximum": 9}
    cap["output"]["properties"]["probabilities"]["items"] = {
        "type": "array",
        "minItems": 10,
        "maxItems": 10,
        "items": {"type": "number", "minimum": 0, "maximum": 1},
    }
    return manifest_from_dict(raw, MANIFEST)


def images_per_second(fn: Callable[[], object], batch: int) -> float:
    calls, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < ROUND_S:
        fn()
        calls += 1
    return calls * batch / elapsed


def main() -> None:
    host = WorkerHost(load_manifest(MANIFEST))
    host.start()
    strict = WorkerHost(strict_manifest())  # type: ignore[arg-type]
    strict.start()
    session = host.app.model.session  # type: ignore[attr-defined]
    input_name = session.get_inputs()[0].name
    provider = session.get_providers()[0]
    held_out, _ = held_out_digits()
    images_all = np.concatenate([held_out, held_out])  # 900 images, enough for any batch

    ort_version = __import__("onnxruntime").__version__
    print(
        f"image.classify throughput, {provider}, onnxruntime {ort_version}, "
        f"Python {platform.python_version()}, {os.cpu_count()} CPUs"
    )
    print(
        f"{'batch':>5} {'bare img/s':>12} {'worker img/s':>13} {'worker/bare':>11} "
        f"{'per-element schema img/s':>25} {'ratio':>6}"
    )
    for batch in BATCHES:
        images = images_all[:batch].tolist()
        payload = {"images": images}

        def bare(images: list[list[float]] = images) -> object:
            labels, probs = session.run(None, {input_name: np.asarray(images, dtype=np.float32)})
            return labels.tolist(), probs.tolist()

        def worker(payload: dict[str, object] = payload) -> object:
            return host.call("image.classify", payload)

        def worker_strict(payload: dict[str, object] = payload) -> object:
            return strict.call("image.classify", payload)

        results: dict[str, list[float]] = {"bare": [], "worker": [], "strict": []}
        for fn in (bare, worker, worker_strict):
            fn()  # warm up
        for _ in range(ROUNDS):  # interleaved so drift hits all three alike
            results["bare"].append(images_per_second(bare, batch))
            results["worker"].append(images_per_second(worker, batch))
            results["strict"].append(images_per_second(worker_strict, batch))
        med = {k: statistics.median(v) for k, v in results.items()}
        print(
            f"{batch:>5} {med['bare']:>12,.0f} {med['worker']:>13,.0f} "
            f"{med['worker'] / med['bare']:>10.0%} {med['strict']:>25,.0f} "
            f"{med['strict'] / med['bare']:>6.0%}"
        )
    host.stop()
    strict.stop()


if __name__ == "__main__":
    main()
