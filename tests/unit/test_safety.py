"""The safety contract on the sim, with faults injected through the providers:
guards before every step on fresh data, unknown is never ok, HAProxy's lost states
re-applied, done means converged, failures stay recoverable, resume trusts the cluster."""
from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import replace

import pytest
from unitkit import make_rig, until

from opsconsole.model import ACTIVE, DRAIN, MANAGER, WORKER, Service, Snapshot, Task
from opsconsole.ops import catalog, records
from opsconsole.ops import engine as engine_mod
from opsconsole.ops.engine import DONE, FAILED, PAUSED, StepFailed
from opsconsole.ops.guards import FAIL, WARN
from opsconsole.ops.maintenance import WindowOptions
from opsconsole.ops.plans import Timing
from opsconsole.providers.sim import SimCluster

FAST = Timing(sessions_timeout=30, drain_timeout=120, settle=0.2)


def rig_on(tmp_path, seed: int = 5, speed: float = 400):
    return make_rig(tmp_path, SimCluster(seed=seed, speed=speed))


def node_id(sim: SimCluster, name: str) -> str:
    return next(n.swarm_id for n in sim.nodes.values() if n.hostname == name)


def when_step(title_start: str, action) -> Callable:
    """An engine change hook that calls `action` once, as the step titled so starts."""
    fired = []

    def hook(op) -> None:
        if fired or op.index >= len(op.plan.steps) or op.index not in op.times:
            return
        if op.plan.steps[op.index].title.startswith(title_start):
            fired.append(op.index)
            action()
    return hook


# -- guards before every step, on fresh data -------------------------------------------------

async def test_manager_lost_mid_window_pauses_before_a_manager_is_shut_down(tmp_path):
    rig = rig_on(tmp_path)
    sim = rig.sim
    stopped: list[tuple[str, int]] = []
    real_stop = sim.stop_vm

    def stop_vm(name, force=False):     # what the quorum was when each VM was shut down
        managers = [n for n in sim.nodes.values() if n.role == MANAGER]
        stopped.append((name, sum(n.state == "ready" for n in managers) - len(managers) // 2 - 1))
        real_stop(name, force)
    sim.stop_vm = stop_vm
    plan = catalog.build("maintenance", await rig.snapshot(), "hv-02", FAST)
    assert plan.params["promote"]          # two managers: a stand-in votes for the window
    # the other manager (vm-01, on hv-01) dies while vm-05 is being drained
    rig.engine.listen(when_step("set vm-05 availability to drain",
                                lambda: sim._node_down(node_id(sim, "vm-01"))))
    op = rig.engine.start(plan)
    await until(lambda: op.state == PAUSED and "shut down vm-04" in op.current_step,
                timeout=30, what="the pause before the manager's shutdown")
    assert sim.vms["vm-04"].state == "running"
    assert any("quorum" in line and "paused before 'shut down vm-04" in line for line in op.log)
    # every VM that was shut down left quorum with a margin (never a manager at zero)
    assert all(margin >= 0 for _, margin in stopped) and "vm-04" not in dict(stopped)
    await asyncio.sleep(0.3)
    assert op.state == PAUSED and sim.vms["vm-04"].state == "running"   # stays paused
    # the operator presses p while it still fails: checked again, still paused
    rig.engine.resume(op)
    await until(lambda: op.state == PAUSED, timeout=5)
    assert sim.vms["vm-04"].state == "running"
    sim._node_up(node_id(sim, "vm-01"))    # the manager is back: p goes on to the end
    rig.engine.resume(op)
    await asyncio.wait_for(op.task, 60)
    assert op.state == DONE, op.error


async def test_headless_guard_pause_stops_unfinished_after_its_limit(tmp_path):
    rig = rig_on(tmp_path)
    sim = rig.sim
    rig.engine.guard_wait = 0.5
    plan = catalog.build("maintenance", await rig.snapshot(), "hv-02", FAST)
    rig.engine.listen(when_step("set vm-05 availability to drain",
                                lambda: sim._node_down(node_id(sim, "vm-01"))))
    op = await asyncio.wait_for(rig.engine.run(plan), 60)
    assert op.state == FAILED and op.unfinished
    assert "paused by the guards for over" in op.error and "shut down vm-04" in op.error
    assert sim.vms["vm-04"].state == "running"
    assert sim.lock is not None and sim.lock.op == op.id        # the lock stays
    [record] = rig.journal.unfinished()
    assert record.op == op.id and record.state == FAILED
    assert f"opsconsole resume {op.id}" in rig.engine.hint(op)
    # the manager comes back; the operation is rolled back from the journal
    sim._node_up(node_id(sim, "vm-01"))
    back = await asyncio.wait_for(rig.engine.run(catalog.rollback(record, await rig.snapshot())),
                                  60)
    assert back.state == DONE, back.error
    assert sim.lock is None and rig.journal.unfinished() == []
    snap = await rig.snapshot()
    assert all(n.availability == ACTIVE and n.state == "ready" for n in snap.nodes)
    assert sum(n.role == MANAGER for n in snap.nodes) == 2


async def test_rolling_update_guards_each_manager_reboot(tmp_path):
    rig = rig_on(tmp_path)
    sim = rig.sim
    options = WindowOptions(update_command="true", reboot=True)
    plan = catalog.build("rolling-update", await rig.snapshot(), "vm-01,vm-04", FAST, options)
    # vm-04 goes down while vm-01's update runs: vm-01 must not reboot then
    rig.engine.listen(when_step("run the update on vm-01",
                                lambda: sim._node_down(node_id(sim, "vm-04"))))
    op = rig.engine.start(plan)
    await until(lambda: op.state == PAUSED, timeout=30, what="guard pause")
    assert "reboot vm-01" in op.current_step
    assert sim.boots.get("vm-01", 0) == 0 and sim.vms["vm-01"].state == "running"
    assert any("quorum" in line for line in op.log if "paused before" in line)
    rig.engine.abort(op)
    await asyncio.wait_for(op.task, 30)


async def test_a_source_that_cannot_be_read_fails_the_guard_as_unknown(tmp_path):
    rig = rig_on(tmp_path)
    plan = catalog.build("drain", await rig.snapshot(), "vm-03", FAST)
    rig.sim.unreachable["proxy"] = "/run/haproxy.sock: refuses connections"
    rig.engine.guard_wait = 0.3
    op = await asyncio.wait_for(rig.engine.run(plan), 10)
    assert op.state == FAILED and not op.unfinished     # nothing was changed
    assert "proxy unreadable since" in op.error
    assert rig.sim.admin[("portail", "vm-03")] == "ready"
    assert rig.sim.lock is None and rig.journal.unfinished() == []


# -- no decision on stale data -----------------------------------------------------------------

async def test_haproxy_gone_during_the_sessions_wait_never_counts_as_done(tmp_path):
    rig = rig_on(tmp_path, speed=20)
    sim = rig.sim
    timing = replace(FAST, sessions_timeout=1.5, sessions_threshold=0)
    plan = catalog.build("drain", await rig.snapshot(), "vm-03", timing)
    rig.engine.listen(when_step(
        "wait for sessions", lambda: sim.unreachable.update(proxy="refuses connections")))
    op = await asyncio.wait_for(rig.engine.run(plan), 20)
    assert op.state == FAILED and op.unfinished, op.log
    assert "timed out" in op.error and "proxy unreachable since" in op.error
    assert any("proxy unreachable since" in line for line in op.log)
    # the Swarm drain never happened on the count read before the proxy went away
    assert sim.nodes[node_id(sim, "vm-03")].availability == ACTIVE
    assert sim.lock is not None and sim.lock.op == op.id


async def test_a_proxy_state_haproxy_lost_is_set_again_and_audited(tmp_path):
    rig = rig_on(tmp_path, speed=20)
    sim = rig.sim
    timing = replace(FAST, sessions_timeout=3, sessions_threshold=0)

    def restart() -> None:         # HAProxy restarted from its config: every server ready
        sim.admin[("portail", "vm-03")] = "ready"
        sim._refresh_servers()
    plan = catalog.build("drain", await rig.snapshot(), "vm-03", timing)
    rig.engine.listen(when_step("wait for sessions", restart))
    op = await asyncio.wait_for(rig.engine.run(plan), 30)
    assert op.state == DONE, op.error
    assert any("portail/vm-03 is ready, this operation holds it drain" in line
               for line in op.log)
    sets = [r for r in rig.audit.read() if r.get("action") == "set proxy server state"
            and r.get("result") == "ok" and r.get("args") == ["drain"]]
    assert len(sets) == 2
    assert sim.admin[("portail", "vm-03")] == "drain"


# -- done means converged ----------------------------------------------------------------------

def _snap(service: Service, tasks: list[Task], nodes=None) -> Snapshot:
    from opsconsole.model import Node
    nodes = nodes or (Node("n1", "vm-01"), Node("n2", "vm-02"))
    return Snapshot(nodes=tuple(nodes), services=(service,), tasks=tuple(tasks))


def test_converged_needs_exactly_desired_no_update_and_no_moving_task():
    svc = Service("s", "web", replicas=2)
    run = [Task("t1", "s", "web", 1, "n1", "running"), Task("t2", "s", "web", 2, "n2", "running")]
    assert _snap(svc, run).converged(svc)
    assert _snap(replace(svc, update_state="updating"), run).unconverged(
        replace(svc, update_state="updating")) == "update updating"
    assert not _snap(replace(svc, update_state="paused"), run).converged(
        replace(svc, update_state="paused"))
    assert _snap(replace(svc, update_state="rollback_completed"), run).converged(
        replace(svc, update_state="rollback_completed"))
    extra = run + [Task("t3", "s", "web", 3, "n1", "running")]
    assert _snap(svc, extra).unconverged(svc) == "3/2 running"    # start-first overlap
    starting = run + [Task("t4", "s", "web", 2, "n1", "starting")]
    assert "starting" in _snap(svc, starting).unconverged(svc)
    stopping = run + [Task("t5", "s", "web", 2, "n2", "running", desired_state="shutdown")]
    assert "stopping" in _snap(svc, stopping).unconverged(svc)
    # a task Swarm still books as running on a node that is down is not "moving"
    from opsconsole.model import Node
    down = (Node("n1", "vm-01"), Node("n2", "vm-02"), Node("n3", "vm-03", state="down"))
    stale = run + [Task("t6", "s", "web", 2, "n3", "running", desired_state="shutdown")]
    assert _snap(svc, stale, down).converged(svc)


async def test_rebalance_waits_for_swarms_update_to_complete(tmp_path):
    rig = rig_on(tmp_path)
    plan = catalog.build("maintenance", await rig.snapshot(), "hv-02", FAST)
    op = await asyncio.wait_for(rig.engine.run(plan), 60)
    assert op.state == DONE, op.error
    i = next(k for k, s in enumerate(plan.steps) if s.key == "rebalance")
    rebalanced = plan.params["rebalance"]
    assert rebalanced
    # the rebalance step ended only once Swarm's update of each service had completed
    snap = await rig.snapshot()
    assert all(snap.service(s).update_state == "completed" for s in rebalanced)
    done = [line for line in op.log if "rebalancing " in line]
    assert done     # the crowded ones only (a spread service keeps its tasks)
    assert op.times[i][1] - op.times[i][0] >= 2.0 / 400 * len(done)


async def test_health_gate_refuses_a_paused_update_and_names_it(tmp_path):
    rig = rig_on(tmp_path)
    sim = rig.sim
    api = next(s for s in sim.services.values() if s.name == "api")
    sim.services[api.swarm_id] = replace(api, update_state="paused")
    from opsconsole.ops.engine import Plan
    from opsconsole.ops.maintenance import wait_healthy
    op = await asyncio.wait_for(rig.engine.run(Plan("gate", "x", [wait_healthy(
        ["vm-03"], replace(FAST, drain_timeout=0.5))])), 10)
    assert op.state == FAILED and "api update paused" in op.error


# -- global and constrained services -----------------------------------------------------------

async def test_a_global_service_pinned_to_the_leaving_node_is_named_and_refused(tmp_path):
    rig = rig_on(tmp_path)
    rig.sim._add_service("g6", 0, mode="global", constraints=("node.hostname==vm-06",))
    await until(lambda: any(t.service_name == "g6" and t.state == "running"
                            for t in rig.sim.tasks.values()) or rig.sim.advance(),
                timeout=5, what="g6 running")
    snap = await rig.snapshot()
    for kind, target in (("drain", "vm-06"), ("maintenance", "hv-02"),
                         ("rolling-update", "vm-06")):
        plan = catalog.build(kind, snap, target, FAST, WindowOptions(update_command="true"))
        stops = next(c for c in plan.checks if "g6" in c.message)
        assert stops.level == FAIL and "g6 runs only on vm-06" in stops.message, kind
        forced = catalog.build(kind, snap, target, FAST, WindowOptions(update_command="true"),
                               force=True)
        assert not forced.refused and any(
            c.level == WARN and "g6 runs only on vm-06" in c.message for c in forced.checks)
    # unconstrained global services are not named (they keep running elsewhere)
    plan = catalog.build("drain", snap, "vm-05", FAST)
    assert not plan.refused


# -- every failure is recoverable --------------------------------------------------------------

@pytest.mark.parametrize("kind, target, every", [("drain", "vm-03", 1),
                                                 ("maintenance", "hv-02", 4)])
async def test_an_unexpected_exception_in_any_step_leaves_a_recoverable_record(
        tmp_path, kind, target, every):
    probe = rig_on(tmp_path / "probe")
    n = len(catalog.build(kind, await probe.snapshot(), target, FAST).steps)
    for k in range(0, n, every):
        rig = rig_on(tmp_path / f"k{k}")
        plan = catalog.build(kind, await rig.snapshot(), target, FAST)

        async def boom(ctx):
            raise KeyError("ID")          # odd remote data, a bug: anything
        plan.steps[k].run = boom
        op = await asyncio.wait_for(rig.engine.run(plan), 60)
        assert op.state == FAILED and "KeyError" in op.error, k
        assert rig.engine.running is None                  # the console can go on
        changed = rig.actions.generation > 0
        assert op.unfinished == changed, k
        unfinished = rig.journal.unfinished()
        if changed:      # resumable and rollback-able, the lock held
            assert [r.op for r in unfinished] == [op.id] and unfinished[0].state == FAILED
            assert rig.sim.lock is not None and rig.sim.lock.op == op.id
            back = await asyncio.wait_for(rig.engine.run(
                catalog.rollback(unfinished[0], await rig.snapshot())), 60)
            assert back.state == DONE, (k, back.error)
            assert rig.sim.lock is None and rig.journal.unfinished() == []
        else:
            assert unfinished == [] and rig.sim.lock is None


async def test_a_journal_that_cannot_be_written_stops_before_the_next_change(tmp_path,
                                                                            monkeypatch):
    rig = rig_on(tmp_path)
    plan = catalog.build("drain", await rig.snapshot(), "vm-03", FAST)
    real = records.JsonLines.append
    writes = []

    def append(self, record):
        writes.append(record.get("event"))
        if record.get("event") == "step" and record.get("index") == 2:
            raise OSError(28, "No space left on device")
        real(self, record)
    monkeypatch.setattr(records.JsonLines, "append", append)
    op = await asyncio.wait_for(rig.engine.run(plan), 30)
    assert op.state == FAILED and "No space left" in op.error
    # the Swarm drain (step 2) never ran: its record could not be written first
    assert rig.sim.nodes[node_id(rig.sim, "vm-03")].availability == ACTIVE
    assert op.unfinished and rig.sim.lock is not None     # the proxy drain was done


# -- resume trusts the cluster -----------------------------------------------------------------

async def test_resume_redoes_what_no_longer_holds_and_never_stops_an_active_node(tmp_path):
    sim = SimCluster(seed=5, speed=400)
    first = make_rig(tmp_path, sim)
    plan = catalog.build("maintenance", await first.snapshot(), "hv-02", FAST)
    stand_in = plan.params["promote"]
    # the console dies as it is about to shut down vm-05 (drained by then)
    first.engine.listen(when_step("shut down vm-05", lambda: op.task.cancel()))
    op = first.engine.start(plan)
    await asyncio.gather(op.task, return_exceptions=True)
    assert sim.nodes[node_id(sim, "vm-05")].availability == DRAIN
    # meanwhile someone puts vm-05 back in service and demotes the stand-in by hand
    sim.set_availability(node_id(sim, "vm-05"), ACTIVE)
    sim.set_role(node_id(sim, stand_in), WORKER)

    unsafe: list[str] = []
    real_stop = sim.stop_vm

    def stop_vm(name, force=False):
        node = sim.nodes[node_id(sim, name)]
        if node.availability != DRAIN:
            unsafe.append(f"{name} shut down while {node.availability}")
        if node.role == MANAGER and sim.nodes[node_id(sim, stand_in)].role != MANAGER:
            unsafe.append(f"manager {name} shut down with no stand-in")
        real_stop(name, force)
    sim.stop_vm = stop_vm
    second = make_rig(tmp_path, sim)
    [record] = second.journal.unfinished()
    again = catalog.rebuild(record, await second.snapshot())
    redo = [c.message for c in again.checks if c.name == "resume" and c.level == WARN]
    assert any("vm-05 is active, not drain" in m for m in redo), again.checks
    assert any(f"{stand_in} is a worker, not a manager" in m for m in redo)
    resumed = await asyncio.wait_for(second.engine.run(again, resume=record), 60)
    assert resumed.state == DONE, resumed.error
    assert unsafe == []
    assert any(line.startswith(resumed.log[0][:2]) and "⟳" in line for line in resumed.log)
    snap = await second.snapshot()
    assert all(n.availability == ACTIVE for n in snap.nodes)
    assert sum(n.role == MANAGER for n in snap.nodes) == 2


async def test_resume_runs_the_inventorys_commands_and_says_they_changed(tmp_path):
    sim = SimCluster(seed=5, speed=400)
    first = make_rig(tmp_path, sim)
    old = WindowOptions(update_command="apt-get -y upgrade docker.io", reboot=False)
    plan = catalog.build("rolling-update", await first.snapshot(), "vm-02", FAST, old)
    first.engine.listen(when_step("run the update on vm-02", lambda: op.task.cancel()))
    op = first.engine.start(plan)
    await asyncio.gather(op.task, return_exceptions=True)
    second = make_rig(tmp_path, sim)
    [record] = second.journal.unfinished()
    now = replace(old, update_command="apt-get -y upgrade docker.io containerd")
    again = catalog.rebuild(record, await second.snapshot(), now)
    [changed] = [c for c in again.checks if c.name == "commands"]
    assert changed.level == WARN and "containerd" in changed.message and \
        "'apt-get -y upgrade docker.io'" in changed.message
    resumed = await asyncio.wait_for(second.engine.run(again, resume=record), 60)
    assert resumed.state == DONE, resumed.error
    assert any("vm-02│ $ apt-get -y upgrade docker.io containerd" in line
               for line in resumed.log)


async def test_a_live_operation_is_not_resumed_and_a_newer_record_is_refused(tmp_path):
    rig = rig_on(tmp_path, speed=1)
    plan = catalog.build("drain", await rig.snapshot(), "vm-03",
                         replace(FAST, sessions_timeout=60))
    op = rig.engine.start(plan)
    await until(lambda: op.index >= 1, timeout=10)
    [record] = rig.journal.unfinished()
    assert "running in this console" in record.liveness()
    other = make_rig(tmp_path, rig.sim)
    with pytest.raises(StepFailed, match="is not dead"):
        other.engine.start(catalog.rebuild(record, await rig.snapshot()), resume=record)
    rollback = catalog.rollback(record, await rig.snapshot())
    assert [c.name for c in rollback.refused] == ["live"]
    rig.engine.abort(op)
    await asyncio.wait_for(op.task, 10)

    path = tmp_path / "newer" / "journal.jsonl"
    path.parent.mkdir()
    path.write_text(json.dumps({"v": 99, "event": "begin", "op": "future-1", "kind": "drain",
                                "target": "vm-03", "params": {"novel": 1}, "steps": [],
                                "keys": [], "time": 1.0, "shiny": True}) + "\n")
    [future] = records.Journal(path).unfinished()
    assert future.newer
    plan = catalog.rebuild(future, await rig.snapshot())
    assert any("newer opsconsole" in c.message for c in plan.refused)


async def test_heartbeats_reach_the_journal_and_the_lock(tmp_path, monkeypatch):
    monkeypatch.setattr(engine_mod, "HEARTBEAT_S", 0.05)
    monkeypatch.setattr(engine_mod, "LOCK_BEAT_S", 0.1)
    rig = rig_on(tmp_path, speed=1)
    plan = catalog.build("drain", await rig.snapshot(), "vm-03",
                         replace(FAST, sessions_timeout=60))
    op = rig.engine.start(plan)
    await until(lambda: rig.sim.lock is not None, timeout=5, what="the lock")
    first = rig.sim.lock.beat
    await until(lambda: rig.sim.lock.beat > first, timeout=5, what="a lock heartbeat")
    beats = [r for r in rig.journal.read() if r.get("event") == "heartbeat"]
    assert beats and beats[-1]["pid"] > 0
    assert rig.sim.lock.pid and rig.sim.lock.host
    rig.engine.abort(op)
    await asyncio.wait_for(op.task, 10)


async def test_a_system_that_stops_answering_is_shown_stale_with_its_age(tmp_path):
    from opsconsole import present
    rig = rig_on(tmp_path)
    good = await rig.snapshot()
    assert "STALE" not in present.plain(present.summary(good))
    rig.sim.unreachable["swarm"] = "manager-1: no answer within 3s"
    first = await rig.snapshot()
    later = replace(await rig.snapshot(), taken_at=first.problems[0].since + 42)
    header = present.plain(present.summary(later))
    assert header.startswith("STALE ") and "swarm: manager-1: no answer within 3s (for 42s)" \
        in header
    assert [p.source for p in later.problems] == ["swarm"]     # the lock is the swarm's
    assert "STALE: swarm unreadable for 42s" in present.plain(
        present.group_label("group:services", later))
    assert "STALE" not in present.plain(present.group_label("group:proxy", later))
    rig.sim.unreachable.clear()
    assert not (await rig.snapshot()).problems


async def test_a_server_a_failed_vm_left_drained_stays_drained_across_a_restart(tmp_path):
    rig = rig_on(tmp_path)
    sim = rig.sim
    sim.exit_codes["vm-03"] = 1             # its update fails: vm-03 stays out of service
    options = WindowOptions(update_command="apt-get -y upgrade", failure_budget=1)
    plan = catalog.build("rolling-update", await rig.snapshot(), "vm-03", FAST, options)
    op = await asyncio.wait_for(rig.engine.run(plan), 60)
    assert op.state == DONE and op.failed_groups and op.proxy_held == {"portail/vm-03": "drain"}
    sim.restart_proxy()                     # HAProxy forgets: every server ready
    assert sim.admin[("portail", "vm-03")] == "ready"
    await rig.engine.keep_holds(await rig.snapshot())
    assert sim.admin[("portail", "vm-03")] == "drain"
    assert any("this operation holds it drain" in line for line in op.log)
    # the operator fixes vm-03 and activates it: the newest word wins, no tug of war
    back = await asyncio.wait_for(rig.engine.run(catalog.build(
        "activate", await rig.snapshot(), "vm-03", FAST)), 30)
    assert back.state == DONE and sim.admin[("portail", "vm-03")] == "ready"
    await rig.engine.keep_holds(await rig.snapshot())
    assert sim.admin[("portail", "vm-03")] == "ready" and not op.proxy_held
