"""Throughput of the image-classifier worker next to bare onnxruntime on the same model.

Three ways to classify the same batch of held-out digits, timed in back-to-back pairs:

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
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

# Run as a script, this folder comes first on sys.path, where a benchmark module's
# name (queue.py) would shadow the standard library for numpy/scikit-learn.
HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]

MANIFEST = (
    Path(__file__).parents[1]
    / "plugins/crank-image-classifier/src/crank_image_classifier/crank.yaml"
)
BATCHES = (1, 32, 256, 512)  # 512 is the manifest's maxItems
PAIR_BUDGET_S = 4.0
STRICT_BUDGET_S = 1.5


def strict_manifest() -> object:
    from crank.manifest import load_manifest, manifest_from_dict

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


def paired_seconds(
    first: Callable[[], object], second: Callable[[], object], budget_s: float
) -> tuple[list[float], list[float]]:
    """Time ``first`` then ``second`` back to back, again and again, for ``budget_s``.

    Pairing makes the comparison robust on a busy machine: a load spike slows
    both members of a pair, and the median of many pairs ignores outliers.
    """
    a: list[float] = []
    b: list[float] = []
    stop = time.perf_counter() + budget_s
    while time.perf_counter() < stop:
        t0 = time.perf_counter()
        first()
        t1 = time.perf_counter()
        second()
        t2 = time.perf_counter()
        a.append(t1 - t0)
        b.append(t2 - t1)
    return a, b


def main() -> None:
    import numpy as np
    from crank_image_classifier.model import held_out_digits

    from crank.manifest import load_manifest
    from crank.worker.host import WorkerHost

    host = WorkerHost(load_manifest(MANIFEST))
    host.start()
    strict = WorkerHost(strict_manifest())  # type: ignore[arg-type]
    strict.start()
    session = host.app.model.session  # type: ignore[attr-defined]
    input_name = session.get_inputs()[0].name
    provider = host.app.model.provider  # type: ignore[attr-defined]  # where the nodes ran
    held_out, _ = held_out_digits()
    images_all = np.concatenate([held_out, held_out])  # 900 images, enough for any batch

    ort_version = __import__("onnxruntime").__version__
    print(
        f"image.classify throughput, {provider}, onnxruntime {ort_version}, "
        f"Python {platform.python_version()}, {os.cpu_count()} CPUs"
    )
    print(
        f"{'batch':>5} {'bare img/s':>12} {'worker img/s':>13} {'worker/bare':>11} "
        f"{'paired median':>13} {'strict-schema img/s':>17} {'ratio':>6}"
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

        for fn in (bare, worker, worker_strict):
            fn()  # warm up
        bare_s, worker_s = paired_seconds(bare, worker, PAIR_BUDGET_S)
        bare2_s, strict_s = paired_seconds(bare, worker_strict, STRICT_BUDGET_S)
        # best case of each (timeit's rule: the minimum is the least disturbed run),
        # and the median over pairs of bare/worker as a check on a busy machine
        bare_ips, worker_ips = batch / min(bare_s), batch / min(worker_s)
        paired = statistics.median(b / w for b, w in zip(bare_s, worker_s, strict=True))
        strict_ips = batch / min(strict_s)
        print(
            f"{batch:>5} {bare_ips:>12,.0f} {worker_ips:>13,.0f} {worker_ips / bare_ips:>10.0%} "
            f"{paired:>13.0%} {strict_ips:>17,.0f} {strict_ips / (batch / min(bare2_s)):>6.0%}"
            f"   ({len(bare_s)} pairs)"
        )
    host.stop()
    strict.stop()


if __name__ == "__main__":
    main()
