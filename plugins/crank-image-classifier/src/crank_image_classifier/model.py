"""The digits model: a small MLP trained on first use, written as plain ONNX, cached on disk.

The data set is scikit-learn's 8x8 handwritten digits, which ships inside
scikit-learn: nothing is downloaded. A fixed, stratified split keeps a quarter of
the images out of training so accuracy can be measured on digits the model never
saw (:func:`held_out_digits`).

The network (scikit-learn's ``MLPClassifier``, two hidden ReLU layers) is written
with the ``onnx`` helpers from its weights, using only standard ONNX operators that
every execution provider implements, CUDA's included: ``Gemm``, ``Relu``,
``Softmax``, ``ArgMax``. (A scikit-learn converter would add ``ai.onnx.ml``
operators, which only the CPU provider runs: on a GPU such a model runs on the CPU.)
"""

from __future__ import annotations

import os
import tempfile
import warnings
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Sequence

    import numpy as np
    import numpy.typing as npt

MODEL_DIR_ENV = "CRANK_MODEL_DIR"
#: bump when the training recipe changes, so cached models are rebuilt.
RECIPE = "digits-mlp-v1"
#: Units of the hidden layers. Two layers of 128 train in about a second and reach
#: about 0.96 on the held-out digits; wider ones (2048, 2048) only cost more time.
HIDDEN_LAYERS = (128, 128)
SPLIT_SEED = 0
TRAIN_SEED = 0
TEST_FRACTION = 0.25
INPUT_NAME = "pixels"
#: The largest grey level of a pixel; the first layer's weights take the scaling.
MAX_GREY = 16.0
#: ONNX opset of the written model: 13 has every operator used in its current form.
OPSET = 13
#: Operators the model may use: standard ONNX, with kernels in the CPU and CUDA providers.
OPERATORS = frozenset({"Gemm", "Relu", "Softmax", "ArgMax"})


def cache_dir() -> Path:
    """``$CRANK_MODEL_DIR``, else ``$XDG_CACHE_HOME/crank/image-classifier`` (``~/.cache``)."""
    explicit = os.environ.get(MODEL_DIR_ENV)
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "crank" / "image-classifier"


def model_path(hidden_layers: Sequence[int] = HIDDEN_LAYERS) -> Path:
    sklearn = metadata.version("scikit-learn")
    shape = "x".join(str(units) for units in hidden_layers)
    return cache_dir() / f"{RECIPE}-{shape}-sklearn{sklearn}.onnx"


@dataclass(frozen=True)
class DigitsSplit:
    x_train: npt.NDArray[np.float32]
    y_train: npt.NDArray[np.int64]
    x_test: npt.NDArray[np.float32]
    y_test: npt.NDArray[np.int64]


def digits_split() -> DigitsSplit:
    import numpy as np
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = digits.data.astype(np.float32)
    y = digits.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=TEST_FRACTION, random_state=SPLIT_SEED, stratify=y
    )
    return DigitsSplit(x_train, y_train, x_test, y_test)


def held_out_digits() -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
    """Images (0..16 grey levels, 64 per image) and labels the model was not trained on."""
    split = digits_split()
    return split.x_test, split.y_test


def train_onnx(hidden_layers: Sequence[int] = HIDDEN_LAYERS) -> bytes:
    """Fit the MLP on the training split and write it as an ONNX model (bytes)."""
    import numpy as np
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier
    from threadpoolctl import threadpool_limits

    split = digits_split()
    classifier = MLPClassifier(
        hidden_layer_sizes=tuple(hidden_layers),
        solver="lbfgs",  # full batch: quick and steady on 1,347 small images
        alpha=1e-3,
        max_iter=500,
        random_state=TRAIN_SEED,
    )
    # One BLAS thread: the matrices are small, and on a busy machine more threads
    # fight over the cores (measured: 1.5 s against 15 s for two layers of 128).
    with threadpool_limits(limits=1), warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # the accuracy tests judge it
        classifier.fit(split.x_train / MAX_GREY, split.y_train)
    if list(classifier.classes_) != list(range(10)):
        raise RuntimeError(f"the digits classes are not 0-9: {classifier.classes_}")
    weights = [np.asarray(w, dtype=np.float32) for w in classifier.coefs_]
    weights[0] = weights[0] / np.float32(MAX_GREY)  # the input stays 0..16 grey levels
    biases = [np.asarray(b, dtype=np.float32) for b in classifier.intercepts_]
    return mlp_onnx(weights, biases)


def mlp_onnx(
    weights: Sequence[npt.NDArray[np.float32]], biases: Sequence[npt.NDArray[np.float32]]
) -> bytes:
    """``pixels`` -> (Gemm, Relu)* -> Gemm -> logits; ``labels`` = ArgMax(logits),
    ``probabilities`` = Softmax(logits)."""
    from onnx import TensorProto, checker, helper, numpy_helper

    initializers: list[Any] = []
    nodes: list[Any] = []
    current = INPUT_NAME
    last = len(weights) - 1
    for index, (w, b) in enumerate(zip(weights, biases, strict=True)):
        name = f"layer{index + 1}"
        initializers += [
            numpy_helper.from_array(w, f"{name}.w"),
            numpy_helper.from_array(b, f"{name}.b"),
        ]
        out = "logits" if index == last else f"{name}.z"
        nodes.append(
            helper.make_node("Gemm", [current, f"{name}.w", f"{name}.b"], [out], name=name)
        )
        if index != last:
            nodes.append(helper.make_node("Relu", [out], [f"{name}.a"], name=f"{name}.relu"))
            current = f"{name}.a"
    nodes.append(
        helper.make_node("ArgMax", ["logits"], ["labels"], name="labels", axis=1, keepdims=0)
    )
    nodes.append(
        helper.make_node("Softmax", ["logits"], ["probabilities"], name="probabilities", axis=1)
    )
    classes = int(weights[-1].shape[1])
    graph = helper.make_graph(
        nodes,
        "digits_mlp",
        [
            helper.make_tensor_value_info(
                INPUT_NAME, TensorProto.FLOAT, ["n", int(weights[0].shape[0])]
            )
        ],
        [
            helper.make_tensor_value_info("labels", TensorProto.INT64, ["n"]),
            helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["n", classes]),
        ],
        initializers,
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="crank-image-classifier",
    )
    model.ir_version = 8  # readable by every onnxruntime this worker supports
    checker.check_model(model, full_check=True)
    data: bytes = model.SerializeToString()
    return data


def ensure_model(hidden_layers: Sequence[int] = HIDDEN_LAYERS) -> Path:
    """The cached ONNX file, trained and written atomically on first use."""
    path = model_path(hidden_layers)
    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    data = train_onnx(hidden_layers)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".onnx", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        Path(tmp).replace(path)  # atomic: concurrent first runs each write a whole file
    finally:
        Path(tmp).unlink(missing_ok=True)
    return path
