"""Maintenance windows from the keyboard: m on a host, U for a rolling update, the
offer to resume or roll back what a dead console left, and the audit log."""
from __future__ import annotations

import asyncio
import time

from textual.widgets import Button, DataTable, Input
from uikit import (
    Rig,
    footer_actions,
    make_console,
    started,
    summary_text,
    table_rows,
    until,
)

from opsconsole.config import WindowOptions
from opsconsole.ops import catalog
from opsconsole.ops.plans import Timing
from opsconsole.providers.sim import SimCluster
from opsconsole.ui.screens import AuditScreen, ConfirmScreen, UnfinishedScreen

FAST = Timing(sessions_timeout=20, drain_timeout=120)
ROLL = WindowOptions(update_command="sudo apt-get -y upgrade docker.io", reboot=True,
                     expect_engine_change=True)


def _screen(c: Rig, kind):
    return c.app.screen if isinstance(c.app.screen, kind) else None


async def _type_and_confirm(pilot, c: Rig, word: str) -> None:
    await until(pilot, lambda: _screen(c, ConfirmScreen) is not None
                and c.app.screen.query("#confirm-yes"), "the confirmation, composed")
    screen = _screen(c, ConfirmScreen)
    assert screen.query_one("#confirm-yes", Button).disabled
    screen.query_one("#confirm-input", Input).value = word
    await until(pilot, lambda: not screen.query_one("#confirm-yes", Button).disabled,
                "Confirm to be enabled")
    screen.query_one("#confirm-yes", Button).press()
    await until(pilot, lambda: _screen(c, ConfirmScreen) is None, "the confirmation to close")


def _finished(c: Rig, title: str):
    return lambda: any(o.title == title and o.state in ("done", "failed", "aborted")
                       for o in c.session.engine.operations)


async def test_m_runs_host_maintenance_on_the_selected_host(console):
    c = console(speed=300, timing=FAST)
    async with c.app.run_test(size=(120, 40)) as pilot:
        await started(pilot, c)
        assert c.tree.select_id("host:hv-02")
        await pilot.press("m")
        await until(pilot, lambda: _screen(c, ConfirmScreen) is not None, "the plan")
        steps = [str(s.content) for s in c.app.screen.query(".step")]
        assert any("shut down vm-05" in s for s in steps)
        assert any("install updates on hv-02" in s for s in steps)
        await _type_and_confirm(pilot, c, "hv-02")
        await until(pilot, lambda: "maintenance hv-02" in summary_text(c.app),
                    "the summary to show the window")
        await until(pilot, _finished(c, "maintenance hv-02"), "the window to end", timeout=90)
        op = c.session.engine.operations[-1]
        assert op.state == "done", op.error
        assert all(n.availability == "active" for n in c.sim.nodes.values())
        assert c.sim.hosts["hv-02"].state == "up" and c.sim.boots.get("vm-05", 0) >= 1


async def test_U_updates_the_selected_vm(console):
    c = console(speed=300, timing=FAST, maintenance=ROLL)
    async with c.app.run_test(size=(120, 40)) as pilot:
        await started(pilot, c)
        assert c.tree.select_id("vm:vm-05")
        await pilot.press("U")
        await _type_and_confirm(pilot, c, "vm-05")
        await until(pilot, _finished(c, "rolling-update vm-05"), "the update", timeout=90)
        assert c.session.engine.operations[-1].state == "done"
        assert c.node("vm-05").engine_version == "24.0.7"
        assert c.node("vm-04").engine_version == "20.10.24"      # only the one selected


async def _dead_console_left(tmp_path, sim: SimCluster) -> str:
    """A first console starts a drain and dies in the middle (its task cancelled)."""
    first = make_console(tmp_path, sim=sim, timing=Timing(sessions_timeout=600,
                                                          sessions_threshold=0))
    snap = await first.session.cluster.snapshot()
    op = first.session.engine.start(catalog.build("drain", snap, "vm-03", first.session
                                                  .inventory.timing))
    deadline = time.monotonic() + 30
    while 1 not in op.times:          # waiting for sessions: it will be there a while
        assert not op.task.done() and time.monotonic() < deadline, op.error
        await asyncio.sleep(0.01)
    op.task.cancel()
    await asyncio.gather(op.task, return_exceptions=True)
    return op.id


async def _after_a_dead_console(tmp_path, **console_kw):
    """A site where a console died mid-drain, its op id, and a new console on that site."""
    sim = SimCluster(seed=1, speed=300)
    op_id = await _dead_console_left(tmp_path, sim)
    return sim, op_id, make_console(tmp_path, sim=sim, **console_kw)


async def test_a_new_console_offers_to_resume_what_a_dead_one_left(tmp_path):
    sim, op_id, c = await _after_a_dead_console(tmp_path, timing=FAST)
    async with c.app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: _screen(c, UnfinishedScreen) is not None
                    and c.app.screen.query(".step"), "the offer")
        text = " ".join(str(s.content) for s in c.app.screen.query(".step"))
        assert "✔ 1. set proxy server portail/vm-03 to drain" in text
        c.app.screen.query_one("#unfinished-resume", Button).press()
        await _type_and_confirm(pilot, c, op_id)
        await until(pilot, lambda: c.session.engine.operations
                    and c.session.engine.operations[-1].state == "done", "the resumed drain")
        op = c.session.engine.operations[-1]
        assert op.id == op_id and 0 in op.skip
        assert c.session.journal.unfinished() == [] and sim.lock is None
        assert not c.wanted_tasks_on("vm-03")


async def test_roll_back_from_the_offer(tmp_path):
    sim, op_id, c = await _after_a_dead_console(tmp_path, timing=FAST)
    async with c.app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: _screen(c, UnfinishedScreen) is not None
                    and c.app.screen.query("#unfinished-rollback"), "the offer")
        c.app.screen.query_one("#unfinished-rollback", Button).press()
        await _type_and_confirm(pilot, c, op_id)
        await until(pilot, lambda: c.session.engine.operations
                    and c.session.engine.operations[-1].state == "done", "the rollback")
        assert sim.admin[("portail", "vm-03")] == "ready"
        assert c.session.journal.unfinished() == [] and sim.lock is None


async def test_read_only_sees_the_unfinished_operation_but_cannot_act(tmp_path):
    _, _, c = await _after_a_dead_console(tmp_path, read_only=True)
    async with c.app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: _screen(c, UnfinishedScreen) is not None
                    and c.app.screen.query("#unfinished-later"), "the offer")
        assert not c.app.screen.query("#unfinished-resume")
        assert not c.app.screen.query("#unfinished-rollback")
        await pilot.press("escape")
        await until(pilot, lambda: "LOCKED drain vm-03" in summary_text(c.app),
                    "the header to show the lock the dead console holds")
        before = c.world()
        for key in ("m", "U"):
            await pilot.press(key)
        await pilot.pause(0.3)
        assert c.world() == before and not c.session.engine.operations
        assert {"filter", "help"} <= footer_actions(c)
        assert not footer_actions(c) & {"op('maintenance')", "op('rolling-update')"}


async def test_audit_log_lists_what_was_done(console):
    c = console(speed=30)
    async with c.app.run_test(size=(140, 40)) as pilot:
        await started(pilot, c)
        c.app.request("cordon", c.node_id("vm-02"))
        await until(pilot, lambda: _screen(c, ConfirmScreen) is not None
                    and c.app.screen.query("#confirm-yes"), "the confirmation")
        c.app.screen.query_one("#confirm-yes", Button).press()
        await until(pilot, lambda: c.node("vm-02").availability == "pause", "vm-02 paused")
        await pilot.press("L")
        await until(pilot, lambda: _screen(c, AuditScreen) is not None, "the audit log")
        rows = table_rows(c.app.screen.query_one(DataTable))
        # one row per record, newest first, the node by name (not its Swarm id)
        assert [r[2:] for r in rows if r[2] == "set availability"] == [
            ["set availability", "vm-02", "ok"], ["set availability", "vm-02", "started"]]
        assert not any(c.node_id("vm-02") in " ".join(row) for row in rows)
        await pilot.press("escape")
        await until(pilot, lambda: _screen(c, AuditScreen) is None, "the audit log to close")


async def test_an_operation_that_fails_unfinished_is_offered_for_rollback_at_once(tmp_path):
    c = make_console(tmp_path, timing=Timing(sessions_timeout=1.0, drain_timeout=120))
    async with c.app.run_test(size=(120, 40)) as pilot:
        await started(pilot, c)
        engine = c.session.engine
        plan = catalog.build("drain", c.app.snapshot, "vm-03",
                             Timing(sessions_timeout=1.0, drain_timeout=120))
        # HAProxy goes away once the proxy server is set to drain: the wait cannot trust
        # any count, times out, and the drain stays unfinished with the lock
        engine.listen(lambda o: o.plan is plan and o.index == 1 and not o.finished
                      and c.sim.unreachable.setdefault("proxy", "refuses connections"))
        op = engine.start(plan)
        await until(pilot, lambda: op.finished and op.unfinished, "the failure", timeout=30)
        c.sim.unreachable.clear()
        await until(pilot, lambda: _screen(c, UnfinishedScreen) is not None
                    and c.app.screen.query("#unfinished-rollback"), "the offer")
        c.app.screen.query_one("#unfinished-rollback", Button).press()
        await _type_and_confirm(pilot, c, op.id)
        await until(pilot, lambda: engine.operations[-1] is not op
                    and engine.operations[-1].state == "done", "the rollback")
        assert c.sim.admin[("portail", "vm-03")] == "ready"
        assert c.session.journal.unfinished() == [] and c.sim.lock is None
