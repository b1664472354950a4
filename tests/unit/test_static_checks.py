"""The rules that keep the code livable, checked on every run: ruff's rule set, mypy (strict on
the domain and the operations), and the import contracts of the layers (pyproject.toml)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHECKS = {
    "ruff": [sys.executable, "-m", "ruff", "check", "opsconsole", "tests"],
    "mypy": [sys.executable, "-m", "mypy"],
    "import contracts": ["lint-imports"],
}


@pytest.mark.parametrize("name", CHECKS)
def test_static_check_passes(name):
    command = CHECKS[name]
    if name == "import contracts":     # the console script sits beside this python
        command = [str(Path(sys.executable).with_name("lint-imports"))]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{name} failed:\n{done.stdout[-4000:]}\n{done.stderr[-2000:]}"
