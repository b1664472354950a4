"""N-1: the loss of each host or VM, computed from crafted snapshots."""
from __future__ import annotations

import dataclasses

from opsconsole.model import (
    MANAGER,
    RUNNING,
    SWARM,
    VM,
    Host,
    Node,
    Problem,
    ProxyServer,
    Service,
    Snapshot,
    Task,
)
from opsconsole.ops import resilience as r
from opsconsole.ops.guards import FAIL, OK, WARN


def cluster(hosts: dict[str, list[str]], managers: set[str], services=(),
            placement: dict[str, list[str]] | None = None, servers=(), labels=None,
            problems=()) -> Snapshot:
    """hosts: host -> its VMs (each VM runs a node of the same hostname);
    placement: service name -> the nodes its running tasks are on, in slot order."""
    vms = [VM(v, h, node_hostname=v) for h, names in hosts.items() for v in names]
    nodes = [Node(f"id-{v.name}", v.name, role=MANAGER if v.name in managers else "worker",
                  labels=tuple((labels or {}).get(v.name, ())))
             for v in vms]
    tasks = []
    for svc in services:
        for slot, node in enumerate((placement or {}).get(svc.name, []), 1):
            tasks.append(Task(f"{svc.name}-{slot}", svc.swarm_id, svc.name, slot,
                              f"id-{node}", RUNNING))
    return Snapshot(hosts=tuple(Host(h) for h in hosts), vms=tuple(vms), nodes=tuple(nodes),
                    services=tuple(services), tasks=tuple(tasks), servers=tuple(servers),
                    problems=tuple(problems))


def outcome(snap: Snapshot, name: str) -> r.Outcome:
    return next(o for o in r.assess(snap).outcomes if o.domain.name == name)


def findings(o: r.Outcome) -> dict[tuple[str, str], str]:
    """What goes wrong (the quorum that holds is left out)."""
    return {(f.what, f.subject): f.level for f in o.findings if f.level != OK}


TWO_HOSTS = {"hv-01": ["vm-01", "vm-02", "vm-03"], "hv-02": ["vm-04", "vm-05", "vm-06"]}


def test_two_managers_on_two_hosts_lose_quorum_with_either_host_and_no_count_fixes_it():
    snap = cluster(TWO_HOSTS, {"vm-01", "vm-04"})
    for host, manager in (("hv-01", "vm-01"), ("hv-02", "vm-04")):
        o = outcome(snap, host)
        [q] = [f for f in o.findings if f.what == r.QUORUM]
        assert (q.level, q.subject) == (FAIL, manager) and not o.survived
        assert "1 of 2 managers left" in q.message
        assert "third failure domain" in q.fix
    assert r.assess(snap).verdict == "N-1 ✘ hv-01: quorum; hv-02: quorum"
    # workers are their own domains: each is survived
    assert outcome(snap, "vm-02").survived and outcome(snap, "vm-05").survived


def test_a_third_domain_manager_makes_every_host_loss_survivable():
    hosts = dict(TWO_HOSTS, witness=["vm-07"])
    snap = cluster(hosts, {"vm-01", "vm-04", "vm-07"})
    assert r.assess(snap).survived and r.assess(snap).verdict == "N-1 ✔"
    [q] = [f for f in outcome(snap, "hv-01").findings if f.what == r.QUORUM]
    assert q.level == OK and "2 of 3 managers left" in q.message
    # three managers but two on one host: that host's loss is not survived
    snap = cluster(hosts, {"vm-01", "vm-02", "vm-07"})
    assert not outcome(snap, "hv-01").survived and outcome(snap, "hv-02").survived


def test_services_on_a_lost_host_without_quorum_stop_or_run_degraded():
    api = Service("s-api", "api", replicas=2)
    db = Service("s-db", "db", replicas=1)
    snap = cluster(TWO_HOSTS, {"vm-01", "vm-04"}, [api, db],
                   {"api": ["vm-02", "vm-05"], "db": ["vm-03"]})
    o = outcome(snap, "hv-01")
    assert findings(o) == {("quorum", "vm-01"): FAIL, ("degraded", "api"): WARN,
                           ("outage", "db"): FAIL}


def test_with_quorum_a_lone_task_is_a_short_outage_until_rescheduled():
    db = Service("s-db", "db", replicas=1)
    snap = cluster(TWO_HOSTS, {"vm-01", "vm-04", "vm-05"}, [db], {"db": ["vm-03"]})
    o = outcome(snap, "vm-03")
    assert findings(o) == {("outage", "db"): WARN} and o.survived
    assert "runs no task until Swarm reschedules" in o.findings[0].message


def test_tasks_that_cannot_be_rescheduled_are_named_with_the_reason():
    hosts = {"hv-01": ["vm-01", "vm-02"], "hv-02": ["vm-03", "vm-04"], "hv-03": ["vm-05"]}
    managers = {"vm-01", "vm-03", "vm-05"}
    ssd = {"vm-01": [("disk", "ssd")], "vm-02": [("disk", "ssd")]}
    pinned = Service("s-pin", "pinned", replicas=2, constraints=("node.labels.disk==ssd",))
    capped = Service("s-cap", "capped", replicas=4, max_per_node=1)
    snap = cluster(hosts, managers, [pinned, capped],
                   {"pinned": ["vm-01", "vm-02"],
                    "capped": ["vm-01", "vm-02", "vm-03", "vm-04"]}, labels=ssd)
    o = outcome(snap, "hv-01")
    by = {f.subject: f for f in o.findings}
    assert by["pinned"].what == r.STRANDED and by["pinned"].level == FAIL
    assert "constraint node.labels.disk==ssd" in by["pinned"].message
    # capped: 2 of 4 lost, one more fits on vm-05, the last has no node without a task
    assert by["capped"].what == r.DEGRADED and by["capped"].level == WARN
    assert "max 1 per node" in by["capped"].message
    assert not o.survived


def test_lost_tasks_compete_for_the_same_room():
    """Two services each needing the one free slot: only one gets it."""
    hosts = {"hv-01": ["vm-01"], "hv-02": ["vm-02"], "hv-03": ["vm-03"]}
    a = Service("s-a", "a", replicas=1, reserve_memory_bytes=6)
    b = Service("s-b", "b", replicas=1, reserve_memory_bytes=6)
    snap = cluster(hosts, {"vm-01", "vm-02", "vm-03"}, [a, b], {"a": ["vm-01"], "b": ["vm-01"]})
    snap = dataclasses.replace(snap, nodes=tuple(
        dataclasses.replace(n, memory_bytes=10 if n.hostname == "vm-02" else 1)
        for n in snap.nodes))
    by = {f.subject: f for f in outcome(snap, "hv-01").findings}
    assert (by["a"].what, by["b"].what) == (r.OUTAGE, r.STRANDED)
    assert "not enough memory" in by["b"].message


def test_a_global_service_pinned_to_the_lost_domain_stops():
    g = Service("s-g", "g6", mode="global", constraints=("node.hostname==vm-06",))
    everywhere = Service("s-e", "agent", mode="global")
    snap = cluster(TWO_HOSTS, {"vm-01", "vm-02", "vm-04"}, [g, everywhere],
                   {"g6": ["vm-06"], "agent": ["vm-01", "vm-02", "vm-03", "vm-04", "vm-05",
                                               "vm-06"]})
    o = outcome(snap, "vm-06")
    assert findings(o) == {("outage", "g6"): FAIL}


def test_a_backend_left_without_a_server_up():
    servers = [ProxyServer("portal", "vm-02", vm="vm-02"), ProxyServer("portal", "vm-05",
                                                                       vm="vm-05"),
               ProxyServer("admin", "vm-03", vm="vm-03")]
    snap = cluster(TWO_HOSTS, {"vm-01", "vm-04", "vm-06"}, servers=servers)
    assert findings(outcome(snap, "hv-01")) == {("backend", "admin"): FAIL}
    assert findings(outcome(snap, "vm-02")) == {}
    servers[1] = ProxyServer("portal", "vm-05", status="DOWN", vm="vm-05")
    snap = cluster(TWO_HOSTS, {"vm-01", "vm-04", "vm-06"}, servers=servers)
    assert findings(outcome(snap, "vm-02")) == {("backend", "portal"): FAIL}


def test_an_unreadable_source_is_never_survived():
    whole = cluster(dict(TWO_HOSTS, witness=["vm-07"]), {"vm-01", "vm-04", "vm-07"})
    assert r.assess(whole).survived is True
    answer = r.assess(Snapshot(problems=(Problem(SWARM, "connection refused"),)))
    assert answer.survived is False and answer.verdict == "N-1 ? swarm unreadable"
    answer = r.assess(dataclasses.replace(whole, problems=(Problem(SWARM, "refused"),)))
    assert answer.survived is False and answer.unknown == ("swarm",)
