"""crank example worker: handwritten-digit classification on onnxruntime.

Kept light on purpose (no onnxruntime or scikit-learn import here): crank imports
this module to find the manifest next to it.
"""

from __future__ import annotations

__version__ = "1.0.0"
