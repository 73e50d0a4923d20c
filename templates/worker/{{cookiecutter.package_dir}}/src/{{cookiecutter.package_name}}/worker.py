"""The {{ cookiecutter.worker_name }} worker: one handler per capability in crank.yaml."""

from __future__ import annotations

from typing import Any

from crank import TaskContext, WorkerApplication, capability


class {{ cookiecutter.class_name }}Worker(WorkerApplication):
    """{{ cookiecutter.description }}"""
{%- for cap in cookiecutter.capabilities.split(',') %}

    @capability("{{ cap.strip() }}")
    def {{ cap.strip().replace('.', '_') }}(
        self,
        data: dict[str, Any],
        ctx: TaskContext,
    ) -> dict[str, Any]:
        """Echo the text back with its length (replace with the real work)."""
        text = data["text"]
        return {"text": text, "length": len(text)}
{%- endfor %}
