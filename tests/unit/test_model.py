"""model: ids, lookups, derived facts, quorum maths, diff."""
from __future__ import annotations

from dataclasses import replace

import pytest

from opsconsole.model import (
    DOWN,
    DRAIN,
    MANAGER,
    VM,
    WORKER,
    Backend,
    Diff,
    Host,
    Node,
    ProxyServer,
    ProxySession,
    Service,
    Snapshot,
    Task,
    diff,
    quorum_tolerance,
)


def world() -> Snapshot:
    hosts = (Host("hv-01"), Host("hv-02"))
    vms = (VM("vm-a", "hv-01", node_hostname="node-a"),
           VM("vm-b", "hv-01", node_hostname="node-b"),
           VM("vm-c", "hv-02"))                       # hostname defaults to the VM name
    nodes = (Node("id-a", "node-a", role=MANAGER, leader=True),
             Node("id-b", "node-b"),
             Node("id-c", "vm-c"),
             Node("id-x", "stray"))                   # a node with no VM known
    services = (Service("s-web", "web", replicas=3),
                Service("s-mon", "mon", mode="global", replicas=0))
    tasks = (Task("t1", "s-web", "web", slot=1, node_id="id-a", state="running"),
             Task("t2", "s-web", "web", slot=2, node_id="id-b", state="running"),
             Task("t3", "s-web", "web", slot=3, node_id="", state="pending"),
             Task("t4", "s-web", "web", slot=2, node_id="id-a", state="shutdown",
                  desired_state="shutdown"),
             Task("m1", "s-mon", "mon", node_id="id-a", state="running"),
             Task("m2", "s-mon", "mon", node_id="id-c", state="starting"),
             Task("m3", "s-mon", "mon", node_id="id-b", state="running"))
    backends = (Backend("be"),)
    servers = (ProxyServer("be", "srv-a", vm="vm-a", cur_sessions=2),
               ProxyServer("be", "srv-c", vm="vm-c", cur_sessions=1))
    sessions = (ProxySession("0x1", "be", "srv-a"), ProxySession("0x2", "be", "srv-a"),
                ProxySession("0x3", "be", "srv-c"))
    return Snapshot(hosts, vms, nodes, services, tasks, backends, servers, sessions)


# -- ids ------------------------------------------------------------------------------

def test_every_entity_kind_has_a_distinct_stable_id():
    snap = world()
    entities = list(snap.entities())
    ids = [e.id for e in entities]
    assert len(ids) == len(set(ids)), "ids collide across kinds"
    # The id depends only on identity, not on mutable state.
    for e in entities:
        mutated = {Host: dict(state="rebooting"), VM: dict(state="off"),
                   Node: dict(availability=DRAIN, state=DOWN), Service: dict(replicas=9),
                   Task: dict(state="failed", node_id="elsewhere"), Backend: dict(status="DOWN"),
                   ProxyServer: dict(status="MAINT", cur_sessions=0),
                   ProxySession: dict(server="other")}[type(e)]
        assert replace(e, **mutated).id == e.id, type(e).__name__
    kinds = {i.split(":", 1)[0] for i in ids}
    assert kinds == {"host", "vm", "node", "service", "task", "backend", "proxy", "session"}
    # Each id resolves back to its entity.
    for e in entities:
        assert snap.get(e.id) is e


def test_ids_distinguish_same_name_in_different_backends():
    a, b = ProxyServer("be1", "s"), ProxyServer("be2", "s")
    assert a.id != b.id


# -- diff -----------------------------------------------------------------------------

def test_diff_of_unchanged_snapshot_is_empty_and_falsy():
    d = diff(world(), world())
    assert not d
    assert d.added == {} and d.changed == {} and d.removed == ()


def test_diff_added_changed_removed():
    old = world()
    moved = replace(old.tasks[0], node_id="id-c")               # t1 moves node
    new_task = Task("t9", "s-web", "web", slot=4, node_id="id-b")
    new = replace(old, tasks=(moved,) + old.tasks[1:5] + (new_task,),   # m2, m3 gone
                  nodes=tuple(replace(n, availability=DRAIN) if n.swarm_id == "id-b" else n
                              for n in old.nodes))
    d = diff(old, new)
    assert d
    assert set(d.added) == {"task:t9"}
    assert d.added["task:t9"] == new_task
    assert set(d.changed) == {"task:t1", "node:id-b"}
    assert d.changed["task:t1"].node_id == "id-c"
    assert d.changed["node:id-b"].availability == DRAIN
    assert set(d.removed) == {"task:m2", "task:m3"}


def test_diff_task_moving_node_counts_as_changed_not_add_remove():
    old = world()
    new = replace(old, tasks=(replace(old.tasks[0], node_id="id-b"),) + old.tasks[1:])
    d = diff(old, new)
    assert list(d.changed) == ["task:t1"] and not d.added and not d.removed


def test_empty_diff_type():
    assert not Diff()


# -- quorum ---------------------------------------------------------------------------

@pytest.mark.parametrize("managers, tolerance", [(1, 0), (2, 0), (3, 1), (4, 1), (5, 2), (7, 3)])
def test_quorum_tolerance_all_up(managers, tolerance):
    assert quorum_tolerance(managers) == tolerance
    assert quorum_tolerance(managers, managers) == tolerance


@pytest.mark.parametrize("managers, up, tolerance", [
    (3, 2, 0), (5, 4, 1), (5, 3, 0), (7, 5, 1), (4, 3, 0),
    (2, 1, -1), (3, 1, -1), (5, 2, -1), (1, 0, -1), (7, 3, -1)])
def test_quorum_tolerance_with_some_down(managers, up, tolerance):
    assert quorum_tolerance(managers, up) == tolerance


def test_snapshot_quorum_tolerance_counts_ready_managers():
    def managers(*states):
        return Snapshot(nodes=tuple(Node(f"m{i}", f"m{i}", role=MANAGER, state=s)
                                    for i, s in enumerate(states))
                        + (Node("w", "w", role=WORKER),))
    assert managers("ready", "ready", "ready").quorum_tolerance == 1
    assert managers("ready", "ready", "down").quorum_tolerance == 0
    assert managers("ready", "down", "down").quorum_tolerance < 0
    assert managers("ready", "ready", "ready", "ready", "ready").quorum_tolerance == 2
    assert [m.hostname for m in managers("ready", "down").managers] == ["m0", "m1"]


# -- convergence and lookups ----------------------------------------------------------

def test_convergence_replicated_counts_wanted_running_against_replicas():
    snap = world()
    web = snap.get("service:s-web")
    # t1, t2 running; t3 pending; t4 running-history but not wanted.
    assert snap.convergence(web) == (2, 3)
    assert not snap.converged(web)
    running = replace(snap, tasks=tuple(replace(t, state="running", node_id="id-c")
                                        if t.swarm_id == "t3" else t for t in snap.tasks))
    assert running.convergence(web) == (3, 3) and running.converged(web)


def test_convergence_global_wants_one_per_eligible_node():
    snap = world()
    mon = snap.get("service:s-mon")
    assert snap.convergence(mon) == (2, 4)          # m2 starting, "stray" has none yet
    assert not snap.converged(mon)
    # a drained or down node is not expected to run one
    fewer = replace(snap, nodes=tuple(
        replace(n, availability="drain") if n.hostname == "stray" else
        replace(n, state="down") if n.hostname == "vm-c" else n for n in snap.nodes))
    assert fewer.convergence(mon)[1] == 2
    # a constraint narrows it too
    managers_only = replace(mon, constraints=("node.role==manager",))
    assert snap.convergence(managers_only)[1] == 1


def test_tasks_on_node_wanted_only_and_all():
    snap = world()
    assert {t.swarm_id for t in snap.tasks_on_node("id-a")} == {"t1", "m1"}
    assert {t.swarm_id for t in snap.tasks_on_node("id-a", wanted_only=False)} == \
        {"t1", "t4", "m1"}
    assert snap.tasks_on_node("nope") == []


def test_tasks_on_host_follows_vms_to_nodes():
    snap = world()
    assert {t.swarm_id for t in snap.tasks_on_host("hv-01")} == {"t1", "m1", "t2", "m3"}
    assert {t.swarm_id for t in snap.tasks_on_host("hv-02")} == {"m2"}
    assert snap.tasks_on_host("hv-99") == []


@pytest.mark.parametrize("name, expected", [
    ("node-a", "id-a"),          # hostname
    ("vm-a", "id-a"),            # VM name whose node hostname differs
    ("vm-b", "id-b"),
    ("vm-c", "id-c"),            # VM name equal to hostname
    ("id-b", "id-b"),            # swarm id
    ("node:id-x", "id-x"),       # entity id
    ("stray", "id-x"),
])
def test_node_named(name, expected):
    node = world().node_named(name)
    assert node is not None and node.swarm_id == expected


def test_node_named_unknown_is_none():
    assert world().node_named("vm-zz") is None


def test_vm_node_links():
    snap = world()
    assert snap.node_of_vm(snap.get("vm:vm-b")).swarm_id == "id-b"
    assert snap.vm_of_node(snap.get("node:id-c")).name == "vm-c"
    assert snap.vm_of_node(snap.get("node:id-x")) is None
    assert [s.name for s in snap.servers_of_vm("vm-a")] == ["srv-a"]
    assert {s.session_id for s in snap.sessions_of_server(snap.servers[0])} == {"0x1", "0x2"}
    assert snap.session_count == 3
    assert snap.nodes_ready == 4


def test_task_name_and_wanted():
    t = Task("x" * 25, "s", "web", slot=2)
    g = Task("t", "s", "mon", slot=0, node_id="abcdefabcdef0123")
    assert t.name == "web.2"
    assert g.name == "mon.abcdefabcdef"
    assert t.wanted and not replace(t, desired_state="shutdown").wanted


def test_node_schedulable():
    n = Node("a", "a")
    assert n.schedulable
    assert not replace(n, availability=DRAIN).schedulable
    assert not replace(n, state=DOWN).schedulable
