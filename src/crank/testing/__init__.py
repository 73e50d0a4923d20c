"""crank's pytest plugin and the testing helpers it exposes."""

from __future__ import annotations
