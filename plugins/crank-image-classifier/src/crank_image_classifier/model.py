"""The digits model: trained on first use, converted to ONNX, cached on disk.

The data set is scikit-learn's 8x8 handwritten digits, which ships inside
scikit-learn: nothing is downloaded. A fixed, stratified split keeps a quarter of
the images out of training so accuracy can be measured on digits the model never
saw (:func:`held_out_digits`).
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

MODEL_DIR_ENV = "CRANK_MODEL_DIR"
#: bump when the training recipe changes, so cached models are rebuilt.
RECIPE = "digits-logreg-v1"
SPLIT_SEED = 0
TEST_FRACTION = 0.25
INPUT_NAME = "pixels"


def cache_dir() -> Path:
    """``$CRANK_MODEL_DIR``, else ``$XDG_CACHE_HOME/crank/image-classifier`` (``~/.cache``)."""
    explicit = os.environ.get(MODEL_DIR_ENV)
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "crank" / "image-classifier"


def model_path() -> Path:
    sklearn = metadata.version("scikit-learn")
    skl2onnx = metadata.version("skl2onnx")
    return cache_dir() / f"{RECIPE}-sklearn{sklearn}-skl2onnx{skl2onnx}.onnx"


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


def train_onnx() -> bytes:
    """Fit a scaler + logistic regression on the training split and convert it to ONNX."""
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    split = digits_split()
    classifier = LogisticRegression(max_iter=2000)
    pipeline = make_pipeline(StandardScaler(), classifier)
    pipeline.fit(split.x_train, split.y_train)
    onnx_model: Any = convert_sklearn(
        pipeline,
        initial_types=[(INPUT_NAME, FloatTensorType([None, 64]))],
        options={id(classifier): {"zipmap": False}},  # probabilities as one float tensor
    )
    data: bytes = onnx_model.SerializeToString()
    return data


def ensure_model() -> Path:
    """The cached ONNX file, trained and written atomically on first use."""
    path = model_path()
    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    data = train_onnx()
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".onnx", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        Path(tmp).replace(path)  # atomic: concurrent first runs each write a whole file
    finally:
        Path(tmp).unlink(missing_ok=True)
    return path
