"""The Makefile's interpreter finder picks a Python >= 3.12 and explains itself when there is none."""

from __future__ import annotations

import subprocess
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "find-python"


def test_finds_a_python_3_12_or_newer():
    result = subprocess.run([str(SCRIPT)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    version = subprocess.run(
        [result.stdout.strip(), "-c", "import sys; print(sys.version_info >= (3, 12))"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert version.stdout.strip() == "True"


def test_says_what_to_install_when_there_is_none(tmp_path):
    old = tmp_path / "python3"
    old.write_text("#!/bin/sh\nexit 1\n")
    old.chmod(0o755)
    env = {
        "PATH": f"{tmp_path}:/usr/bin:/bin",
        "PYENV_ROOT": str(tmp_path / "no-pyenv"),
        "HOME": str(tmp_path),
    }
    result = subprocess.run([str(SCRIPT)], capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 1
    assert "No Python 3.12 or newer was found" in result.stderr
    assert "pyenv install" in result.stderr
