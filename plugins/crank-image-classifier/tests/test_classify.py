from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from crank_image_classifier.model import held_out_digits, model_path

from crank.worker import CapabilityError

if TYPE_CHECKING:
    from pathlib import Path

    from crank.testing import GpuStrategy, WorkerHandle

# The first test of a session trains the model (a second or two).
pytestmark = [pytest.mark.requires("onnxruntime", "sklearn", "onnx"), pytest.mark.slow]


def test_accuracy_on_held_out_digits(worker: WorkerHandle) -> None:
    images, truth = held_out_digits()
    assert len(images) == 450  # a quarter of the 1797 digits, never trained on
    result = worker.call("image.classify", {"images": images.tolist()})
    right = sum(int(p == t) for p, t in zip(result["labels"], truth.tolist(), strict=True))
    assert right / len(truth) >= 0.9


def test_batch_answers_one_label_and_distribution_per_image(worker: WorkerHandle) -> None:
    images, _truth = held_out_digits()
    result = worker.call("image.classify", {"images": images[:7].tolist()})
    assert len(result["labels"]) == 7
    assert len(result["probabilities"]) == 7
    for label, probs in zip(result["labels"], result["probabilities"], strict=True):
        assert len(probs) == 10
        assert abs(sum(probs) - 1.0) < 1e-4
        assert probs.index(max(probs)) == label
    assert len(result["model_sha256"]) == 64


def test_reports_the_provider_really_in_use(
    worker: WorkerHandle, gpu_strategy: GpuStrategy
) -> None:
    images, _ = held_out_digits()
    result = worker.call("image.classify", {"images": images[:1].tolist()})
    placement = worker.app.model.placement  # type: ignore[attr-defined]
    ran_on = {provider for _, _, provider in placement.nodes}
    # with a verified GPU every node must run on it; elsewhere every node runs on the CPU
    expected = "CUDAExecutionProvider" if gpu_strategy.uses_gpu else "CPUExecutionProvider"
    assert ran_on == {expected}, (placement.describe(), gpu_strategy.describe())
    assert result["provider"] == expected


def test_model_is_cached_and_reused(worker: WorkerHandle, model_dir: Path) -> None:
    path = model_path()
    assert path.parent == model_dir
    stamp = path.stat().st_mtime_ns
    from crank_image_classifier.model import ensure_model

    assert ensure_model() == path
    assert path.stat().st_mtime_ns == stamp  # not retrained


@pytest.mark.parametrize(
    ("images", "message"),
    [
        ([[0] * 63], "images[0] must be a list of 64 grey levels, got 63 values"),
        ([[0] * 64, "x"], "images[1] must be a list of 64 grey levels, got a string"),
        ([[0] * 63 + [17]], "images[0][63] = 17 is outside 0..16"),
        ([[0] * 10 + [-1] + [0] * 53], "images[0][10] = -1 is outside 0..16"),
        ([[0] * 63 + ["dark"]], 'images[0][63] = "dark" is not a number'),
        # numpy would read these as numbers; JSON says they are not
        ([[0] * 5 + ["7"] + [0] * 58], 'images[0][5] = "7" is not a number'),
        ([[True] + [0] * 63], "images[0][0] = true is not a number"),
        ([[0] * 64, [0] * 63 + [None]], "images[1][63] = null is not a number"),
        ([[[1]] + [0] * 63], "images[0][0] = [1] is not a number"),
        # too large for a float: refused, not a crash of the whole batch
        ([[10**400] + [0] * 63], "images[0][0] = 10000000000000000000... (401 characters)"),
    ],
)
def test_bad_images_are_refused_naming_the_image(
    worker: WorkerHandle, images: list[object], message: str
) -> None:
    with pytest.raises(CapabilityError) as info:
        worker.call("image.classify", {"images": images})
    assert (info.value.code, info.value.retryable) == ("INVALID_IMAGE", False)
    assert info.value.message.startswith(message)


def test_manifest_example_passes(worker: WorkerHandle) -> None:
    (example,) = worker.manifest.capability("image.classify").examples  # type: ignore[union-attr]
    result = worker.call("image.classify", example.input)
    assert result["labels"] == example.output["labels"]  # type: ignore[index]


def test_a_batch_of_tasks_runs_through_the_model_once_and_answers_each(
    worker: WorkerHandle,
) -> None:
    images, _ = held_out_digits()
    alone = [worker.call("image.classify", {"images": images[i : i + 2].tolist()}) for i in (0, 4)]
    runs = []
    model = worker.app.model  # type: ignore[attr-defined]
    predict = model.predict

    def counted(tensor: object) -> object:
        runs.append(len(tensor))  # type: ignore[arg-type]
        return predict(tensor)

    model.predict = counted
    try:
        outcomes = worker.host.call_batch(
            "image.classify",
            [
                ({"images": images[0:2].tolist()}, None),
                ({"images": [[0] * 63 + [17]]}, None),  # this task's image is bad
                ({"images": [[10**400] + [0] * 63]}, None),  # and this one's overflows
                ({"images": images[4:6].tolist()}, None),
            ],
        )
    finally:
        model.predict = predict
    assert runs == [4]  # the good tasks' four images in one run
    assert [o["labels"] for o in (outcomes[0], outcomes[3])] == [a["labels"] for a in alone]
    assert isinstance(outcomes[1], CapabilityError)
    assert (outcomes[1].code, outcomes[1].retryable) == ("INVALID_IMAGE", False)
    assert outcomes[1].message.startswith("images[0][63] = 17 is outside 0..16")
    assert isinstance(outcomes[2], CapabilityError)
    assert outcomes[2].message.startswith("images[0][0] = 1000")
