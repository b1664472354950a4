"""Fixtures for the UI tier: every console runs on its own simulated cluster,
with no user themes, no read-only from the environment, and its journal and
audit log under tmp_path."""
from __future__ import annotations

from pathlib import Path

import pytest
from uikit import Rig, make_console


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # user themes would change the theme cycle and the pictures
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg-state"))
    monkeypatch.delenv("OPSCONSOLE_READ_ONLY", raising=False)


@pytest.fixture
def console(tmp_path: Path):
    """make_console bound to this test's tmp_path."""
    def make(**kw) -> Rig:
        return make_console(tmp_path, **kw)
    return make
