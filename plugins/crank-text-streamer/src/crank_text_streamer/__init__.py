"""crank example worker: a streaming capability (tokens as they are produced).

Kept light on purpose: crank imports this module to find the manifest next to it.
"""

from __future__ import annotations

__version__ = "1.0.0"
