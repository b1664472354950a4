"""engine: running plans on the sim, journal, pause/resume, abort with undo, failures."""
from __future__ import annotations

import asyncio
import json
import os

import pytest
from unitkit import finish, make_rig, nudge, until

from opsconsole.model import ACTIVE, DRAIN, PAUSE
from opsconsole.ops import engine as engine_mod
from opsconsole.ops import plans
from opsconsole.ops.engine import (
    ABORTED,
    DONE,
    FAILED,
    PAUSED,
    RUNNING,
    Operation,
    Plan,
    Step,
    StepFailed,
)
from opsconsole.ops.guards import FAIL, WARN
from opsconsole.ops.records import Journal
from opsconsole.ops.roles import RoleError
from opsconsole.providers.sim import ManualClock, SimCluster

NO_SESSION_WAIT = plans.Timing(sessions_threshold=10**6)


def frozen_rig(tmp_path, seed: int = 3):
    """A rig whose world only moves when the test moves the clock."""
    clock = ManualClock()
    return make_rig(tmp_path, SimCluster(seed=seed, clock=clock)), clock


def journal_events(journal: Journal, op_id: str) -> list[tuple]:
    out = []
    for r in journal.read():
        if r.get("op") != op_id:
            continue
        if r["event"] == "step":
            out.append(("step", r["index"], r["phase"]))
        else:
            out.append((r["event"],))
    return out


async def step_started(rig, op, index: int) -> None:
    await until(lambda: ("step", index, "start") in journal_events(rig.journal, op.id),
                what=f"step {index} of {op.title} to start")


# -- read-only -------------------------------------------------------------------------------

async def clock_until_step(rig, clock, op, index: int, limit: float = 120.0) -> None:
    """Move a frozen clock on, a simulated second at a time, until step `index` starts."""
    moved = 0.0
    while ("step", index, "start") not in journal_events(rig.journal, op.id):
        assert moved < limit, f"step {index} did not start: {op.detail}; {op.log[-3:]}"
        clock.advance(1.0)
        moved += 1.0
        await nudge(rig.sim, 0.05)


async def test_engine_refuses_everything_in_read_only(rig_factory):
    rig = rig_factory(read_only=True)
    snap = await rig.snapshot()
    plan = plans.cordon(snap, "vm-02")
    with pytest.raises(RoleError):
        rig.engine.start(plan)
    assert rig.engine.operations == []
    op = Operation(plan)
    op.state = RUNNING
    for call in (rig.engine.pause, rig.engine.resume, rig.engine.abort):
        with pytest.raises(RoleError):
            call(op)
    assert op.state == RUNNING and not op._abort
    assert list(rig.journal.read()) == []
    assert rig.sim.nodes[snap.node_named("vm-02").swarm_id].availability == ACTIVE


# -- a drain that works --------------------------------------------------------------------------

async def test_drain_runs_to_done_and_journals_every_step(rig_factory, monkeypatch):
    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd))[1])
    rig = rig_factory(speed=150)
    snap = await rig.snapshot()
    node = snap.node_named("vm-03")
    plan = plans.drain(snap, "vm-03")
    assert plan.refused == []
    assert [s.key.split(":")[0] for s in plan.steps] == [
        "server", "sessions", "availability", "move", "availability", "scale-back", "drained"]

    op = await asyncio.wait_for(rig.engine.run(plan), 15)
    assert op.state == DONE, (op.error, op.log)
    assert op.progress == 1.0 and op.error == ""

    after = await rig.snapshot()
    assert after.get(node.id).availability == DRAIN
    assert after.tasks_on_node(node.swarm_id) == []
    assert not [t for t in after.tasks_on_node(node.swarm_id, wanted_only=False)
                if t.state == "running"]
    for svc in after.services:
        assert after.converged(svc), svc.name
    server = next(s for s in after.servers if s.vm == "vm-03")
    assert server.admin == "drain"

    n = len(plan.steps)
    expected = [("begin",)]
    for i in range(n):
        expected += [("step", i, "start"), ("step", i, "done")]
    expected += [("end",)]
    events = journal_events(rig.journal, op.id)
    assert [e for e in events if e != ("note",)] == expected
    # the move journals what it scales before scaling it (and where the tasks landed)
    move = next(i for i, s in enumerate(plan.steps) if s.key.startswith("move:"))
    assert events.index(("note",)) == events.index(("step", move, "start")) + 1
    recs = [json.loads(line) for line in rig.journal.path.read_text().splitlines()]
    assert recs[0]["kind"] == "drain" and recs[0]["target"] == "vm-03"
    assert recs[0]["steps"] == [s.title for s in plan.steps] and recs[0]["who"]
    assert recs[-1]["state"] == DONE
    assert [r["time"] for r in recs] == sorted(r["time"] for r in recs)
    # every journal and audit record was fsynced as it was written
    audit_lines = len(rig.audit.path.read_text().splitlines())
    assert len(synced) == len(recs) + audit_lines
    assert rig.journal.unfinished() == []


async def test_second_operation_is_refused_while_one_is_pending_or_running(tmp_path):
    rig, clock = frozen_rig(tmp_path)
    snap = await rig.snapshot()
    first = rig.engine.start(plans.drain(snap, "vm-03", NO_SESSION_WAIT))
    with pytest.raises(StepFailed, match="another operation is running: drain vm-03"):
        rig.engine.start(plans.cordon(snap, "vm-05"))     # same tick: first still pending
    await step_started(rig, first, 3)
    with pytest.raises(StepFailed, match="another operation"):
        rig.engine.start(plans.cordon(snap, "vm-05"))
    assert len(rig.engine.operations) == 1
    rig.engine.abort(first)
    await finish(rig.sim, first.task)
    assert rig.sim.nodes[snap.node_named("vm-05").swarm_id].availability == ACTIVE


async def test_cordon_and_activate(rig_factory):
    rig = rig_factory()
    snap = await rig.snapshot()
    node = snap.node_named("vm-02")
    op = await rig.engine.run(plans.cordon(snap, "vm-02"))
    assert op.state == DONE and rig.sim.nodes[node.swarm_id].availability == PAUSE
    # a cordoned node keeps its tasks
    assert (await rig.snapshot()).tasks_on_node(node.swarm_id)
    rig.sim.set_server_state("portail", "vm-02", "drain")
    snap = await rig.snapshot()
    plan = plans.activate(snap, "vm-02")
    assert any("portail/vm-02 to ready" in s.title for s in plan.steps)
    op = await rig.engine.run(plan)
    assert op.state == DONE
    after = await rig.snapshot()
    assert after.get(node.id).availability == ACTIVE
    assert after.get("proxy:portail/vm-02").admin == "ready"
    # running activate again is harmless: steps are idempotent
    again = await rig.engine.run(plans.activate(after, "vm-02"))
    assert again.state == DONE and any("already active" in line for line in again.log)


# -- a console killed mid-step -------------------------------------------------------------------

async def test_unfinished_finds_an_operation_cancelled_mid_step(tmp_path):
    rig, clock = frozen_rig(tmp_path)
    snap = await rig.snapshot()
    finished = await rig.engine.run(plans.cordon(snap, "vm-05"))
    assert finished.state == DONE

    op = rig.engine.start(plans.drain(snap, "vm-03", NO_SESSION_WAIT))
    await step_started(rig, op, 3)          # the world is frozen: the wait cannot finish
    op.task.cancel()                        # the console is killed
    with pytest.raises(asyncio.CancelledError):
        await op.task
    # a fresh Journal on the same file, as a restarted console would open it
    unfinished = Journal(rig.journal.path).unfinished()
    assert [u.op for u in unfinished] == [op.id]
    assert unfinished[0].kind == "drain" and unfinished[0].target == "vm-03"
    assert unfinished[0].done_steps == [0, 1, 2]
    assert unfinished[0].state == "interrupted" and unfinished[0].liveness() == ""
    assert ("end",) not in journal_events(rig.journal, op.id)

    # a torn last line (killed mid-write) is ignored, whole records are kept
    with open(rig.journal.path, "a") as f:
        f.write(f'{{"event": "end", "op": "{op.id}", "sta')
    journal = Journal(rig.journal.path)
    assert [u.op for u in journal.unfinished()] == [op.id]
    assert len(list(journal.read())) == len(rig.journal.path.read_text().splitlines()) - 1
    # ...and once a whole end record follows, the operation is no longer open
    journal.end(op.id, "aborted")
    assert len(journal.path.read_text().splitlines()) >= 2
    assert Journal(rig.journal.path).unfinished() == []


# -- pause and resume --------------------------------------------------------------------------------

async def test_pause_holds_the_operation_and_resume_continues(tmp_path):
    rig, clock = frozen_rig(tmp_path)
    snap = await rig.snapshot()
    server = max(snap.servers, key=lambda s: s.cur_sessions)
    assert server.cur_sessions > 0
    node = snap.node_named(server.vm)
    op = rig.engine.start(plans.drain(snap, server.vm))      # waits for sessions to end
    await step_started(rig, op, 1)
    await nudge(rig.sim, 0.1)
    assert op.state == RUNNING and "session(s) still on" in op.detail
    rig.engine.pause(op)
    assert op.state == PAUSED
    clock.advance(600)                      # every session in the world ends...
    await nudge(rig.sim, 0.4)               # ...and the engine is woken several times
    assert op.state == PAUSED and not op.task.done()
    assert op.index == 1                    # ...but the paused operation does not move on
    assert ("step", 1, "done") not in journal_events(rig.journal, op.id)
    assert rig.sim.nodes[node.swarm_id].availability == ACTIVE
    assert any("paused by operator" in line for line in op.log)

    rig.engine.resume(op)
    assert op.state == RUNNING
    await clock_until_step(rig, clock, op, 5)   # the replacements start elsewhere first
    assert rig.sim.nodes[node.swarm_id].availability == DRAIN
    clock.advance(60)                       # let the tasks move
    await finish(rig.sim, op.task)
    assert op.state == DONE, op.error
    assert any("resumed by operator" in line for line in op.log)
    assert (await rig.snapshot()).tasks_on_node(node.swarm_id) == []


# -- abort and undo ---------------------------------------------------------------------------------------

async def test_abort_during_drain_wait_restores_node_and_proxy(tmp_path):
    rig, clock = frozen_rig(tmp_path)
    snap = await rig.snapshot()
    node = snap.node_named("vm-03")
    op = rig.engine.start(plans.drain(snap, "vm-03", NO_SESSION_WAIT))
    await clock_until_step(rig, clock, op, 6)   # the replacements start elsewhere first
    now = await rig.snapshot()
    assert now.get(node.id).availability == DRAIN
    assert now.get("proxy:portail/vm-03").admin == "drain"

    rig.engine.abort(op)
    await finish(rig.sim, op.task)
    assert op.state == ABORTED and op.error == ""
    after = await rig.snapshot()
    assert after.get(node.id).availability == ACTIVE
    assert after.get("proxy:portail/vm-03").admin == "ready"
    # the drain, the replica counts, the cordon and the proxy server
    assert sum("undid" in line for line in op.log) == 4
    events = journal_events(rig.journal, op.id)
    assert ("step", 6, "done") not in events and events[-1] == ("end",)
    assert list(rig.journal.read())[-1]["state"] == ABORTED
    actions = [(r["action"], r.get("args"), r["result"]) for r in rig.audit.read()]
    assert ("set availability", ["active"], "ok") in actions
    assert ("set proxy server state", ["ready"], "ok") in actions
    # aborting a finished operation does nothing
    rig.engine.abort(op)
    assert op.state == ABORTED


async def test_abort_puts_back_what_was_there_not_active(tmp_path):
    """A node cordoned before a drain is cordoned again after the drain is aborted."""
    rig, clock = frozen_rig(tmp_path)
    snap = await rig.snapshot()
    node = snap.node_named("vm-03")
    rig.sim.set_availability(node.swarm_id, PAUSE)
    rig.sim.set_server_state("portail", "vm-03", "maint")
    snap = await rig.snapshot()
    op = rig.engine.start(plans.drain(snap, "vm-03", NO_SESSION_WAIT))
    await step_started(rig, op, 3)
    rig.engine.abort(op)
    await finish(rig.sim, op.task)
    after = await rig.snapshot()
    assert op.state == ABORTED
    assert after.get(node.id).availability == PAUSE
    assert after.get("proxy:portail/vm-03").admin == "maint"


async def test_abort_before_a_step_starts_does_not_undo_it(tmp_path):
    rig, _ = frozen_rig(tmp_path)
    trail: list[str] = []

    async def hold(ctx):
        rig.engine.abort(ctx.op)          # aborted as this step ends: the next never begins

    async def never(ctx):
        trail.append("run later")

    async def undo_later(ctx):
        trail.append("undo later")
    op = rig.engine.start(Plan("test", "x", [Step("hold", hold), Step("later", never,
                                                                           undo_later)]))
    await asyncio.wait_for(op.task, 5)
    assert op.state == ABORTED and trail == []


async def _engine_for_steps(tmp_path):
    rig, _ = frozen_rig(tmp_path)
    return rig


async def test_abort_undoes_finished_steps_newest_first_and_reports_failures(tmp_path):
    rig = await _engine_for_steps(tmp_path)
    trail: list[str] = []
    gate = asyncio.Event()

    def simple(name, undo=True, undo_fails=False):
        async def run(ctx):
            trail.append(f"run {name}")

        async def back(ctx):
            if undo_fails:
                raise RuntimeError("disk on fire")
            trail.append(f"undo {name}")
        return Step(name, run, back if undo else None)

    async def blocking(ctx):
        trail.append("run block")
        while not gate.is_set():
            await ctx.checkpoint()
            await asyncio.sleep(0.01)

    plan = Plan("test", "x", [simple("a"), simple("b", undo=False), simple("c", undo_fails=True),
                              simple("d"), Step("block", blocking), simple("never")])
    op = rig.engine.start(plan)
    await until(lambda: "run block" in trail)
    rig.engine.abort(op)
    await asyncio.wait_for(op.task, 5)
    assert op.state == ABORTED
    assert trail == ["run a", "run b", "run c", "run d", "run block", "undo d", "undo a"]
    assert op.error == "could not restore: c: disk on fire"


async def test_custom_plan_makes_no_progress_while_paused(tmp_path):
    rig = await _engine_for_steps(tmp_path)
    ticks = []

    async def counting(ctx):
        while len(ticks) < 30:
            await ctx.checkpoint()
            ticks.append(1)
            ctx.say(f"{len(ticks)} ticks", len(ticks) / 30)
            await asyncio.sleep(0.01)

    op = rig.engine.start(Plan("count", "x", [Step("count", counting)]))
    await until(lambda: len(ticks) >= 5)
    rig.engine.pause(op)
    await asyncio.sleep(0.05)
    held = len(ticks)
    await asyncio.sleep(0.3)
    assert len(ticks) == held < 30
    assert 0 < op.progress < 1 and op.detail == f"{held} ticks"
    rig.engine.resume(op)
    await asyncio.wait_for(op.task, 5)
    assert op.state == DONE and len(ticks) == 30 and op.progress == 1.0


# -- drains that cannot go ahead -------------------------------------------------------------------------------

async def _pin_reports(rig):
    """Leave the node running `reports` as the only one it may use; return that node."""
    snap = await rig.snapshot()
    [task] = [t for t in snap.tasks if t.service_name == "reports" and t.wanted]
    holder = snap.node(task.node_id)
    other = next(n for n in snap.nodes if ("storage", "ssd") in n.labels and n != holder)
    rig.sim.set_availability(other.swarm_id, PAUSE)
    return holder


async def test_drain_refused_by_capacity_guard_names_the_task(rig_factory):
    rig = rig_factory()
    holder = await _pin_reports(rig)
    snap = await rig.snapshot()
    plan = plans.drain(snap, holder.hostname)
    [bad] = plan.refused
    assert bad.name == "capacity" and bad.level == FAIL
    assert "reports.1" in bad.message and "constraint node.labels.storage==ssd" in bad.message
    with pytest.raises(StepFailed, match="refused by guards: .*reports.1"):
        rig.engine.start(plan)
    assert rig.engine.operations == []
    assert rig.sim.nodes[holder.swarm_id].availability == ACTIVE


async def test_forced_drain_that_cannot_finish_times_out_naming_the_pending_task(rig_factory):
    rig = rig_factory(speed=150)
    holder = await _pin_reports(rig)
    snap = await rig.snapshot()
    timing = plans.Timing(sessions_threshold=10**6, drain_timeout=1.0)
    plan = plans.drain(snap, holder.hostname, timing, force=True)
    assert plan.refused == [] and plan.force
    cap = next(c for c in plan.checks if c.name == "capacity")
    assert cap.level == WARN and "overridden by force" in cap.message

    op = await asyncio.wait_for(rig.engine.run(plan), 10)
    assert op.state == FAILED
    assert op.error.startswith("timed out after 1s waiting for")
    assert "reports.1 pending" in op.error
    assert "no suitable node" in op.error
    recs = [r for r in rig.journal.read() if r.get("op") == op.id]
    assert recs[-2]["phase"] == "failed" and recs[-2]["index"] == len(plan.steps) - 1
    assert "reports.1" in recs[-2]["error"]
    # capacity was taken out: the operation stays unfinished (no end), the lock held
    assert recs[-1]["event"] == "failed" and op.unfinished
    [record] = rig.journal.unfinished()
    assert record.op == op.id and record.state == FAILED
    assert rig.sim.lock is not None and rig.sim.lock.op == op.id
    # a failed step is not undone: the node stays drained for the operator to decide
    assert rig.sim.nodes[holder.swarm_id].availability == DRAIN


async def test_guard_failing_mid_operation_pauses_before_any_change(tmp_path):
    rig, clock = frozen_rig(tmp_path)
    snap = await rig.snapshot()
    [task] = [t for t in snap.tasks if t.service_name == "reports" and t.wanted]
    holder = snap.node(task.node_id)
    plan = plans.drain(snap, holder.hostname, NO_SESSION_WAIT)
    assert plan.refused == []                    # fine when planned...
    await _pin_reports(rig)                      # ...then the only other home is cordoned
    rig.engine.keys = {"pause": "P", "abort": "X"}       # the front end's (remapped) keys
    op = rig.engine.start(plan)
    await until(lambda: op.state == PAUSED, what="guard pause")
    assert any("paused before" in line and "reports.1" in line
               and "goes on by itself once they clear; press P to check now, press X to abort"
               in line for line in op.log)
    await asyncio.sleep(0.1)
    assert op.state == PAUSED and op.index == 0
    assert (await rig.snapshot()).server("portail", holder.hostname).admin == "ready"
    rig.engine.abort(op)
    await asyncio.wait_for(op.task, 5)
    assert op.state == ABORTED
    assert rig.sim.nodes[holder.swarm_id].availability == ACTIVE


async def test_an_operator_pause_during_the_guards_read_makes_them_read_again(tmp_path):
    """Paused while the guards were reading (and passing), the cluster changes during the
    pause: on resume the guards read it again and pause the step; no step runs on the
    read from before the pause."""
    rig, clock = frozen_rig(tmp_path)
    snap = await rig.snapshot()
    [task] = [t for t in snap.tasks if t.service_name == "reports" and t.wanted]
    holder = snap.node(task.node_id)
    plan = plans.drain(snap, holder.hostname, NO_SESSION_WAIT)
    assert plan.refused == [] and plan.steps[0].risk is not None
    read = rig.cluster.snapshot
    box: dict = {}

    async def paused_while_reading(hypervisor: bool = True):
        snap = await read(hypervisor)
        if "op" in box and not box.get("paused"):
            box["paused"] = True
            rig.engine.pause(box["op"])          # the operator's p, as the guards read
        return snap
    rig.cluster.snapshot = paused_while_reading
    box["op"] = op = rig.engine.start(plan)
    await until(lambda: box.get("paused"), what="the pause during the guards' read")
    await _pin_reports(rig)                      # meanwhile the only other home is cordoned
    await asyncio.sleep(0.05)
    assert op.index == 0 and not any("▶ " in line for line in op.log)
    rig.engine.resume(op)
    await until(lambda: any("paused before" in line for line in op.log), what="guard pause")
    assert not any("▶ " in line for line in op.log), op.log
    assert rig.sim.nodes[holder.swarm_id].availability == ACTIVE
    rig.engine.abort(op)
    await asyncio.wait_for(op.task, 5)


async def test_guard_pause_goes_on_by_itself_once_the_guard_clears(tmp_path, monkeypatch):
    """A cluster still settling fails a guard for a moment: the TUI's pause (no time limit)
    re-checks on its own and goes on once it is safe, without the operator's key."""
    monkeypatch.setattr(engine_mod, "GUARD_RECHECK_S", 0.05)
    rig, clock = frozen_rig(tmp_path)
    snap = await rig.snapshot()
    [task] = [t for t in snap.tasks if t.service_name == "reports" and t.wanted]
    holder = snap.get(f"node:{task.node_id}")
    plan = plans.drain(snap, holder.hostname, NO_SESSION_WAIT)
    other = next(n for n in snap.nodes if ("storage", "ssd") in n.labels and n != holder)
    await _pin_reports(rig)
    assert rig.engine.guard_wait is None
    op = rig.engine.start(plan)
    await until(lambda: op.state == PAUSED, what="guard pause")
    await asyncio.sleep(0.2)
    assert op.state == PAUSED and op.index == 0          # still failing: still paused
    rig.sim.set_availability(other.swarm_id, ACTIVE)     # the other home is back
    await until(lambda: op.index > 0, what="going on")
    assert any("guards clear again: going on" in line for line in op.log)
    rig.engine.abort(op)
    await asyncio.wait_for(op.task, 5)


async def test_a_wait_is_shown_while_it_lasts_with_its_limit_and_what_is_pending(tmp_path):
    rig, clock = frozen_rig(tmp_path)
    snap = await rig.snapshot()
    server = next(s for s in snap.servers if s.cur_sessions)
    seen: list = []
    rig.engine.listen(lambda op: seen.append(op.waiting))
    op = rig.engine.start(plans.drain(snap, server.vm, plans.Timing(sessions_timeout=600)))
    await until(lambda: op.waiting is not None, what="the wait for sessions")
    assert op.waiting.what == "sessions to end" and op.waiting.limit == 600
    assert "session" in op.waiting.pending and 0 <= op.waiting.used < 600
    rig.engine.abort(op)
    await finish(rig.sim, op.task)
    assert op.waiting is None and any(w is not None for w in seen)
