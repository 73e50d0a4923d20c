"""crank's own lint rules (CRK1xx), registered through ``crank_register_lint_rules``."""

from __future__ import annotations
