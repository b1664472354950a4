"""guards and plans: pure checks on snapshots, and how plans are built."""
from __future__ import annotations

from dataclasses import replace

import pytest
from unitkit import sim_snapshot

from opsconsole.model import DOWN, DRAIN, MANAGER, PAUSE, WORKER, Node, Snapshot
from opsconsole.ops import catalog, guards, plans
from opsconsole.ops.guards import (
    FAIL,
    OK,
    WARN,
    before_step,
    capacity,
    drain_checks,
    failures,
    node_ready,
    proxy_keeps_a_server,
    quorum_after_loss,
    spread,
)
from opsconsole.ops.plans import PlanError


def pinned_reports(sim) -> tuple[Snapshot, Node]:
    """The sim with `reports` only placeable on the node that runs it now."""
    snap = sim_snapshot(sim)
    [task] = [t for t in snap.tasks if t.service_name == "reports" and t.wanted]
    holder = snap.node(task.node_id)
    other = next(n for n in snap.nodes if ("storage", "ssd") in n.labels and n != holder)
    sim.set_availability(other.swarm_id, PAUSE)
    return sim_snapshot(sim), holder


# -- capacity and spread -----------------------------------------------------------------------

def service_of(snap, name):
    return next((s for s in snap.services if s.name == name), None)


def test_capacity_ok_counts_tasks_that_move(sim):
    snap = sim_snapshot(sim)
    node = snap.node_named("vm-03")
    check = capacity(snap, frozenset({node.swarm_id}))
    assert check.level == OK
    assert check.message.startswith(f"{len(snap.tasks_on_node(node.swarm_id))} tasks")


def test_capacity_refusal_names_the_service_task_and_reason(sim):
    snap, holder = pinned_reports(sim)
    check = capacity(snap, frozenset({holder.swarm_id}))
    assert check.level == FAIL
    assert "1 task(s) would have nowhere to go" in check.message
    assert "reports.1" in check.message
    assert "constraint node.labels.storage==ssd" in check.message
    assert "availability pause" in check.message and "being drained" in check.message


def test_capacity_fails_when_two_leaving_nodes_overflow_max_per_node(sim):
    snap = sim_snapshot(sim)
    # api made 4 replicas, max 1 per node, over 6 nodes: losing 3 nodes leaves 3 slots for 4
    api = replace(service_of(snap, "api"), max_per_node=1)
    snap = replace(snap, services=tuple(api if s.swarm_id == api.swarm_id else s
                                        for s in snap.services))
    api_nodes = sorted({t.node_id for t in snap.tasks_of_service(api.swarm_id) if t.wanted})
    free = [n.swarm_id for n in snap.nodes if n.swarm_id not in api_nodes]
    leaving = frozenset(api_nodes[:1] + free)
    check = capacity(snap, leaving)
    assert check.level == FAIL and "api." in check.message and "max 1 per node" in check.message
    assert capacity(snap, frozenset(free)).level == OK


def test_spread_warns_when_a_service_loses_every_running_task(sim):
    snap = sim_snapshot(sim)
    db_node = next(t.node_id for t in snap.tasks if t.service_name == "db" and t.wanted)
    check = spread(snap, frozenset({db_node}))
    assert check.level == WARN and "db" in check.message and "outage" in check.message
    no_singletons = next(n.swarm_id for n in snap.nodes
                         if not {t.service_name for t in snap.tasks_on_node(n.swarm_id)}
                         & {"db", "reports"})
    ok = spread(snap, frozenset({no_singletons}))
    assert ok.level == OK and ok.message == "every service keeps a running task elsewhere"


# -- quorum ---------------------------------------------------------------------------------------

def managers(*states: str) -> tuple[Snapshot, list[Node]]:
    ms = [Node(f"m{i}", f"mgr-{i}", role=MANAGER, state=s) for i, s in enumerate(states)]
    return Snapshot(nodes=tuple(ms) + (Node("w", "wrk", role=WORKER),)), ms


def test_quorum_losing_one_of_two_managers_is_refused_with_a_fix():
    snap, ms = managers("ready", "ready")
    check = quorum_after_loss(snap, [ms[1]])
    assert check.level == FAIL
    assert "mgr-1" in check.message and "leaves 1 of 2" in check.message
    assert "promote a worker" in check.fix and check.fix in check.text


def test_quorum_losing_one_of_three_is_fine_two_is_not():
    snap, ms = managers("ready", "ready", "ready")
    one = quorum_after_loss(snap, [ms[0]])
    assert one.level == OK and "tolerates 0 more" in one.message
    assert quorum_after_loss(snap, ms[:2]).level == FAIL


def test_quorum_with_a_manager_already_down():
    snap, ms = managers("ready", "ready", "down")
    # stopping the one already down loses no vote: 2 of 3 still up
    assert quorum_after_loss(snap, [ms[2]]).level == OK
    # stopping a ready one leaves 1 of 3
    check = quorum_after_loss(snap, [ms[0]])
    assert check.level == FAIL and "leaves 1 of 3" in check.message


def test_quorum_does_not_count_a_ready_manager_raft_reports_unreachable():
    # back from a reboot, Ready, but not yet voting: it must not count as a vote
    snap, ms = managers("ready", "ready", "ready")
    back = replace(ms[2], reachability="unreachable")
    snap = Snapshot(nodes=(ms[0], ms[1], back))
    assert snap.quorum_tolerance == 0
    check = quorum_after_loss(snap, [ms[0]])
    assert check.level == FAIL and "leaves 1 of 3" in check.message
    assert quorum_after_loss(snap, [back]).level == OK     # it loses no vote it has


def test_quorum_with_nothing_lost_reports_tolerance():
    snap, _ = managers("ready", "ready", "ready", "ready", "ready")
    check = quorum_after_loss(snap, [])
    assert check.level == OK and "5 managers, tolerates 2" in check.message


# -- proxy and node checks ------------------------------------------------------------------------

def test_proxy_keeps_a_server(sim):
    snap = sim_snapshot(sim)
    assert proxy_keeps_a_server(snap, {"vm-01"}).level == OK
    everyone_else_down = replace(snap, servers=tuple(
        s if s.vm == "vm-01" else replace(s, status="DOWN") for s in snap.servers))
    check = proxy_keeps_a_server(everyone_else_down, {"vm-01"})
    assert check.level == FAIL and "portail" in check.message
    assert proxy_keeps_a_server(snap, {v.name for v in snap.vms}).level == FAIL


def test_node_ready_and_failures():
    assert node_ready(Node("a", "a")).level == OK
    down = node_ready(Node("a", "a", state=DOWN))
    assert down.level == WARN and "down" in down.message
    assert failures([down, node_ready(Node("b", "b"))]) == []


def test_drain_checks_for_a_manager_say_quorum_unchanged(sim):
    snap = sim_snapshot(sim)
    mgr = snap.managers[0]
    checks = drain_checks(snap, mgr)
    assert {c.name for c in checks} == {"node", "capacity", "stops", "spread", "quorum", "proxy"}
    assert next(c for c in checks if c.name == "quorum").level == OK
    worker = next(n for n in snap.nodes if n.role == WORKER)
    assert "quorum" not in {c.name for c in drain_checks(snap, worker)}


# -- plans --------------------------------------------------------------------------------------------

def test_plan_for_unknown_node_lists_known_nodes(sim):
    snap = sim_snapshot(sim)
    for build in (plans.cordon, plans.drain, plans.activate):
        with pytest.raises(PlanError) as e:
            build(snap, "vm-42")
        assert "vm-42" in str(e.value)
        for n in snap.nodes:
            assert n.hostname in str(e.value)
    with pytest.raises(PlanError, match="known: none"):
        plans.find_node(Snapshot(), "vm-01")


def test_build_unknown_kind(sim):
    with pytest.raises(PlanError, match="unknown operation 'reboot'.*cordon, drain, activate"):
        catalog.build("reboot", sim_snapshot(sim), "vm-01")


def test_build_makes_each_node_operation_by_any_node_name(sim):
    snap = sim_snapshot(sim)
    node = snap.node_named("vm-02")
    for kind in ("cordon", "drain", "activate"):
        for name in ("vm-02", node.swarm_id, node.id):
            plan = catalog.build(kind, snap, name)
            assert plan.kind == kind and plan.target == "vm-02"


def test_drain_plan_steps_and_undo(sim):
    snap = sim_snapshot(sim)
    plan = plans.drain(snap, "vm-04", plans.Timing(sessions_timeout=30, sessions_threshold=2,
                                                   drain_timeout=90))
    titles = [s.title for s in plan.steps]
    assert titles == [
        "set proxy server portail/vm-04 to drain",
        "wait for sessions on portail/vm-04 to end (≤2, 30s)",
        "set vm-04 availability to pause",
        "start the replacements of vm-04's tasks on other nodes first",
        "set vm-04 availability to drain",
        "scale the moved services back to their replica counts (vm-04)",
        "wait until vm-04 runs no tasks and its services converge (90s)",
    ]
    # what changes something can be undone (availability, proxy state, replica counts)
    assert [s.undo is not None for s in plan.steps] == [True, False, True, True, True, False,
                                                        False]
    # the proxy drain and the node drain are guarded (on fresh data, before each runs)
    assert [s.risk is not None for s in plan.steps] == [True, False, False, False, True, False,
                                                        False]
    assert plan.steps[0].risk == plan.steps[4].risk
    assert not failures(before_step(snap, plan.steps[4].risk))
    # a manager: the confirmation mentions quorum
    assert any(c.name == "quorum" for c in plan.checks)


def test_cordon_plan(sim):
    snap = sim_snapshot(sim)
    plan = plans.cordon(snap, "vm-05")
    assert [s.title for s in plan.steps] == ["set vm-05 availability to pause"]
    assert plan.steps[0].undo is not None and plan.refused == []


def test_activate_plan_only_readies_servers_that_are_not_ready(sim):
    snap = sim_snapshot(sim)
    assert [s.title for s in plans.activate(snap, "vm-05").steps] == \
        ["set vm-05 availability to active"]
    sim.set_server_state("portail", "vm-05", "maint")
    plan = plans.activate(sim_snapshot(sim), "vm-05")
    assert [s.title for s in plan.steps][1:] == ["set proxy server portail/vm-05 to ready"]


def test_forced_drain_turns_refusals_into_warnings(sim):
    snap, holder = pinned_reports(sim)
    strict = plans.drain(snap, holder.hostname)
    forced = plans.drain(snap, holder.hostname, force=True)
    assert [c.name for c in strict.refused] == ["capacity"]
    assert forced.refused == [] and forced.force and not strict.force
    assert [c.name for c in forced.checks] == [c.name for c in strict.checks]
    cap = next(c for c in forced.checks if c.name == "capacity")
    assert cap.level == WARN and cap.message.endswith("(overridden by force)")
    # the guards before each step find the same; force makes that a warning there too
    risk = strict.steps[0].risk
    assert failures(before_step(snap, risk))[0].name == "capacity"
    assert not failures(guards.forced(before_step(snap, risk)))


def test_drain_guard_ignores_a_vanished_node(sim):
    snap = sim_snapshot(sim)
    plan = plans.drain(snap, "vm-02")
    node = snap.node_named("vm-02")
    gone = replace(snap, nodes=tuple(n for n in snap.nodes if n != node))
    risk = plan.steps[0].risk
    assert not failures(before_step(gone, risk))
    drained = replace(snap, nodes=tuple(replace(n, availability=DRAIN) if n == node else n
                                        for n in snap.nodes))
    assert not failures(before_step(drained, risk))
