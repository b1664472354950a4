"""The simulated cluster: determinism, topology, Swarm/Hyper-V/HAProxy behaviour."""
from __future__ import annotations

from collections import Counter

import pytest
from unitkit import comparable, sim_snapshot, step

from opsconsole.cluster import Cluster
from opsconsole.model import DOWN, DRAIN, MANAGER, READY, RUNNING, WORKER, Snapshot
from opsconsole.placement import constraint_holds
from opsconsole.providers.base import ProviderError
from opsconsole.providers.sim import ManualClock, SimCluster


def node_of(sim: SimCluster, hostname: str):
    return next(n for n in sim.nodes.values() if n.hostname == hostname)


def host_of_task(snap: Snapshot, service_name: str) -> str:
    [t] = [t for t in snap.tasks if t.service_name == service_name and t.wanted]
    return snap.node(t.node_id).hostname


def assert_placement_rules(snap: Snapshot) -> None:
    for svc in snap.services:
        wanted = [t for t in snap.tasks_of_service(svc.swarm_id) if t.wanted and t.node_id]
        per_node = Counter(t.node_id for t in wanted)
        if svc.max_per_node:
            assert max(per_node.values(), default=0) <= svc.max_per_node, svc.name
        for node_id in per_node:
            node = snap.node(node_id)
            for c in svc.constraints:
                assert constraint_holds(c, node), (svc.name, node.hostname, c)


def assert_sessions_consistent(snap: Snapshot) -> None:
    for server in snap.servers:
        assert server.cur_sessions == len(snap.sessions_of_server(server)), server.name
    assert snap.session_count == len(snap.sessions)


# -- determinism ---------------------------------------------------------------------

def drive(seed: int) -> list[Snapshot]:
    clock = ManualClock()
    sim = SimCluster(seed=seed, clock=clock)
    out = [sim_snapshot(sim)]
    for seconds in (0.3, 5.0, 12.7):
        step(sim, clock, seconds)
        out.append(sim_snapshot(sim))
    sim.set_availability(node_of(sim, "vm-02").swarm_id, DRAIN)
    sim.stop_vm("vm-05")
    for seconds in (1.0, 20.0):
        step(sim, clock, seconds)
        out.append(sim_snapshot(sim))
    return [comparable(s) for s in out]


def test_same_seed_same_clock_same_cluster():
    a, b = drive(7), drive(7)
    assert a == b
    # ...and the world did move along the way (the comparison is not vacuous)
    assert a[0] != a[-1]
    assert a[0].sessions != a[3].sessions


def test_different_seed_differs():
    a, c = drive(7)[-1], drive(8)[-1]
    assert a != c
    assert {n.swarm_id for n in a.nodes} != {n.swarm_id for n in c.nodes}


def test_clock_speed_scales_simulated_time():
    clock = ManualClock()
    fast = SimCluster(seed=1, clock=clock, speed=10)
    start = fast.now
    clock.advance(3)
    fast.advance()
    assert fast.now - start == pytest.approx(30, abs=0.25)


# -- reference topology ----------------------------------------------------------------

def test_reference_topology(sim):
    snap = sim_snapshot(sim)
    assert [h.name for h in snap.hosts] == ["hv-01", "hv-02"]
    assert len(snap.vms) == 6
    assert Counter(v.host for v in snap.vms) == {"hv-01": 3, "hv-02": 3}
    assert len(snap.nodes) == 6
    assert Counter(n.role for n in snap.nodes) == {MANAGER: 2, WORKER: 4}
    # managers on different hosts, exactly one leader
    mgr_hosts = {snap.vm_of_node(m).host for m in snap.managers}
    assert mgr_hosts == {"hv-01", "hv-02"}
    assert sum(n.leader for n in snap.nodes) == 1
    assert all(n.state == READY and n.availability == "active" for n in snap.nodes)
    assert all(snap.vm_of_node(n) is not None for n in snap.nodes)
    # after warm-up every service has converged and every task is running
    assert snap.services
    for svc in snap.services:
        running, desired = snap.convergence(svc)
        assert running == desired and desired > 0, svc.name
    assert all(t.state == RUNNING for t in snap.tasks if t.wanted)
    assert_placement_rules(snap)
    # one proxy server per VM, all up and mapped; sessions already flowing
    assert {s.vm for s in snap.servers} == {v.name for v in snap.vms}
    assert all(s.status == "UP" for s in snap.servers)
    assert snap.sessions and snap.session_count == len(snap.sessions)
    assert snap.problems == ()


# -- swarm behaviour ---------------------------------------------------------------------

def test_drain_reschedules_after_a_delay_respecting_rules(sim, clock):
    snap = sim_snapshot(sim)
    node = snap.node_named("vm-03")
    before = snap.tasks_on_node(node.swarm_id)
    replicated = [t for t in before if snap.service(t.service_id).mode == "replicated"]
    assert replicated, "reference topology should run replicated tasks on vm-03"

    sim.set_availability(node.swarm_id, DRAIN)
    now = sim_snapshot(sim)
    assert now.tasks_on_node(node.swarm_id) == []                  # desired shutdown at once
    # ...but nothing has moved yet: the old tasks still run, replacements wait
    old = [now.get(t.id) for t in before]
    assert all(t.state == RUNNING and not t.wanted for t in old)
    fresh = [t for t in now.tasks if t.wanted and t.state != RUNNING]
    assert sorted((t.service_name, t.slot) for t in fresh) == \
        sorted((t.service_name, t.slot) for t in replicated)

    step(sim, clock, 1.0)
    mid = sim_snapshot(sim)
    assert any(t.wanted and t.node_id and t.state != RUNNING for t in mid.tasks), \
        "replacements start over a few seconds, not instantly"

    step(sim, clock, 30.0)
    after = sim_snapshot(sim)
    assert [t for t in after.tasks_on_node(node.swarm_id, wanted_only=False)
            if t.state == RUNNING] == []
    for svc in after.services:
        assert after.converged(svc), svc.name
    assert all(t.node_id != node.swarm_id for t in after.tasks if t.wanted)
    assert_placement_rules(after)
    # global services now run one task per remaining node
    glob = next(s for s in after.services if s.mode == "global")
    assert after.convergence(glob) == (5, 5)


def test_constraint_pinned_tasks_move_to_the_other_eligible_node(sim, clock):
    snap = sim_snapshot(sim)
    reports_on, db_on = host_of_task(snap, "reports"), host_of_task(snap, "db")
    sim.set_availability(snap.node_named(reports_on).swarm_id, DRAIN)
    sim.set_availability(snap.node_named(db_on).swarm_id, DRAIN)
    step(sim, clock, 30.0)
    after = sim_snapshot(sim)
    new_reports, new_db = host_of_task(after, "reports"), host_of_task(after, "db")
    assert new_reports != reports_on and new_db != db_on
    assert ("storage", "ssd") in after.node_named(new_reports).labels
    assert after.node_named(new_db).role == MANAGER
    assert_placement_rules(after)


def test_service_with_only_drained_eligible_nodes_stays_pending_with_reason(sim, clock):
    ssd = [n for n in sim.nodes.values() if ("storage", "ssd") in n.labels]
    assert len(ssd) == 2
    for n in ssd:
        sim.set_availability(n.swarm_id, DRAIN)
    step(sim, clock, 60.0)
    snap = sim_snapshot(sim)
    reports = next(s for s in snap.services if s.name == "reports")
    [task] = [t for t in snap.tasks_of_service(reports.swarm_id) if t.wanted]
    assert task.state == "pending" and task.node_id == ""
    assert snap.convergence(reports) == (0, 1)
    assert "availability drain" in task.error
    for n in ssd:
        assert n.hostname in task.error
    assert "constraint node.labels.storage==ssd" in task.error
    # once an eligible node is back, the task is placed
    sim.set_availability(ssd[0].swarm_id, "active")
    step(sim, clock, 20.0)
    assert host_of_task(sim_snapshot(sim), "reports") == ssd[0].hostname


def test_stop_vm_takes_node_down_and_reschedules_then_start_vm_brings_it_back(sim, clock):
    snap = sim_snapshot(sim)
    node = snap.node_named("vm-05")
    had = [t for t in snap.tasks_on_node(node.swarm_id)
           if snap.service(t.service_id).mode == "replicated"]
    assert had
    sim.stop_vm("vm-05")
    assert sim.vms["vm-05"].state == "stopping"
    step(sim, clock, 30.0)
    snap = sim_snapshot(sim)
    assert snap.get("vm:vm-05").state == "off"
    n = snap.get(node.id)
    assert n.state == DOWN and n.message
    replicated_here = [t for t in snap.tasks_on_node(node.swarm_id)
                       if snap.service(t.service_id).mode == "replicated"]
    assert replicated_here == []
    for svc in snap.services:
        if svc.mode == "replicated":
            assert snap.converged(svc), svc.name
    server = next(s for s in snap.servers if s.vm == "vm-05")
    assert server.status == "DOWN" and server.cur_sessions == 0
    assert_sessions_consistent(snap)

    sim.start_vm("vm-05")
    assert sim.vms["vm-05"].state == "starting"
    step(sim, clock, 30.0)
    snap = sim_snapshot(sim)
    assert snap.get("vm:vm-05").state == RUNNING
    assert snap.get(node.id).state == READY
    glob = next(s for s in snap.services if s.mode == "global")
    assert snap.converged(glob)


def test_leader_moves_when_leader_vm_stops(sim, clock):
    leader = next(n for n in sim.nodes.values() if n.leader)
    vm = leader.hostname
    sim.stop_vm(vm, force=True)
    step(sim, clock, 10.0)
    snap = sim_snapshot(sim)
    [new_leader] = [n for n in snap.nodes if n.leader]
    assert new_leader.swarm_id != leader.swarm_id and new_leader.role == MANAGER
    assert snap.get(leader.id).reachability == "unreachable"
    assert snap.quorum_tolerance < 0          # 1 of 2 managers left


def test_restart_host_refuses_while_vms_run(sim, clock):
    with pytest.raises(ProviderError) as e:
        sim.restart_host("hv-01")
    for vm in ("vm-01", "vm-02", "vm-03"):
        assert vm in str(e.value)
    assert sim.hosts["hv-01"].state == "up"
    for vm in ("vm-01", "vm-02", "vm-03"):
        sim.stop_vm(vm)
    step(sim, clock, 15.0)
    sim.restart_host("hv-01")
    assert sim.hosts["hv-01"].state == "rebooting"
    with pytest.raises(ProviderError, match="rebooting"):
        sim.start_vm("vm-01")
    step(sim, clock, 60.0)
    assert sim.hosts["hv-01"].state == "up" and sim.hosts["hv-01"].uptime_s == 0


def test_unknown_names_raise_provider_errors(sim):
    with pytest.raises(ProviderError, match="vm-99"):
        sim.stop_vm("vm-99")
    with pytest.raises(ProviderError, match="hv-99"):
        sim.restart_host("hv-99")
    with pytest.raises(ProviderError, match="no such node"):
        sim.set_availability("nope", DRAIN)
    with pytest.raises(ProviderError, match="unknown availability"):
        sim.set_availability(next(iter(sim.nodes)), "sideways")
    with pytest.raises(ProviderError, match="No such server"):
        sim.set_server_state("portail", "vm-99", "drain")


# -- proxy behaviour ----------------------------------------------------------------------

def test_sessions_arrive_and_stick(sim, clock):
    first = sim_snapshot(sim)
    step(sim, clock, 10.0)
    later = sim_snapshot(sim)
    before = {s.session_id: s for s in first.sessions}
    after = {s.session_id: s for s in later.sessions}
    kept = before.keys() & after.keys()
    arrived = after.keys() - before.keys()
    assert kept and arrived
    for sid in kept:
        assert after[sid].server == before[sid].server
        assert after[sid].started_at == before[sid].started_at
    # totals only grow, and new sessions spread over more than one server
    total = {s.id: s.total_sessions for s in first.servers}
    assert sum(s.total_sessions for s in later.servers) >= sum(total.values()) + len(arrived)
    assert len({after[s].server for s in arrived}) > 1


def test_drained_proxy_server_gets_no_new_sessions_and_empties(sim, clock):
    snap = sim_snapshot(sim)
    target = max(snap.servers, key=lambda s: s.cur_sessions)
    assert target.cur_sessions > 0
    sim.set_server_state(target.backend, target.name, "drain")
    s = sim_snapshot(sim).get(target.id)
    assert s.admin == "drain" and s.status == "DRAIN" and s.weight == 0
    total_then = s.total_sessions
    others_then = sum(x.total_sessions for x in sim_snapshot(sim).servers if x.id != target.id)
    counts = []
    for _ in range(12):
        step(sim, clock, 15.0)
        counts.append(sim_snapshot(sim).get(target.id).cur_sessions)
    final = sim_snapshot(sim)
    assert final.get(target.id).total_sessions == total_then        # no new sessions
    assert sum(x.total_sessions for x in final.servers if x.id != target.id) > others_then
    assert counts == sorted(counts, reverse=True)                    # never rises
    assert counts[-1] == 0 < target.cur_sessions


def test_maint_server_moves_its_sessions(sim):
    snap = sim_snapshot(sim)
    target = max(snap.servers, key=lambda s: s.cur_sessions)
    moved_before = sim.sessions_moved
    sim.set_server_state(target.backend, target.name, "maint")
    after = sim_snapshot(sim)
    assert after.get(target.id).status == "MAINT"
    assert after.sessions_of_server(after.get(target.id)) == []
    assert after.get(target.id).cur_sessions == 0
    assert_sessions_consistent(after)
    assert sim.sessions_moved - moved_before == target.cur_sessions
    assert len(after.sessions) == len(snap.sessions)


def test_read_only_proxy_refuses_changes(sim):
    sim.read_only_proxy = "stats socket is operator-level"
    with pytest.raises(ProviderError, match="operator-level"):
        sim.set_server_state("portail", "vm-01", "drain")
    assert sim_snapshot(sim).proxy_read_only == "stats socket is operator-level"


# -- scale -----------------------------------------------------------------------------------

def test_scale_1000_nodes():
    """How fast it builds is measured by tests/bench/sim_scale.py, not here."""
    sim = SimCluster(seed=1, scale=1000, clock=ManualClock())
    snap = sim_snapshot(sim)
    assert len(snap.nodes) == 1000 and len(snap.vms) == 1000
    wanted = [t for t in snap.tasks if t.wanted]
    assert 19_000 <= len(wanted) <= 21_000
    assert sum(1 for t in wanted if t.state == RUNNING) == len(wanted)
    assert len(snap.managers) % 2 == 1 and snap.quorum_tolerance >= 1
    assert len({t.id for t in snap.tasks}) == len(snap.tasks)


# -- cluster join ----------------------------------------------------------------------------

class _Broken:
    def __init__(self, inner):
        self.inner = inner
        self.fail = False

    async def read(self):
        if self.fail:
            raise ProviderError("WinRM: connection refused")
        return await self.inner.read()

    def __getattr__(self, name):
        return getattr(self.inner, name)


async def test_cluster_keeps_last_good_answer_when_a_provider_fails(sim):
    providers = sim.providers()
    broken = _Broken(providers.hypervisor)
    providers.hypervisor = broken
    cluster = Cluster(providers)
    good = await cluster.snapshot()
    assert good.problems == () and all(h.state == "up" for h in good.hosts)
    broken.fail = True
    bad = await cluster.snapshot()
    assert [str(p) for p in bad.problems] == ["hyper-v: WinRM: connection refused"]
    assert [h.name for h in bad.hosts] == [h.name for h in good.hosts]
    assert all(h.state == "unreachable" for h in bad.hosts)
    assert all(v.state == "unknown" for v in bad.vms)
    assert bad.nodes == good.nodes              # the swarm still answered: live data


async def test_cluster_maps_servers_to_vms_by_inventory_then_address(sim):
    providers = sim.providers()
    # forget the sim's own mapping so the cluster must work it out
    for key, srv in list(sim.servers.items()):
        sim.servers[key] = srv.__class__(**{**srv.__dict__, "vm": ""})
    snap = await Cluster(providers, {"portail/vm-02": "vm-06"}).snapshot()
    by_name = {s.name: s.vm for s in snap.servers}
    assert by_name["vm-02"] == "vm-06"                  # inventory wins
    assert by_name["vm-01"] == "vm-01"                  # address match
    assert by_name["vm-05"] == "vm-05"
