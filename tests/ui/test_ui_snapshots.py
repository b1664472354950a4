"""Pictures of the main screen, compared with the accepted SVGs in __snapshots__/.

The sim runs on a manual clock and the console polls once an hour, so the
picture holds still: no session comes or goes, no elapsed time is drawn.
Regenerate after an intended change with `pytest tests/ui --snapshot-update`
and look at the new SVGs before committing them.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from textual.widgets import Input
from uikit import make_console, until

from opsconsole.config import WindowOptions
from opsconsole.ops import catalog
from opsconsole.ops.records import OpRecord
from opsconsole.ui.screens import UnfinishedScreen


@pytest.mark.parametrize("theme", ["opsconsole-dark", "opsconsole-light"])
@pytest.mark.parametrize("size", [(80, 24), (160, 50)], ids=["80x24", "160x50"])
def test_main_screen(snap_compare, tmp_path: Path, theme: str, size: tuple[int, int]):
    c = make_console(tmp_path, manual_clock=True, poll_interval=3600, theme=theme)

    async def select_a_node(pilot) -> None:
        await until(pilot, lambda: "vm:vm-01" in c.tree.index, "the first snapshot")
        assert c.tree.select_id(c.node("vm-03").id)
        await pilot.pause()

    assert snap_compare(c.app, terminal_size=size, run_before=select_a_node)


# Every dialog at 80x24 (and the longest at 120x40): the body scrolls, the type-to-confirm
# box and the buttons stay in view. Quit and abort are Pilot tests (test_ui_fit): behind
# them the operations panel counts real seconds, which no picture can hold still.
AUDIT = [{"time": 1767225600 + 60 * i, "who": "ann@box", "action": action,
          "target": "NODE_VM02", "result": result}
         for i, (action, result) in enumerate([("set availability", "started"),
                                               ("set availability", "ok"),
                                               ("set server state", "failed: no such server")])]


def _dialog(c, which: str):
    async def open_it(pilot) -> None:
        await until(pilot, lambda: "vm:vm-01" in c.tree.index, "the first snapshot")
        assert c.tree.select_id(c.node("vm-03").id)
        if which == "drain":
            await pilot.press("d")
        elif which in ("maintenance", "rolling-update"):
            c.app.request(which, "hv-01" if which == "maintenance" else "cluster")
        elif which == "unfinished":
            plan = catalog.build("maintenance", c.app.snapshot, "hv-01")
            c.app.push_screen(UnfinishedScreen(OpRecord(
                "20260101-000000-1-abcdef", "maintenance", "hv-01", who="ann@box",
                steps=[s.title for s in plan.steps], done_steps=[0, 1, 2, 3],
                state="interrupted", error="interrupted by SIGTERM"), read_only=False))
        elif which == "help":
            await pilot.press("question_mark")
        elif which == "audit":
            await pilot.press("L")
        typed = which in ("drain", "maintenance", "rolling-update")
        await until(pilot, lambda: len(c.app.screen_stack) > 1 and (
            not typed or c.app.screen.query("#confirm-input")), f"the {which} dialog")
        boxes = [box for box in c.app.screen.query(Input) if box.display]
        await until(pilot, lambda: not boxes or boxes[0].has_focus, "the box's focus")
        # the cursor blinks: stop it, let a blink already on its way pass, then show it
        for box in boxes:
            box.cursor_blink = False
        await pilot.pause(0.6)
        await pilot.pause()
        for box in boxes:
            box._cursor_visible = True      # Textual has no public way to show it steadily
        await pilot.pause()
    return open_it


ROLL = WindowOptions(update_command="sudo apt-get -y upgrade docker.io", reboot=True)
DIALOGS = ["drain", "maintenance", "rolling-update", "unfinished", "help", "audit"]


@pytest.mark.parametrize("which", DIALOGS)
def test_dialog_fits_80x24(snap_compare, tmp_path: Path, which: str):
    c = make_console(tmp_path, manual_clock=True, poll_interval=3600, maintenance=ROLL)
    audit = c.session.engine.actions.audit
    audit.path.parent.mkdir(parents=True, exist_ok=True)
    node = c.node_id("vm-02")
    audit.path.write_text("".join(json.dumps(r).replace("NODE_VM02", node) + "\n"
                                  for r in AUDIT))
    assert snap_compare(c.app, terminal_size=(80, 24), run_before=_dialog(c, which))


def test_maintenance_dialog_at_120x40(snap_compare, tmp_path: Path):
    c = make_console(tmp_path, manual_clock=True, poll_interval=3600)
    assert snap_compare(c.app, terminal_size=(120, 40), run_before=_dialog(c, "maintenance"))
