"""Keys remapped in the inventory: every place that names a key says the new one (footer,
help screen, operations panel, details pane, the engine's pause hint), the old one is
named nowhere and does nothing."""
from __future__ import annotations

from uikit import details_text, footer_keys, started, until

from opsconsole.session import load_inventory
from opsconsole.ui.screens import ConfirmScreen, HelpScreen

INVENTORY = """\
[console]
keys = { drain = "D", help = "h", pause = "P" }
[swarm]
endpoints = ["unix:///x"]
"""


def _keys(tmp_path) -> dict[str, str]:
    path = tmp_path / "site.toml"
    path.write_text(INVENTORY)
    return load_inventory(path).keys


def _help_rows(c) -> dict[str, str]:
    """The help screen's key column: the first word of each key's line -> the key."""
    text = str(c.app.screen.query_one("#help Static").content)
    rows = [line.split(maxsplit=1) for line in text.splitlines() if line.startswith("  ")]
    return {help_.split()[0]: key for key, help_ in rows if len(key) <= 2}


async def _help(pilot, c) -> dict[str, str]:
    """Open help with its new key (the old one does nothing), read it, close it again."""
    main = c.app.screen
    await pilot.press("question_mark")
    await pilot.pause()
    assert c.app.screen is main, "the old help key opened something"
    await pilot.press("h")
    await until(pilot, lambda: isinstance(c.app.screen, HelpScreen), "the help screen")
    rows = _help_rows(c)
    await pilot.press("h")
    await until(pilot, lambda: c.app.screen is main, "the help key to close it again")
    return rows


async def test_remapped_keys_are_shown_everywhere_and_the_old_ones_nowhere(console, tmp_path):
    c = console(manual_clock=True, keys=_keys(tmp_path))
    async with c.app.run_test(size=(160, 40)) as pilot:
        await started(pilot, c)
        assert "h help" in details_text(c.app) and "? help" not in details_text(c.app)
        assert c.tree.select_id(c.node("vm-03").id)     # the footer offers what fits it
        await until(pilot, lambda: "op('drain')" in footer_keys(c), "the footer's keys")
        footer = footer_keys(c)
        assert footer["op('drain')"] == "D" and footer["help"] == "h"
        assert "pause" not in footer        # nothing runs
        assert {"d", "?", "p"}.isdisjoint(footer.values()), footer
        assert (str(c.app.query_one("#ops-empty").content)
                == "No operation yet. Select a node and press c, D or a.")
        assert c.session.engine.press("pause", "") == "press P"

        rows = await _help(pilot, c)
        assert rows["drain:"] == "D" and rows["this"] == "h" and rows["pause"] == "P"
        assert {"d", "?", "p"}.isdisjoint(rows.values()), rows

        # the old drain key does nothing; the new one asks for the drain of the selection
        assert c.tree.select_id(c.node("vm-03").id)
        await pilot.press("d")
        await pilot.pause()
        assert not isinstance(c.app.screen, ConfirmScreen)
        await pilot.press("D")
        await until(pilot, lambda: isinstance(c.app.screen, ConfirmScreen), "the drain's plan")
        assert str(c.app.screen.query_one("#confirm-title").content) == "drain vm-03"
        await pilot.press("escape")
        assert not c.session.engine.operations


async def test_read_only_with_remapped_keys(console, tmp_path):
    c = console(manual_clock=True, read_only=True, keys=_keys(tmp_path))
    async with c.app.run_test(size=(160, 40)) as pilot:
        await started(pilot, c)
        await until(pilot, lambda: "help" in footer_keys(c), "the footer's keys")
        footer = footer_keys(c)
        assert footer["help"] == "h" and "op('drain')" not in footer and "pause" not in footer
        assert "?" not in footer.values()
        hint = str(c.app.query_one("#ops-empty").content)
        assert "Read-only" in hint and "press" not in hint
        rows = await _help(pilot, c)
        assert rows["drain:"] == "D" and rows["this"] == "h"
