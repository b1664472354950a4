"""What must not happen: changes in read-only mode, remote text read as markup,
and the palette's node commands."""
from __future__ import annotations

from dataclasses import replace

import pytest
from textual.command import CommandInput, CommandPalette
from textual.widgets._toast import Toast
from uikit import Rig, details_text, footer_actions, started, until

from opsconsole.ops import registry
from opsconsole.ops.roles import Identity
from opsconsole.ui.app import MUTATING_ACTIONS
from opsconsole.ui.screens import ConfirmScreen

MARKUP = "[bold red]x[/]"

# the operations the footer offers with a node selected (the service actions: in help and
# the palette only)
NODE_OPS = frozenset(f"op('{o.name}')" for o in registry.OPERATIONS.values()
                     if o.show and o.targets in ("node", "host", "vms"))


async def _palette(pilot, c: Rig, query: str) -> list[str]:
    """Open the command palette, type `query`, and return the offered commands."""
    await pilot.press("ctrl+p")
    await until(pilot, lambda: isinstance(c.app.screen, CommandPalette), "the palette")
    palette = c.app.screen
    await pilot.press(*query)
    box = palette.query_one(CommandInput)

    def searched() -> bool:
        """The search for the whole query has run to its end.

        Each keystroke starts a search worker (pilot.press returns once the
        keys are handled); a finished worker leaves the app's worker list.
        """
        return box.value == query and not any(
            w for w in c.app.workers
            if w.node is palette and w.group == palette._GATHER_COMMANDS_GROUP)
    await until(pilot, searched, f"the palette's search for {query!r}")
    await pilot.pause()
    options = palette.query_one("CommandList")
    return [str(options.get_option_at_index(i).prompt).split("\n")[0]
            for i in range(options.option_count)]


async def test_palette_offers_node_commands(console):
    c = console(manual_clock=True)
    async with c.app.run_test(size=(120, 40)) as pilot:
        await started(pilot, c)
        offered = await _palette(pilot, c, "drain vm-03")
        assert "drain vm-03" in offered
        assert offered.index("drain vm-03") == 0           # the exact match comes first
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(c.app.screen, ConfirmScreen),
                    "the drain's confirmation")
        assert str(c.app.screen.query_one("#confirm-title").content) == "drain vm-03"
        await pilot.press("escape")
        await until(pilot, lambda: not isinstance(c.app.screen, ConfirmScreen),
                    "the confirmation to close")
        assert not c.session.engine.operations


async def test_read_only_changes_nothing(console):
    c = console(read_only=True, speed=30)
    async with c.app.run_test(size=(140, 40)) as pilot:
        await started(pilot, c)
        app = c.app
        badge = app.query_one("#read-only")
        assert str(badge.content) == "READ-ONLY"
        assert badge.display and badge.region.width >= len("READ-ONLY")
        await until(pilot, lambda: {"filter", "help"} <= footer_actions(c),
                    "the footer's keys")
        actions = footer_actions(c)
        assert not actions & MUTATING_ACTIONS, actions

        vm03 = c.node("vm-03")
        assert c.tree.select_id(vm03.id)
        before = c.world()
        for key in "cdapx":
            await pilot.press(key)
            await pilot.pause()
            assert app.screen is app.screen_stack[0], f"{key} opened {app.screen}"
        assert c.world() == before
        assert not c.session.engine.operations

        offered = await _palette(pilot, c, "drain")
        assert not [o for o in offered if o.startswith("drain vm-")], offered
        await pilot.press("escape")
        await until(pilot, lambda: not isinstance(app.screen, CommandPalette),
                    "the palette to close")

        app.request("drain", vm03.swarm_id)            # the way the palette would call it
        await pilot.pause()
        assert not isinstance(app.screen, ConfirmScreen)
        assert any("read-only" in n.message for n in app._notifications)
        assert c.world() == before
        assert not c.session.engine.operations
        assert c.node("vm-03").availability == "active"


@pytest.mark.parametrize(("role", "badge", "keys"), [
    ("monitor", "READ-ONLY · alice", False), ("oncall", "ONCALL · alice", True),
    ("admin", "ADMIN · alice", True)])
async def test_the_badge_names_the_role_and_who_came_in_over_ssh(console, role, badge, keys):
    c = console(manual_clock=True, role=role, identity=Identity.ssh("alice", "SHA256:k"))
    ops = NODE_OPS
    async with c.app.run_test(size=(160, 40)) as pilot:
        await started(pilot, c)
        assert str(c.app.query_one("#read-only").content) == badge
        assert c.tree.select_id(c.node("vm-03").id)
        await until(pilot, lambda: {"filter", "help"} <= footer_actions(c), "the footer")
        if keys:
            await until(pilot, lambda: footer_actions(c) >= ops, "the operation keys")
        assert bool(footer_actions(c) & MUTATING_ACTIONS) == keys
        # the service account's files are not theirs to write: no screenshot over ssh
        titles = {s.title for s in c.app.get_system_commands(c.app.screen)}
        assert "Theme" in titles and "Screenshot" not in titles


async def test_read_write_footer_has_the_operation_keys_that_fit_the_selection(console):
    c = console(manual_clock=True)
    ops = NODE_OPS
    async with c.app.run_test(size=(160, 40)) as pilot:
        await started(pilot, c)
        assert c.tree.select_id(c.node("vm-03").id)
        await until(pilot, lambda: footer_actions(c) >= ops, "the operation keys in the footer")
        assert not footer_actions(c) & {"pause", "abort"}     # nothing runs
        assert not c.app.query("#read-only")
        assert "Screenshot" in {s.title for s in c.app.get_system_commands(c.app.screen)}
        # a service is no node and on no host: only the rolling update (of the cluster) fits
        assert c.tree.select_id(next(i for i in c.tree.index if i.startswith("service:")))
        await until(pilot, lambda: footer_actions(c) & ops == {"op('rolling-update')"},
                    "the footer to follow")


def _rename(sim) -> None:
    """Remote names that look like markup: a service, and a node without its VM."""
    svc = next(s for s in sim.services.values() if s.name == "worker")
    sim.services[svc.swarm_id] = replace(svc, name=MARKUP)
    for t in list(sim.tasks.values()):
        if t.service_id == svc.swarm_id:
            sim.tasks[t.swarm_id] = replace(t, service_name=MARKUP)
    node = next(n for n in sim.nodes.values() if n.hostname == "vm-05")
    sim.nodes[node.swarm_id] = replace(node, hostname="[/oops]vm-05")


async def test_remote_names_are_never_markup(console):
    c = console(manual_clock=True, prepare=_rename)
    async with c.app.run_test(size=(140, 45), notifications=True) as pilot:
        await started(pilot, c)
        tree, snap = c.tree, c.app.snapshot
        svc = next(s for s in snap.services if s.name == MARKUP)
        label = tree.index[svc.id].label
        assert MARKUP in label.plain
        tasks = [t for t in snap.tasks if t.service_id == svc.swarm_id and t.node_id]
        assert tasks and all(f"{MARKUP}.{t.slot}" in tree.index[t.id].label.plain
                             for t in tasks)
        odd = next(n for n in snap.nodes if n.hostname == "[/oops]vm-05")
        assert tree.index[odd.id].parent is tree.index["group:unplaced"]
        assert "[/oops]vm-05" in tree.index[odd.id].label.plain

        assert tree.select_id(svc.id)
        await pilot.pause()
        assert MARKUP in details_text(c.app)

        # a confirmation, its cancel notice and the palette show the name as it is
        assert tree.select_id(odd.id)
        await pilot.press("c")
        await until(pilot, lambda: isinstance(c.app.screen, ConfirmScreen), "the confirmation")
        assert str(c.app.screen.query_one("#confirm-title").content) == "cordon [/oops]vm-05"
        await pilot.press("escape")
        await until(pilot, lambda: not isinstance(c.app.screen, ConfirmScreen),
                    "the confirmation to close")
        # the toast is drawn from the message: as markup, this one would raise
        await until(pilot, lambda: any("cordon [/oops]vm-05: cancelled" in str(t.render())
                                       for t in c.app.screen.query(Toast)),
                    "the cancel notice, brackets and all")

        offered = await _palette(pilot, c, "cordon")
        assert "cordon [/oops]vm-05" in offered, offered
