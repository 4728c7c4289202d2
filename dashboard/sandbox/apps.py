from __future__ import annotations

from django.apps import AppConfig


class SandboxConfig(AppConfig):
    """Only here so that `manage.py run_sandbox` exists; the sandbox itself imports nothing from Django."""

    name = "dashboard.sandbox"
    label = "sandbox"
    verbose_name = "Vionlabs sandbox"
