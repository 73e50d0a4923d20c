"""The image-classifier worker: ``image.classify`` for batches of 8x8 grey digits."""

from __future__ import annotations

import json
from itertools import chain
from typing import TYPE_CHECKING, Any

from crank.worker import CapabilityError, WorkerApplication, capability

if TYPE_CHECKING:
    from crank.worker import BatchItem
    from crank_image_classifier.inference import DigitsModel

MAX_GREY = 16.0
PIXELS = 64


class ImageClassifier(WorkerApplication):
    """Recognises handwritten digits; trains and caches its ONNX model on first start."""

    model: DigitsModel | None = None

    def setup(self) -> None:
        from crank_image_classifier.inference import DigitsModel
        from crank_image_classifier.model import ensure_model

        self.model = DigitsModel.load(ensure_model())

    def teardown(self) -> None:
        self.model = None

    def check_readiness(self) -> bool:
        return self.model is not None

    @capability("image.classify", batch=True)
    def classify(self, items: list[BatchItem]) -> list[Any]:
        """One model run for the images of every task of the batch (``batching:`` in
        crank.yaml groups the tasks a worker process claims); each task gets its own
        images' answers, and a task with a bad image fails alone."""
        import numpy as np

        model = self.model
        if model is None:
            raise CapabilityError("MODEL_UNAVAILABLE", "the model is not loaded yet")
        answers: list[Any] = [None] * len(items)
        tensors: list[Any] = []
        owners: list[int] = []
        for index, item in enumerate(items):
            try:
                tensors.append(_tensor(item.data["images"]))
            except CapabilityError as exc:
                answers[index] = exc
            else:
                owners.append(index)
        if not tensors:
            return answers
        labels, probabilities = model.predict(np.concatenate(tensors))
        start = 0
        for index, tensor in zip(owners, tensors, strict=True):
            end = start + len(tensor)
            answers[index] = {
                "labels": labels[start:end].tolist(),
                "probabilities": probabilities[start:end].tolist(),
                "provider": model.provider,
                "model_sha256": model.sha256,
            }
            start = end
        return answers


def _tensor(batch: list[Any]) -> Any:
    """One task's images as an n x 64 float32 tensor, or the INVALID_IMAGE error.

    The input schema checks the envelope; the tensor is checked here, vectorised, and
    only a bad task pays for finding the culprit.
    """
    import numpy as np

    try:
        images = np.asarray(batch, dtype=np.float32)
    except (TypeError, ValueError, OverflowError):  # a list in a list, "dark", 10**400
        images = None
    if images is None or images.ndim != 2 or images.shape[1] != PIXELS:
        raise _bad_image(batch)
    # numpy reads "7" and true as numbers: a pixel must be a JSON number itself. The
    # types are gathered in C (map, chain, set), far cheaper than the model run.
    if not set(chain.from_iterable(map(_types, batch))) <= _NUMBER_TYPES:
        raise _bad_image(batch)
    if not (images.min() >= 0.0 and images.max() <= MAX_GREY):  # NaN fails too
        raise _bad_image(batch)
    return images


_NUMBER_TYPES = frozenset((int, float))


def _types(image: list[Any]) -> map[type]:
    return map(type, image)


def _bad_image(batch: list[Any]) -> CapabilityError:
    """The error naming the first bad image (or pixel) of a task, found one by one."""
    for index, image in enumerate(batch):
        if not isinstance(image, list) or len(image) != PIXELS:
            got = f"{len(image)} values" if isinstance(image, list) else _json_type(image)
            return CapabilityError(
                "INVALID_IMAGE",
                f"images[{index}] must be a list of {PIXELS} grey levels, got {got}",
                details={"image": index},
            )
        for pixel, value in enumerate(image):
            if type(value) not in _NUMBER_TYPES:
                problem = "is not a number"  # its JSON quote shows what it is
            elif not 0 <= value <= MAX_GREY:  # NaN fails too
                problem = "is outside 0..16"
            else:
                continue
            return CapabilityError(
                "INVALID_IMAGE",
                f"images[{index}][{pixel}] = {_json_quoted(value)} {problem} "
                "(8x8 grey levels as in scikit-learn's digits)",
                details={"image": index, "pixel": pixel},
            )
    return CapabilityError("INVALID_IMAGE", "every pixel must be a number between 0 and 16")


def _json_type(value: Any) -> str:
    """The JSON name of a value's type: a client may know no Python."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _json_quoted(value: Any) -> str:
    shown = json.dumps(value)
    return shown if len(shown) <= 40 else f"{shown[:20]}... ({len(shown)} characters)"
