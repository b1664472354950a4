"""Changing the cluster from the keyboard: cordon, activate, drain, pause, abort."""
from __future__ import annotations

from textual.widgets import Button, Input
from uikit import Rig, started, summary_text, until

from opsconsole.ops.plans import Timing
from opsconsole.ui.opspanel import OperationView, OpsPanel
from opsconsole.ui.screens import AbortScreen, ConfirmScreen


def _confirm(c: Rig) -> ConfirmScreen | None:
    screen = c.app.screen
    return screen if isinstance(screen, ConfirmScreen) else None


async def _ask(pilot, c: Rig, key: str, title: str) -> ConfirmScreen:
    """Press an operation's key and wait for its confirmation."""
    await pilot.press(key)
    await until(pilot, lambda: _confirm(c) is not None, f"the confirmation of {title}")
    screen = _confirm(c)
    assert str(screen.query_one("#confirm-title").content) == title
    return screen


def _views(c: Rig) -> list[OperationView]:
    return list(c.app.query_one(OpsPanel).query(OperationView))


def _done(c: Rig, title: str):
    return lambda: any(o.title == title and o.state == "done"
                       for o in c.session.engine.operations)


async def test_cordon_then_activate_by_keys(console):
    c = console(speed=30)
    async with c.app.run_test(size=(120, 40)) as pilot:
        await started(pilot, c)
        vm03 = c.node("vm-03")
        assert c.tree.select_id(vm03.id)

        screen = await _ask(pilot, c, "c", "cordon vm-03")
        steps = [str(s.content) for s in screen.query(".step")]
        assert steps == ["1. set vm-03 availability to pause"]
        assert screen.query_one("#confirm-yes", Button).has_focus
        assert not screen.query("#confirm-input")        # cordon asks no typed name
        await pilot.press("enter")
        await until(pilot, lambda: _confirm(c) is None, "the confirmation to close")
        await until(pilot, lambda: c.node("vm-03").availability == "pause", "vm-03 paused")
        await until(pilot, _done(c, "cordon vm-03"), "the cordon to finish")
        await until(pilot, lambda: "‖ pause" in c.tree.index[vm03.id].label.plain,
                    "the tree to show vm-03 paused")
        # running tasks stay where they were
        assert c.wanted_tasks_on("vm-03")

        await _ask(pilot, c, "a", "activate vm-03")
        await pilot.press("enter")
        await until(pilot, lambda: c.node("vm-03").availability == "active", "vm-03 active")
        await until(pilot, _done(c, "activate vm-03"), "the activate to finish")
        titles = [v.op.title for v in _views(c)]
        assert titles == ["activate vm-03", "cordon vm-03"]     # newest first
        assert not c.app.query("#ops-empty")


async def test_operations_reach_the_node_from_its_vm_task_or_proxy_server(console):
    c = console(speed=30)
    async with c.app.run_test(size=(120, 40)) as pilot:
        await started(pilot, c)
        task = c.wanted_tasks_on("vm-05")[0]
        for entity_id in ("vm:vm-05", task.id, "proxy:portail/vm-05"):
            assert c.tree.select_id(entity_id)
            await _ask(pilot, c, "c", "cordon vm-05")
            await pilot.press("escape")                  # cancel: nothing changes
            await until(pilot, lambda: _confirm(c) is None, "the confirmation to close")
        assert c.node("vm-05").availability == "active"
        assert not c.session.engine.operations

        # a service is not a node: a warning, no confirmation
        assert c.tree.select_id(next(s.id for s in c.app.snapshot.services))
        await pilot.press("c")
        await pilot.pause()
        assert _confirm(c) is None
        assert any("Select a Swarm node" in n.message for n in c.app._notifications)


async def test_drain_asks_for_the_name_then_drains(console):
    c = console(speed=10, manual_clock=True)
    async with c.app.run_test(size=(140, 45)) as pilot:
        await started(pilot, c)
        vm03 = c.node("vm-03")
        assert c.tree.select_id(vm03.id)
        before = c.world()

        screen = await _ask(pilot, c, "d", "drain vm-03")
        yes = screen.query_one("#confirm-yes", Button)
        box = screen.query_one("#confirm-input", Input)
        assert yes.disabled and box.has_focus
        await pilot.press(*"vm-0")
        assert yes.disabled
        await pilot.press("4")                           # the wrong node
        assert box.value == "vm-04" and yes.disabled
        await pilot.press("enter")                       # refused: still asking
        assert _confirm(c) is screen
        await pilot.press(*"vm-03 ")
        assert yes.disabled                               # "vm-04vm-03 " is not it either
        await pilot.press("ctrl+u", *"vm-3")            # ctrl+u: clear the box
        assert box.value == "vm-3" and yes.disabled
        await pilot.press("ctrl+u", *"vm-03")
        await until(pilot, lambda: not yes.disabled, "Confirm to be enabled")
        assert c.world() == before                       # nothing happened while asking
        await pilot.click("#confirm-yes")
        await until(pilot, lambda: _confirm(c) is None, "the confirmation to close")

        engine = c.session.engine
        await until(pilot, lambda: engine.running is not None
                    and c.sim.admin[("portail", "vm-03")] == "drain",
                    "the drain to set the proxy server to drain")
        op = engine.running
        assert op.title == "drain vm-03"
        # the clock stands still: the operation waits for sessions and is seen waiting
        await until(pilot, lambda: [v.op for v in _views(c)] == [op], "the operation's view")
        await until(pilot, lambda: "drain vm-03 running" in summary_text(c.app),
                    "the summary to show the running drain")
        view = _views(c)[0]
        assert "drain vm-03  [running]" in str(view.query_one(".op-title").content)

        def tick() -> None:                              # 3 simulated seconds per poll
            c.clock.advance(0.3)
            c.sim.advance()
        await until(pilot, lambda: op.state != "running", "the drain to end", between=tick)
        assert op.state == "done", (op.error, op.log)
        await until(pilot, lambda: "drain vm-03 running" not in summary_text(c.app),
                    "the summary to drop the finished drain")
        assert not c.wanted_tasks_on("vm-03")
        assert c.node("vm-03").availability == "drain"
        assert c.sim.admin[("portail", "vm-03")] == "drain"
        await until(pilot, lambda: "[done]" in str(view.query_one(".op-title").content),
                    "the panel to show the drain done")
        # the tree follows: no task under the node any more
        await until(pilot, lambda: not c.tree.index[vm03.id].children,
                    "vm-03's tasks to leave the tree")
        journal = c.state_dir / "sim" / "journal.jsonl"
        assert '"state": "done"' in journal.read_text()


async def test_pause_resume_and_abort_restore_the_proxy_server(console):
    # the clock stands still, so the drain waits on vm-03's sessions for as long as we like
    c = console(manual_clock=True, timing=Timing(sessions_timeout=600))
    async with c.app.run_test(size=(120, 40)) as pilot:
        await started(pilot, c)
        vm03 = c.node("vm-03")
        assert c.app.snapshot.get("proxy:portail/vm-03").cur_sessions > 0
        assert c.tree.select_id(vm03.id)
        await _ask(pilot, c, "d", "drain vm-03")
        await pilot.press(*"vm-03", "enter")            # enter in the name box confirms
        engine = c.session.engine
        await until(pilot, lambda: engine.running is not None and engine.running.index == 1,
                    "the drain to wait for sessions")
        op = engine.running
        assert c.sim.admin[("portail", "vm-03")] == "drain"
        title = _views(c)[0].query_one(".op-title")

        await pilot.press("p")
        assert op.state == "paused"
        await until(pilot, lambda: "[paused]" in str(title.content), "the panel to say paused")
        await until(pilot, lambda: "drain vm-03 paused" in summary_text(c.app),
                    "the summary to say paused")
        await pilot.press("p")
        assert op.state == "running"
        await until(pilot, lambda: "[running]" in str(title.content), "the panel to say running")

        await pilot.press("x")          # asks first (test_ui_fit has the question)
        await until(pilot, lambda: isinstance(c.app.screen, AbortScreen), "the question")
        c.app.screen.query_one("#abort-yes", Button).press()
        await until(pilot, lambda: op.state == "aborted" and op.finished,
                    "the drain to abort and undo")
        assert not op.error, op.log
        assert c.sim.admin[("portail", "vm-03")] == "ready"
        assert c.node("vm-03").availability == "active"      # never got that far
        assert any("undid: set proxy server portail/vm-03 to drain" in line for line in op.log)
        await until(pilot, lambda: "[aborted]" in str(title.content), "the panel to say aborted")
        await until(pilot, lambda: "UP" in c.tree.index["proxy:portail/vm-03"].label.plain,
                    "the tree to show the server ready again")
        assert engine.running is None
