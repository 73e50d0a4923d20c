"""{{ cookiecutter.description }}"""

from __future__ import annotations

from {{ cookiecutter.package_name }}.worker import {{ cookiecutter.class_name }}Worker

__all__ = ["{{ cookiecutter.class_name }}Worker"]
