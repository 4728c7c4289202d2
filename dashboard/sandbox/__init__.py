"""A local stand-in for the Vionlabs Tasks API: `Sandbox(...).start()`, or `manage.py run_sandbox`."""

from __future__ import annotations

from .server import Sandbox
from .state import SandboxOptions, read_catalog_file

__all__ = ["Sandbox", "SandboxOptions", "read_catalog_file"]
