"""Service actions from the keyboard: the selected service (or its task's), the value
asked, the plan confirmed (typed when risky), run to converged; absent for on-call."""
from __future__ import annotations

from uikit import Rig, started, until

from opsconsole.model import service_id, task_id
from opsconsole.ui.screens import ConfirmScreen
from opsconsole.ui.services import ValueScreen


def _svc(c: Rig, name: str):
    return next(s for s in c.sim.services.values() if s.name == name)


def _screen(c: Rig, kind: type):
    return c.app.screen if isinstance(c.app.screen, kind) else None


async def test_scale_asks_n_then_confirms_and_converges(console):
    c = console(speed=30)
    async with c.app.run_test(size=(120, 40)) as pilot:
        await started(pilot, c)
        assert c.tree.select_id(service_id(_svc(c, "api").swarm_id))
        await pilot.press("S")
        await until(pilot, lambda: _screen(c, ValueScreen), "the replicas prompt")
        await pilot.press("6", "enter")
        await until(pilot, lambda: _screen(c, ConfirmScreen), "the confirmation")
        screen = _screen(c, ConfirmScreen)
        assert str(screen.query_one("#confirm-title").content) == "scale api=6"
        assert not screen.query("#confirm-input")          # scaling up asks no typed name
        await pilot.press("enter")
        await until(pilot, lambda: any(o.title == "scale api=6" and o.state == "done"
                                       for o in c.session.engine.operations), "scale done")
        assert _svc(c, "api").replicas == 6


async def test_scaling_to_zero_from_a_task_needs_the_target_typed(console):
    c = console(speed=30)
    async with c.app.run_test(size=(120, 40)) as pilot:
        await started(pilot, c)
        worker = _svc(c, "worker")
        task = next(t for t in c.sim.tasks.values()
                    if t.service_id == worker.swarm_id and t.wanted)
        c.tree.select_id(task_id(task.swarm_id)) or c.tree.select_id(service_id(worker.swarm_id))
        await pilot.press("S")
        await until(pilot, lambda: _screen(c, ValueScreen), "the replicas prompt")
        await pilot.press("0", "enter")
        await until(pilot, lambda: _screen(c, ConfirmScreen), "the confirmation")
        assert _screen(c, ConfirmScreen).query("#confirm-input")
        await pilot.press("escape")
        await until(pilot, lambda: _screen(c, ConfirmScreen) is None, "cancelled")
        assert _svc(c, "worker").replicas == 3 and c.session.engine.operations == []


async def test_oncall_has_no_service_keys(console):
    c = console(speed=30, role="oncall")
    async with c.app.run_test(size=(120, 40)) as pilot:
        await started(pilot, c)
        assert c.tree.select_id(service_id(_svc(c, "api").swarm_id))
        for key in ("S", "R", "E", "B"):
            await pilot.press(key)
        await pilot.pause(0.2)
        assert _screen(c, ValueScreen) is None and _screen(c, ConfirmScreen) is None
        assert c.session.engine.operations == [] and _svc(c, "api").replicas == 4
