"""The problems list: everything wrong now, worst first, since when, with its entity."""
from __future__ import annotations

import dataclasses

from unitkit import sim_snapshot

from opsconsole.model import DRAIN, PROXY, Lock, Problem, Service, Task
from opsconsole.ops.diagnosis import Diagnosis, concerns
from opsconsole.ops.guards import FAIL, WARN
from opsconsole.ops.records import OpRecord
from opsconsole.providers.sim import SimCluster


def kinds(found) -> set[tuple[str, str]]:
    return {(c.kind, c.level) for c in found}


def test_the_simulated_cluster_at_rest_has_only_its_standing_risks():
    snap = sim_snapshot(SimCluster(seed=3))
    found = concerns(snap)
    # two managers: any manager loss loses quorum; hv-02 waits for a reboot
    assert {c.message.split(" (")[0] for c in found if c.kind == "quorum"} == {
        "quorum tolerates no manager loss"}
    assert all(c.level == WARN for c in found), found


def test_what_goes_wrong_is_named_with_its_entity_and_the_worst_first():
    sim = SimCluster(seed=3)
    snap = sim_snapshot(sim)
    worker = next(n for n in snap.nodes if n.role == "worker")
    sim.set_availability(worker.swarm_id, DRAIN)
    vm = snap.vm_of_node(worker)
    server = snap.servers[0]
    sim.set_server_state(server.backend, server.name, "maint")
    snap = sim_snapshot(sim)
    snap = dataclasses.replace(snap, problems=(Problem(PROXY, "socket gone", since=100.0),),
                               vms=tuple(dataclasses.replace(v, state="off") if v == vm else v
                                         for v in snap.vms))
    found = Diagnosis()(snap)
    assert found[0].level == FAIL and found[0].kind == "unreadable"
    assert "proxy: socket gone" in found[0].message and found[0].since == 100.0
    by_entity = {c.entity: c for c in found if c.entity}
    assert f"{worker.hostname} is drain (no operation running)" in [
        c.message for c in found if c.entity == worker.id]
    assert by_entity[vm.id].message.startswith(f"{vm.name} is off")
    assert by_entity[server.id].message.startswith(f"{server.backend}/{server.name} is maint")
    assert [c.level for c in found] == sorted((c.level for c in found),
                                              key=lambda lv: {FAIL: 0, WARN: 1}[lv])


def test_a_service_not_running_gives_swarms_reason():
    snap = sim_snapshot(SimCluster(seed=3))
    svc = Service("s-x", "x", replicas=2)
    tasks = (Task("t1", "s-x", "x", 1, "", "pending", error="no suitable node (max replicas)"),
             Task("t2", "s-x", "x", 2, "", "pending"))
    snap = dataclasses.replace(snap, services=snap.services + (svc,), tasks=snap.tasks + tasks)
    [c] = [c for c in concerns(snap) if c.entity == svc.id]
    assert c.level == FAIL
    assert c.message == "x: 0/2 running (x.1 pending: no suitable node (max replicas))"


def test_a_stale_lock_and_an_unfinished_operation():
    snap = sim_snapshot(SimCluster(seed=3))
    snap = dataclasses.replace(snap, lock=Lock("ann@admin", "op-1", "drain vm-03", 1000.0,
                                               host="elsewhere", pid=9, beat=1000.0),
                               taken_at=2000.0)
    dead = OpRecord("op-1", "drain", "vm-03", host="elsewhere", pid=9, beat=1000.0)
    found = concerns(snap, [dead])
    [lock] = [c for c in found if c.kind == "lock"]
    assert lock.level == FAIL and "drain vm-03 by ann@admin is stale" in lock.message
    [op] = [c for c in found if c.kind == "operation"]
    assert "drain vm-03 is unfinished (op-1)" in op.message
    alive = dataclasses.replace(snap, lock=dataclasses.replace(snap.lock, beat=1990.0))
    assert not [c for c in concerns(alive) if c.kind == "lock"]


def test_since_is_kept_across_refreshes_and_forgotten_once_cleared():
    sim = SimCluster(seed=3)
    diagnose = Diagnosis()
    snap = sim_snapshot(sim)
    worker = next(n for n in snap.nodes if n.role == "worker")
    sim.set_availability(worker.swarm_id, DRAIN)
    first = dataclasses.replace(sim_snapshot(sim), taken_at=100.0)
    [c] = [c for c in diagnose(first) if c.entity == worker.id]
    assert c.since == 100.0
    later = dataclasses.replace(first, taken_at=160.0)
    [c] = [c for c in diagnose(later) if c.entity == worker.id]
    assert c.since == 100.0
    sim.set_availability(worker.swarm_id, "active")
    assert not [c for c in diagnose(dataclasses.replace(sim_snapshot(sim), taken_at=170.0))
                if c.entity == worker.id]
    sim.set_availability(worker.swarm_id, DRAIN)
    again = dataclasses.replace(sim_snapshot(sim), taken_at=200.0)
    [c] = [c for c in diagnose(again) if c.entity == worker.id]
    assert c.since == 200.0
