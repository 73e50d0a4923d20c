"""crank example worker: document conversion through pandoc, results stored with front-matter.

Kept light on purpose (no pypandoc import here): crank imports this module to find
the manifest next to it.
"""

from __future__ import annotations

__version__ = "1.0.0"
