"""`i` shows the selected object as Swarm (or the console) gives it, `y` copies its id."""
from __future__ import annotations

import json

from uikit import Rig, started, until

from opsconsole.model import service_id
from opsconsole.ui.inspect import InspectScreen


def _inspect(c: Rig) -> InspectScreen | None:
    return c.app.screen if isinstance(c.app.screen, InspectScreen) else None


async def test_i_shows_a_services_json_and_y_copies_its_id(console):
    c = console(speed=30)
    api = next(s for s in c.sim.services.values() if s.name == "api")
    async with c.app.run_test(size=(120, 40)) as pilot:
        await started(pilot, c)
        assert c.tree.select_id(service_id(api.swarm_id))
        await pilot.press("y")
        assert c.app.clipboard == api.swarm_id
        await until(pilot, lambda: any(f"copied {api.swarm_id}" in str(n.message)
                                       for n in c.app._notifications), "the notice")
        await pilot.press("i")
        await until(pilot, lambda: _inspect(c) is not None and _inspect(c).text, "the JSON")
        shown = json.loads(_inspect(c).text)
        assert shown["ID"] == api.swarm_id and shown["Spec"]["name"] == "api"
        await pilot.press("escape")
        await until(pilot, lambda: _inspect(c) is None, "closed")


async def test_i_on_a_vm_shows_what_the_console_knows(console):
    c = console(speed=30)
    async with c.app.run_test(size=(120, 40)) as pilot:
        await started(pilot, c)
        assert c.tree.select_id("vm:vm-02")
        await pilot.press("i")
        await until(pilot, lambda: _inspect(c) is not None and _inspect(c).text, "the JSON")
        assert json.loads(_inspect(c).text)["name"] == "vm-02"
        await pilot.press("escape")
        await pilot.press("y")
        assert c.app.clipboard == "vm-02"
