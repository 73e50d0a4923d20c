"""crank example worker: email spam and bill detection (crank.yaml sits next to this file).

Kept light on purpose: crank imports this module to find the manifest.
"""

from __future__ import annotations

__version__ = "2.1.0"
