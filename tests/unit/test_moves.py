"""Drains that never lose a replica (ops/moves.py), on the sim: the floor holds at every tick,
no task elsewhere restarts, specs come back exactly, also across a killed console (resume and
rollback); fallbacks are said before confirmation. And the sim scales down as Swarm does."""
from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest
from unitkit import make_rig, sim_snapshot

from opsconsole.model import ACTIVE, DRAIN, RUNNING, Task
from opsconsole.ops import catalog, plans
from opsconsole.ops.engine import DONE, Context, Operation, Plan
from opsconsole.ops.guards import OK, WARN
from opsconsole.ops.maintenance import crowding
from opsconsole.ops.moves import plan_moves
from opsconsole.ops.plans import Timing
from opsconsole.ops.report import markdown
from opsconsole.providers.sim import SimCluster, removed_on_scale_down

FAST = Timing(sessions_threshold=10**6, drain_timeout=120, settle=0.2)


class Floor:
    """Running tasks of each replicated service against its replicas before the run, at
    every tick of the simulated world (4 per simulated second), from outside the console."""

    def __init__(self, sim: SimCluster) -> None:
        self.sim = sim
        self.want = {s.name: s.replicas for s in sim.services.values() if s.mode == "replicated"}
        self.low = dict(self.want)
        real = sim._place_pending

        def tick() -> bool:
            placed = real()
            for svc in sim.services.values():
                if svc.name in self.want:
                    running = sum(1 for t in sim.tasks.values() if t.service_id == svc.swarm_id
                                  and t.wanted and t.state == RUNNING)
                    self.low[svc.name] = min(self.low[svc.name], running)
            return placed
        sim._place_pending = tick    # type: ignore[method-assign]

    def dipped(self) -> dict[str, str]:
        return {n: f"{self.low[n]} of {w}" for n, w in self.want.items() if self.low[n] < w}


def specs(sim: SimCluster) -> dict[str, tuple]:
    return {s.name: (s.replicas, s.constraints, s.max_per_node, s.labels)
            for s in sim.services.values()}


def wanted_ids(sim: SimCluster, off: str = "") -> set[str]:
    return {t.swarm_id for t in sim.tasks.values() if t.wanted and t.node_id
            and t.node_id != off and sim.services[t.service_id].mode == "replicated"}


def node_id(sim: SimCluster, name: str) -> str:
    return next(n.swarm_id for n in sim.nodes.values() if n.hostname == name)


def busiest(sim: SimCluster) -> str:
    """The worker VM with the most replicated tasks."""
    def count(n) -> int:
        return sum(1 for t in sim.tasks.values() if t.node_id == n.swarm_id and t.wanted
                   and sim.services[t.service_id].mode == "replicated")
    return max((n for n in sim.nodes.values() if n.role == "worker"), key=count).hostname


def sim_with_room(seed: int = 5) -> SimCluster:
    """The demo cluster with `worker` at 5 replicas: every service has room for its moves."""
    sim = SimCluster(seed=seed, speed=400)
    worker = next(s for s in sim.services.values() if s.name == "worker")
    sim.scale_service(worker.swarm_id, 5)
    sim._run_until(sim.now + 30)
    return sim


async def test_a_drain_keeps_every_replicated_service_at_its_replicas(tmp_path):
    sim = sim_with_room()
    rig = make_rig(tmp_path, sim)
    name = busiest(sim)
    node = node_id(sim, name)
    before, others = specs(sim), wanted_ids(sim, off=node)
    snap = await rig.snapshot()
    plan = plans.drain(snap, name, FAST)
    moves = [c for c in plan.checks if c.name == "moves"]
    assert moves and all(c.level == OK for c in moves), plan.checks
    assert any("start elsewhere before" in c.message for c in moves)
    floor = Floor(sim)

    op = await asyncio.wait_for(rig.engine.run(plan), 60)
    assert op.state == DONE, (op.error, op.log[-5:])
    assert floor.dipped() == {}
    assert sim.nodes[node].availability == DRAIN
    assert not [t for t in sim.tasks.values() if t.node_id == node and t.wanted]
    assert others <= wanted_ids(sim), "a task that was not on the drained node was stopped"
    assert specs(sim) == before
    # the console's own figure and the report agree
    assert all(low >= want for low, want in op.floor.values()), op.floor
    report = (rig.journal.path.parent / "reports").glob("*.md")
    assert not list(report)      # a plain drain writes no report...
    text = markdown(op, "tester")   # ...but its markdown says the moves and the floor
    assert "moved first; replacements on vm-" in text and "floor held" in text


async def test_swarms_own_drain_dips_which_the_floor_sees(tmp_path):
    """The measure can fail: a plain Swarm drain loses a replica until the replacement runs."""
    sim = sim_with_room()
    make_rig(tmp_path, sim)
    node = node_id(sim, busiest(sim))
    floor = Floor(sim)
    sim.set_availability(node, DRAIN)
    sim._run_until(sim.now + 30)
    assert floor.dipped()


async def test_a_service_labelled_stop_first_is_said_and_drained_as_swarm_does(tmp_path):
    sim = sim_with_room()
    name = busiest(sim)
    node = node_id(sim, name)
    victim = next(sim.services[t.service_id] for t in sim.tasks.values()
                  if t.node_id == node and t.wanted
                  and sim.services[t.service_id].mode == "replicated")
    sim.services[victim.swarm_id] = replace(victim, labels=(("opsconsole.drain", "stop-first"),))
    rig = make_rig(tmp_path, sim)
    plan = plans.drain(await rig.snapshot(), name, FAST)
    said = [c.message for c in plan.checks if c.name == "moves" and c.level == WARN]
    assert said == [f"{victim.name}: stop-first (label opsconsole.drain=stop-first), about 5 s "
                    + ("without a task" if victim.replicas == 1 else
                       f"at {victim.replicas - 1} of {victim.replicas}")], plan.checks
    op = await asyncio.wait_for(rig.engine.run(plan), 60)
    assert op.state == DONE, op.error
    scaled = [r for r in rig.audit.read() if r["action"] == "scale service"]
    assert scaled and victim.swarm_id not in {r["target"] for r in scaled}
    assert all(s.replicas == victim.replicas for s in sim.services.values()
               if s.swarm_id == victim.swarm_id)


def test_no_room_for_an_extra_task_is_a_fallback_named_with_its_reason(sim):
    """`reports` may run on the two ssd nodes only: with the other one cordoned, its task
    cannot start elsewhere first."""
    reports = next(s for s in sim.services.values() if s.name == "reports")
    holder = next(t.node_id for t in sim.tasks.values()
                  if t.service_id == reports.swarm_id and t.wanted)
    other = next(n for n in sim.nodes.values() if n.swarm_id != holder
                 and ("storage", "ssd") in n.labels)
    sim.set_availability(other.swarm_id, "pause")
    snap = sim_snapshot(sim)
    [move] = [m for m in plan_moves(snap, snap.get(f"node:{holder}"))
              if m.service.name == "reports"]
    assert move.fallback.startswith("no room: no suitable node:")
    assert "availability pause" in move.fallback and "constraint" in move.fallback
    assert move.text("vm-x").startswith("reports: stop-first (no room")
    assert move.text("vm-x").endswith("about 5 s without a task")


# -- a console killed mid-way: resume and rollback restore the specs ------------------------

KILL_POINTS = ["▶ set {n} availability to pause", "▶ start the replacements",
               ": scaled ", "▶ set {n} availability to drain", "▶ scale the moved",
               "scaled back to", "▶ wait until {n}"]


def kill_when_logged(engine, op_box: list, text: str) -> None:
    def hook(op) -> None:
        if op_box and not op_box[1:] and any(text in line for line in op.log):
            op_box.append("killed")
            op.task.cancel()
    engine.listen(hook)


@pytest.mark.parametrize("point", KILL_POINTS)
@pytest.mark.parametrize("way", ["resume", "rollback"])
async def test_a_console_killed_mid_drain_leaves_specs_that_resume_and_rollback_restore(
        tmp_path, point, way):
    sim = sim_with_room()
    first = make_rig(tmp_path, sim)
    name = busiest(sim)
    node = node_id(sim, name)
    before, others = specs(sim), wanted_ids(sim, off=node)
    box: list = []
    kill_when_logged(first.engine, box, point.format(n=name))
    plan = plans.drain(await first.snapshot(), name, FAST)
    op = first.engine.start(plan)
    box.append(op)
    await asyncio.gather(op.task, return_exceptions=True)
    assert box[1:] == ["killed"], f"never reached {point!r}"

    second = make_rig(tmp_path, sim)
    [record] = second.journal.unfinished()
    if way == "resume":
        plan2 = catalog.rebuild(record, await second.snapshot())
        assert not plan2.refused, plan2.checks
        done = await asyncio.wait_for(second.engine.run(plan2, resume=record), 60)
        assert done.state == DONE, (done.error, done.log[-5:])
        assert sim.nodes[node].availability == DRAIN
        assert others <= wanted_ids(sim)
    else:
        plan2 = catalog.rollback(record, await second.snapshot())
        done = await asyncio.wait_for(second.engine.run(plan2), 60)
        assert done.state == DONE, (done.error, done.log[-5:])
        assert sim.nodes[node].availability == ACTIVE
    assert specs(sim) == before, point
    assert second.journal.unfinished() == []


async def test_abort_after_the_scale_up_puts_the_replica_counts_back(tmp_path):
    sim = sim_with_room()
    rig = make_rig(tmp_path, sim)
    name = busiest(sim)
    before = specs(sim)
    box: list = []

    def hook(op) -> None:
        if not box and any(": scaled " in line for line in op.log):
            box.append(1)
            rig.engine.abort(op)
    rig.engine.listen(hook)
    op = rig.engine.start(plans.drain(await rig.snapshot(), name, FAST))
    await asyncio.gather(op.task, return_exceptions=True)
    assert box and op.state == "aborted" and not op.unfinished, op.error
    assert specs(sim) == before
    assert sim.nodes[node_id(sim, name)].availability == ACTIVE


# -- the sim scales down as Swarm does (measured in the lab, README) ----------------------------

def _task(i: str, slot: int, node: str, state: str = RUNNING) -> Task:
    return Task(i, "svc", "web", slot=slot, node_id=node, state=state)


def test_scale_down_drops_a_replacement_on_no_node_first():
    """Lab: web 5 -> 4 right after the drain, slot 2's new task pending on no node."""
    tasks = [_task("a", 1, "n2"), _task("r", 2, "", "pending"), _task("b", 3, "n1"),
             _task("c", 4, "n3"), _task("x", 5, "n4")]
    assert [t.swarm_id for t in removed_on_scale_down(tasks, 4)] == ["r"]


def test_scale_down_drops_assigned_replacements_that_do_not_run_yet():
    """Lab: multi 9 -> 7, the drained slots' new tasks assigned to vm-04 (state ready)."""
    tasks = [_task("j", 1, "n4"), _task("x", 2, "n5"), _task("p", 3, "n4", "ready"),
             _task("u", 4, "n5"), _task("q", 5, "n4", "ready"), _task("y", 6, "n3"),
             _task("g", 7, "n1"), _task("e", 8, "n1"), _task("s", 9, "n3")]
    assert {t.swarm_id for t in removed_on_scale_down(tasks, 7)} == {"p", "q"}


def test_scale_down_prefers_the_most_crowded_node():
    tasks = [_task("a", 1, "n1"), _task("b", 2, "n1"), _task("c", 3, "n2")]
    assert [t.swarm_id for t in removed_on_scale_down(tasks, 2)] == ["b"]
    assert removed_on_scale_down(tasks, 3) == []


async def test_a_resumed_drain_counts_the_tasks_it_already_replaced(tmp_path):
    """`worker` at most one per node, on five of six nodes: once the move ran, its extra task
    holds the last free node, and the drained task needs no home (else the resumed plan
    would refuse: "nowhere to go")."""
    sim = SimCluster(seed=5, speed=400)
    worker = next(s for s in sim.services.values() if s.name == "worker")
    sim.services[worker.swarm_id] = replace(worker, max_per_node=1)
    sim.scale_service(worker.swarm_id, 5)
    sim._run_until(sim.now + 30)
    name = next(sim.nodes[t.node_id].hostname for t in sim.tasks.values()
                if t.service_id == worker.swarm_id and t.wanted
                and sim.nodes[t.node_id].role == "worker")
    first = make_rig(tmp_path, sim)
    box: list = []
    kill_when_logged(first.engine, box, f"▶ set {name} availability to drain")
    op = first.engine.start(plans.drain(await first.snapshot(), name, FAST))
    box.append(op)
    await asyncio.gather(op.task, return_exceptions=True)
    assert sim.services[worker.swarm_id].replicas == 6
    second = make_rig(tmp_path, sim)
    [record] = second.journal.unfinished()
    plan = catalog.rebuild(record, await second.snapshot())
    assert not plan.refused, plan.checks
    done = await asyncio.wait_for(second.engine.run(plan, resume=record), 60)
    assert done.state == DONE, done.error
    assert sim.services[worker.swarm_id].replicas == 5


async def test_after_a_host_maintenance_only_crowded_services_are_rebalanced(tmp_path):
    sim = SimCluster(seed=5, speed=400)
    rig = make_rig(tmp_path, sim)
    snap = await rig.snapshot()
    api = next(s for s in snap.services if s.name == "api")
    assert crowding(snap, api) == ""                # 4 tasks spread over 6 nodes
    plan = catalog.build("maintenance", snap, "hv-01", FAST)
    op = await asyncio.wait_for(rig.engine.run(plan), 120)
    assert op.state == DONE, op.error
    rebalanced = [line for line in op.log if "rebalancing " in line]
    spread = [line for line in op.log if "is spread already" in line]
    assert rebalanced or spread
    for line in spread:     # a service said to be spread was not restarted
        assert not any(line.split()[1] in r for r in rebalanced)


def test_the_floor_counts_tasks_on_nodes_a_new_leader_does_not_know_yet(tmp_path):
    """Lab: after a manager reboot the new Raft leader shows every node `unknown` for a
    moment; their tasks still run (Swarm's own samples said 3 of 3). A node down: they do
    not."""

    sim = SimCluster(seed=5)
    rig = make_rig(tmp_path, sim)
    snap = sim_snapshot(sim)
    ctx = Context(rig.engine, Operation(Plan("drain", "vm-01", [])))
    ctx.sample_floor(replace(snap, nodes=tuple(replace(n, state="unknown") for n in snap.nodes)))
    assert ctx.op.floor and all(low == want for low, want in ctx.op.floor.values())
    ctx.sample_floor(replace(snap, nodes=tuple(replace(n, state="down") for n in snap.nodes)))
    assert all(low == 0 for low, _ in ctx.op.floor.values()), ctx.op.floor
