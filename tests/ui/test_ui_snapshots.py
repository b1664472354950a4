"""Pictures of the main screen, compared with the accepted SVGs in __snapshots__/.

The sim runs on a manual clock and the console polls once an hour, so the
picture holds still: no session comes or goes, no elapsed time is drawn.
Regenerate after an intended change with `pytest tests/ui --snapshot-update`
and look at the new SVGs before committing them.
"""
from __future__ import annotations

from pathlib import Path

import pytest
from uikit import make_console, until


@pytest.mark.parametrize("theme", ["opsconsole-dark", "opsconsole-light"])
@pytest.mark.parametrize("size", [(80, 24), (160, 50)], ids=["80x24", "160x50"])
def test_main_screen(snap_compare, tmp_path: Path, theme: str, size: tuple[int, int]):
    c = make_console(tmp_path, manual_clock=True, poll_interval=3600, theme=theme)

    async def select_a_node(pilot) -> None:
        await until(pilot, lambda: "vm:vm-01" in c.tree.index, "the first snapshot")
        assert c.tree.select_id(c.node("vm-03").id)
        await pilot.pause()

    assert snap_compare(c.app, terminal_size=size, run_before=select_a_node)
