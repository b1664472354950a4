"""Maintenance windows on the sim: host maintenance, rolling updates, guards, budget,
the lock, and a console killed at every step boundary then resumed."""
from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest
from unitkit import make_rig, until

from opsconsole.model import ACTIVE, MANAGER, READY, WORKER
from opsconsole.ops import catalog
from opsconsole.ops.engine import ABORTED, DONE, FAILED, StepFailed
from opsconsole.ops.guards import FAIL
from opsconsole.ops.maintenance import WindowOptions
from opsconsole.ops.plans import PlanError, Timing
from opsconsole.providers.sim import SimCluster

FAST = Timing(sessions_timeout=30, drain_timeout=120)
ROLL = WindowOptions(update_command="sudo apt-get -y upgrade docker.io", reboot=True,
                     expect_engine_change=True)


def rig_on(tmp_path, seed: int = 5, speed: float = 400):
    return make_rig(tmp_path, SimCluster(seed=seed, speed=speed))


def healthy(snap) -> list[str]:
    """What keeps the cluster from being fully back in service."""
    bad = [f"{n.hostname} {n.state}/{n.availability}" for n in snap.nodes
           if n.state != READY or n.availability != ACTIVE]
    bad += [v.name + " " + v.state for v in snap.vms if v.state != "running"]
    bad += [s.name for s in snap.services if not snap.converged(s)]
    bad += [f"{s.name} {s.admin}" for s in snap.servers if s.admin != "ready"]
    return bad


async def run_plan(rig, plan, timeout: float = 60):
    op = rig.engine.start(plan)
    await asyncio.wait_for(op.task, timeout)
    return op


async def test_host_maintenance_end_to_end(tmp_path):
    rig = rig_on(tmp_path)
    snap = await rig.snapshot()
    managers_before = {n.hostname for n in snap.nodes if n.role == MANAGER}
    plan = catalog.build("maintenance", snap, "hv-01", FAST)
    assert not plan.refused
    assert plan.params["promote"] and plan.params["promote"] not in ("vm-01", "vm-02", "vm-03")
    op = await run_plan(rig, plan)
    assert op.state == DONE, op.error
    after = await rig.snapshot()
    assert healthy(after) == []
    assert {n.hostname for n in after.nodes if n.role == MANAGER} == managers_before
    assert after.get("host:hv-01").state == "up" and not after.get("host:hv-01").pending_reboot
    assert rig.sim.boots.get("vm-01", 0) >= 1          # the VMs really went down and up
    assert after.lock is None
    report = (tmp_path / "reports" / f"{op.id}.md").read_text()
    assert "# maintenance hv-01" in report and "**done**" in report
    assert "| 1 | promote" in report


async def test_maintenance_refused_when_tasks_cannot_fit(tmp_path):
    rig = rig_on(tmp_path)
    snap = await rig.snapshot()
    api = next(s for s in snap.services if s.name == "api")
    tight = replace(snap, services=tuple(replace(s, max_per_node=1) if s is api else s
                                         for s in snap.services))
    plan = catalog.build("maintenance", tight, "hv-01", FAST)
    assert [c.name for c in plan.refused] == ["capacity"]
    assert "api." in plan.refused[0].message
    with pytest.raises(StepFailed, match="refused by guards"):
        rig.engine.start(plan)


async def test_quorum_refused_when_no_worker_can_stand_in(tmp_path):
    rig = rig_on(tmp_path)
    snap = await rig.snapshot()
    for n in snap.nodes:            # no ready, active worker anywhere else
        if n.role == WORKER and snap.vm_of_node(n).host == "hv-02":
            rig.sim.set_availability(n.swarm_id, "pause")
    plan = catalog.build("maintenance", await rig.snapshot(), "hv-01", FAST)
    quorum = next(c for c in plan.checks if c.name == "quorum")
    assert quorum.level == FAIL and "promote a worker" in quorum.text


async def test_manual_host_step_waits_for_the_operator(tmp_path):
    rig = rig_on(tmp_path)
    plan = catalog.build("maintenance", await rig.snapshot(), "hv-02", FAST,
                         WindowOptions(host_step="manual"))
    op = rig.engine.start(plan)
    await until(lambda: op.state == "paused", timeout=30, what="the hold")
    assert "hold" in op.current_step
    await asyncio.sleep(0.2)
    assert op.state == "paused"                        # it really waits
    rig.engine.resume(op)
    await asyncio.wait_for(op.task, 60)
    assert op.state == DONE and healthy(await rig.snapshot()) == []


async def test_rolling_update_workers_first_then_managers_with_a_stand_in(tmp_path):
    rig = rig_on(tmp_path)
    snap = await rig.snapshot()
    plan = catalog.build("rolling-update", snap, "cluster", FAST, ROLL)
    order = plan.params["vms"]
    roles = [snap.node_of_vm(snap.vm(v)).role for v in order]
    assert roles == sorted(roles, key=lambda r: r == MANAGER)     # workers, then managers
    titles = [s.title for s in plan.steps]
    promote = next(i for i, t in enumerate(titles) if t.startswith("promote"))
    first_manager = next(i for i, s in enumerate(plan.steps) if s.group in ("vm-01", "vm-04"))
    assert promote < first_manager and titles[-1].startswith("demote")
    op = await run_plan(rig, plan, timeout=90)
    assert op.state == DONE, op.error
    after = await rig.snapshot()
    assert healthy(after) == []
    assert {n.engine_version for n in after.nodes} == {"24.0.7"}
    assert sum(n.role == MANAGER for n in after.nodes) == 2


@pytest.mark.parametrize("budget, retries, state", [(0, 0, FAILED), (1, 0, DONE), (0, 1, FAILED)])
async def test_failure_budget_and_retries(tmp_path, budget, retries, state):
    rig = rig_on(tmp_path)
    rig.sim.exit_codes["vm-03"] = 1                # its update command always fails
    options = replace(ROLL, failure_budget=budget, retries=retries, expect_engine_change=False)
    plan = catalog.build("rolling-update", await rig.snapshot(), "vm-03,vm-05", FAST, options)
    op = await run_plan(rig, plan)
    assert op.state == state
    assert op.failed_groups and op.failed_groups[0].startswith("vm-03:")
    assert sum("retrying vm-03" in line for line in op.log) == retries
    if state == DONE:               # the budget let it go on to the next VM
        assert rig.sim.boots.get("vm-05", 0) >= 1
    else:
        assert "failure budget exceeded" in op.error
        assert rig.sim.boots.get("vm-05", 0) == 0


async def test_a_failed_vm_is_left_out_of_service_and_said_so(tmp_path):
    rig = rig_on(tmp_path)
    rig.sim.exit_codes["vm-03"] = 1
    options = replace(ROLL, failure_budget=1)
    op = await run_plan(rig, catalog.build("rolling-update", await rig.snapshot(), "vm-03",
                                           FAST, options))
    after = await rig.snapshot()
    assert op.state == DONE and op.failed_groups
    assert after.node_named("vm-03").availability == "drain"     # not put back untested
    report = (tmp_path / "reports" / f"{op.id}.md").read_text()
    assert "vm-03: " in report.split("## Failures")[1]


async def test_abort_during_host_maintenance_restores_service(tmp_path):
    rig = rig_on(tmp_path, speed=100)
    plan = catalog.build("maintenance", await rig.snapshot(), "hv-02", FAST)
    op = rig.engine.start(plan)
    await until(lambda: op.current_step.startswith("wait until vm-05 is off"), timeout=30,
                what="the shutdowns")
    rig.engine.abort(op)
    await asyncio.wait_for(op.task, 60)
    assert op.state == ABORTED and op.error == ""
    await until(lambda: rig.sim.advance() or rig.sim.vms["vm-05"].state == "running",
                timeout=30, what="vm-05 running again")
    snap = await rig.snapshot()
    assert all(n.availability == ACTIVE for n in snap.nodes)
    assert all(s.admin == "ready" for s in snap.servers)


async def test_the_lock_lets_one_console_run_and_tells_the_other_who(tmp_path):
    sim = SimCluster(seed=5, speed=400)
    one = make_rig(tmp_path / "one", sim)
    two = make_rig(tmp_path / "two", sim)
    snap = await one.snapshot()
    first = one.engine.start(catalog.build("maintenance", snap, "hv-01", FAST))
    await until(lambda: sim.lock is not None, what="the lock")
    assert (await two.snapshot()).lock.op == first.id          # the other console sees it
    second = await run_plan(two, catalog.build("drain", snap, "vm-05", FAST))
    assert second.state == FAILED and "locked by" in second.error and first.title in second.error
    await asyncio.wait_for(first.task, 60)
    assert first.state == DONE and sim.lock is None


async def test_read_only_refuses_breaking_the_lock(tmp_path):
    from opsconsole.ops.roles import RoleError
    rig = make_rig(tmp_path, SimCluster(seed=5), read_only=True)
    with pytest.raises(RoleError):
        await rig.actions.break_lock("someone")


async def test_unknown_targets_are_plan_errors(tmp_path):
    snap = await rig_on(tmp_path).snapshot()
    with pytest.raises(PlanError, match="no host named 'hv-09'"):
        catalog.build("maintenance", snap, "hv-09", FAST)
    with pytest.raises(PlanError, match="no VM named vm-42"):
        catalog.build("rolling-update", snap, "vm-42", FAST, ROLL)
    with pytest.raises(PlanError, match="nothing to roll"):
        catalog.build("rolling-update", snap, "cluster", FAST, WindowOptions())


@pytest.mark.parametrize("kind, target, options, every", [
    ("drain", "vm-03", WindowOptions(), 1),
    ("rolling-update", "vm-02", ROLL, 1),
    ("maintenance", "hv-02", WindowOptions(), 5),
])
async def test_killed_at_every_step_boundary_then_resumed(tmp_path, kind, target, options, every):
    """kill -9 at the start of step k: a new console resumes, skips what was done, finishes."""
    sim = SimCluster(seed=5, speed=400)
    probe = make_rig(tmp_path / "probe", sim)
    n = len(catalog.build(kind, await probe.snapshot(), target, FAST, options).steps)
    for k in range(0, n, every):
        sim = SimCluster(seed=5, speed=400)
        first = make_rig(tmp_path / f"k{k}", sim)
        # the console dies as step k starts (its first await), however fast the steps run
        first.engine.listen(lambda o, k=k: k in o.times and o.task and o.task.cancel())
        op = first.engine.start(catalog.build(kind, await first.snapshot(), target, FAST, options))
        await asyncio.gather(op.task, return_exceptions=True)
        assert op.index >= k and op.state != DONE
        # a new console on the same site and the same journal
        second = make_rig(tmp_path / f"k{k}", sim)
        [record] = second.journal.unfinished()
        assert record.op == op.id and sim.lock is not None and sim.lock.op == op.id
        plan = catalog.rebuild(record, await second.snapshot())
        resumed = second.engine.start(plan, resume=record)
        await asyncio.wait_for(resumed.task, 60)
        assert resumed.state == DONE, f"killed at step {k}: {resumed.error}"
        done = set(record.done_steps)
        assert set(range(k)) <= done                       # what the first console finished
        assert not done & set(resumed.times)               # ... was not run again
        assert second.journal.unfinished() == []
        after = await second.snapshot()
        if kind != "drain":
            assert healthy(after) == [], f"killed at step {k}"
        assert sim.lock is None


async def test_rollback_of_a_dead_console_brings_everything_back(tmp_path):
    sim = SimCluster(seed=5, speed=400)
    first = make_rig(tmp_path, sim)
    plan = catalog.build("maintenance", await first.snapshot(), "hv-02", FAST)
    op = first.engine.start(plan)
    await until(lambda: sim.vms["vm-05"].state == "off", timeout=30, what="vm-05 off")
    op.task.cancel()
    await asyncio.gather(op.task, return_exceptions=True)
    second = make_rig(tmp_path, sim)
    [record] = second.journal.unfinished()
    back = await run_plan(second, catalog.rollback(record, await second.snapshot()))
    assert back.state == DONE, back.error
    snap = await second.snapshot()
    assert healthy(snap) == [] and sim.lock is None
    assert second.journal.unfinished() == []
    assert sum(n.role == MANAGER for n in snap.nodes) == 2      # the stand-in is demoted


async def test_operation_units_report_progress_per_vm(tmp_path):
    rig = rig_on(tmp_path)
    rig.sim.exit_codes["vm-03"] = 1
    plan = catalog.build("rolling-update", await rig.snapshot(), "vm-03,vm-05", FAST,
                         replace(ROLL, failure_budget=1, expect_engine_change=False))
    op = rig.engine.start(plan)
    assert op.units() == [("vm-03", "current"), ("vm-05", "pending")]
    await until(lambda: dict(op.units()).get("vm-05") == "current", timeout=30,
                what="vm-05 to start")
    assert dict(op.units())["vm-03"] == "failed"
    await asyncio.wait_for(op.task, 60)
    assert op.units() == [("vm-03", "failed"), ("vm-05", "done")]


async def test_rolling_update_of_a_host_names_the_host(tmp_path):
    snap = await rig_on(tmp_path).snapshot()
    plan = catalog.build("rolling-update", snap, "hv-02", FAST, ROLL)
    assert plan.target == "hv-02"
    assert plan.params["vms"] == ["vm-05", "vm-06", "vm-04"]      # the manager last
    assert catalog.build("rolling-update", snap, "vm-06,vm-02", FAST, ROLL).params["vms"] == \
        ["vm-02", "vm-06"]


@pytest.mark.parametrize("kind, target, stall, boot", [("maintenance", "hv-01", 1.0, 4.0),
                                                       ("rolling-update", "vm-01", 1.0, 30.0),
                                                       ("maintenance", "hv-01", 0.0, 4.0)])
async def test_a_node_stuck_down_after_boot_gets_its_engine_restarted_once(
        tmp_path, kind, target, stall, boot):
    # Swarm can leave a restarted manager Down although its VM runs (moby/moby#38107)
    rig = rig_on(tmp_path)
    rig.sim.stalled_agents.add("vm-01")
    options = replace(ROLL, expect_engine_change=False, engine_stall=stall, boot_timeout=boot)
    plan = catalog.build(kind, await rig.snapshot(), target, FAST, options)
    op = await run_plan(rig, plan, timeout=90)
    if not stall:           # switched off: the wait runs out and says what is pending
        assert op.state == FAILED and "vm-01 to be ready: vm-01 is down" in op.error
        assert rig.sim.engine_restarts == {}
        return
    assert op.state == DONE, op.error
    assert rig.sim.engine_restarts == {"vm-01": 1}
    assert any("vm-01 runs but node vm-01 has stayed down for 1s: restarting its Docker "
               "engine (`systemctl restart docker`)" in line for line in op.log), op.log
    restarts = [r for r in rig.audit.read() if r["action"] == "run command"
                and r["target"] == "vm-01" and "systemctl restart docker" in str(r.get("args"))]
    assert [r["result"] for r in restarts] == ["started", "ok"]
    assert healthy(await rig.snapshot()) == []


async def test_demoting_the_stand_in_waits_while_swarm_refuses_for_quorum(tmp_path):
    # right after a manager returns Swarm may still refuse to drop a member: retried, said
    rig = rig_on(tmp_path)
    rig.sim.quorum_refusals = 2
    op = await run_plan(rig, catalog.build("maintenance", await rig.snapshot(), "hv-01", FAST))
    assert op.state == DONE, op.error
    stand_in = op.plan.params["promote"]
    node_id = (await rig.snapshot()).node_named(stand_in).swarm_id
    outcomes = [a["result"] for a in rig.audit.read()       # promotion, then the demotion
                if a["action"] == "set role" and a["target"] == node_id
                and a["result"] != "started"]
    assert outcomes[0] == outcomes[-1] == "ok" and len(outcomes) == 4, outcomes
    assert all(o.startswith("failed: ") and "loss of quorum" in o for o in outcomes[1:3])
    assert (await rig.snapshot()).node_named(stand_in).role == WORKER
