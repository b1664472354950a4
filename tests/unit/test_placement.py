"""placement: constraints, judge, spread, why_unplaceable, tasks_without_home."""
from __future__ import annotations

from dataclasses import replace

import pytest

from opsconsole.model import DOWN, DRAIN, MANAGER, PAUSE, WORKER, Node, Service, Snapshot, Task
from opsconsole.placement import (
    Load,
    best_node,
    constraint_holds,
    judge,
    tasks_without_home,
    why_unplaceable,
)

GIB = 1 << 30

MGR = Node("m1", "mgr-1", role=MANAGER, labels=(("zone", "a"), ("storage", "ssd")))
WRK = Node("w1", "wrk-1", role=WORKER, labels=(("zone", "b"),))


@pytest.mark.parametrize("constraint, on_mgr, on_wrk", [
    ("node.hostname==mgr-1", True, False),
    ("node.hostname!=mgr-1", False, True),
    ("node.hostname == wrk-1", False, True),          # spaces around the operator
    ("node.role==manager", True, False),
    ("node.role!=manager", False, True),
    ("node.role==worker", False, True),
    ("node.id==w1", False, True),
    ("node.labels.zone==a", True, False),
    ("node.labels.zone!=a", False, True),
    ("node.labels.storage==ssd", True, False),
    ("node.labels.storage!=ssd", False, True),       # a node without the label is "!="
    ("node.labels.missing==x", False, False),
    ("node.labels.missing!=x", True, True),
])
def test_constraint_holds(constraint, on_mgr, on_wrk):
    assert constraint_holds(constraint, MGR) is on_mgr
    assert constraint_holds(constraint, WRK) is on_wrk


def test_judge_reasons():
    svc = Service("s", "svc", constraints=("node.role==worker",), max_per_node=1,
                  reserve_nano_cpus=10**9, reserve_memory_bytes=GIB)
    node = Node("n", "n1", nano_cpus=2 * 10**9, memory_bytes=4 * GIB)
    empty = Load()
    assert judge(svc, node, empty).fits
    assert judge(svc, node, empty, frozenset({"n"})).reason == "being drained"
    assert judge(svc, replace(node, state=DOWN), empty).reason == "node down"
    assert judge(svc, replace(node, availability=DRAIN), empty).reason == "availability drain"
    assert judge(svc, replace(node, availability=PAUSE), empty).reason == "availability pause"
    assert judge(svc, replace(node, role=MANAGER), empty).reason == \
        "constraint node.role==worker"
    one = Load()
    one.add("n", svc)
    assert judge(svc, node, one).reason == "max 1 per node"
    # Resources: two other services already reserve most of the node.
    hog = Service("h", "hog", reserve_nano_cpus=int(1.5e9))
    cpu = Load()
    cpu.add("n", hog)
    assert judge(svc, node, cpu).reason == "not enough CPU"
    memhog = Service("mh", "memhog", reserve_memory_bytes=3 * GIB + 1)
    mem = Load()
    mem.add("n", memhog)
    assert judge(svc, node, mem).reason == "not enough memory"
    # A reservation that exactly fills the node still fits.
    exact = Load()
    exact.add("n", Service("e", "e", reserve_nano_cpus=10**9, reserve_memory_bytes=3 * GIB))
    assert judge(svc, node, exact).fits


def test_max_per_node_zero_means_unlimited_and_unknown_sizes_fit():
    svc = Service("s", "svc", reserve_nano_cpus=10**12, reserve_memory_bytes=10**15)
    node = Node("n", "n1")            # nano_cpus/memory unknown (0): not judged
    load = Load()
    load.add("n", svc, 50)
    assert judge(svc, node, load).fits


def test_load_of_snapshot_counts_wanted_assigned_tasks_only():
    svc = Service("s", "svc", reserve_nano_cpus=100, reserve_memory_bytes=10)
    tasks = (Task("a", "s", "svc", 1, node_id="n1"),
             Task("b", "s", "svc", 2, node_id="n1"),
             Task("c", "s", "svc", 3, node_id="n1", desired_state="shutdown"),
             Task("d", "s", "svc", 4, node_id=""),
             Task("e", "gone", "old", 1, node_id="n1"))
    load = Load.of(Snapshot(services=(svc,), tasks=tasks))
    assert load.per_service[("n1", "s")] == 2
    assert load.total["n1"] == 2
    assert load.cpu["n1"] == 200 and load.mem["n1"] == 20


def nodes(n: int, **kw) -> list[Node]:
    return [Node(f"id{i}", f"n{i}", **kw) for i in range(1, n + 1)]


def test_best_node_spreads_by_service_then_total_then_name():
    svc, other = Service("s", "svc"), Service("o", "other")
    ns = nodes(3)
    load = Load()
    assert best_node(ns, svc, load).hostname == "n1"              # tie: by name
    load.add("id1", svc)
    assert best_node(ns, svc, load).hostname == "n2"              # fewest of the service
    load.add("id2", other, 3)
    assert best_node(ns, svc, load).hostname == "n3"              # then fewest tasks overall
    load.add("id3", svc)
    load.add("id2", svc)
    load.add("id1", other, 10)
    # every node has one task of svc; n3 carries the fewest tasks in total
    assert best_node(ns, svc, load).hostname == "n3"


def test_best_node_skips_unfit_and_returns_none_when_nothing_fits():
    svc = Service("s", "svc", max_per_node=1)
    ns = [Node("a", "a", state=DOWN), Node("b", "b", availability=DRAIN), Node("c", "c"),
          Node("d", "d")]
    load = Load()
    load.add("c", svc)
    assert best_node(ns, svc, load).hostname == "d"
    assert best_node(ns, svc, load, frozenset({"d"})) is None


def test_spread_placement_fills_evenly():
    svc = Service("s", "svc")
    ns, load = nodes(4), Load()
    for _ in range(10):
        load.add(best_node(ns, svc, load).swarm_id, svc)
    counts = sorted(load.per_service[(n.swarm_id, "s")] for n in ns)
    assert counts == [2, 2, 3, 3]


def test_why_unplaceable_names_reasons_and_nodes():
    svc = Service("s", "reports", constraints=("node.labels.storage==ssd",))
    ns = [Node("a", "vm-a", labels=(("storage", "ssd"),), availability=DRAIN),
          Node("b", "vm-b"), Node("c", "vm-c"), Node("d", "vm-d", state=DOWN)]
    text = why_unplaceable(ns, svc, Load())
    assert text.startswith("no suitable node: ")
    assert "availability drain (vm-a)" in text
    assert "constraint node.labels.storage==ssd (vm-b, vm-c)" in text
    assert "node down (vm-d)" in text
    ok = ns + [Node("e", "vm-e", labels=(("storage", "ssd"),))]
    assert why_unplaceable(ok, svc, Load()) == ""
    assert why_unplaceable([], svc, Load()) == "no nodes"


def test_why_unplaceable_names_excluded_and_capacity():
    svc = Service("s", "api", max_per_node=1)
    ns = nodes(2)
    load = Load()
    load.add("id2", svc)
    text = why_unplaceable(ns, svc, load, frozenset({"id1"}))
    assert "being drained (n1)" in text and "max 1 per node (n2)" in text


def test_tasks_without_home_last_slot_claimed_once():
    # Two tasks leave n1; the only other node has room for exactly one more (CPU).
    svc = Service("s", "svc", reserve_nano_cpus=10**9)
    ns = (Node("id1", "n1", nano_cpus=8 * 10**9), Node("id2", "n2", nano_cpus=2 * 10**9))
    tasks = (Task("t1", "s", "svc", 1, node_id="id1", state="running"),
             Task("t2", "s", "svc", 2, node_id="id1", state="running"),
             Task("t3", "s", "svc", 3, node_id="id2", state="running"))
    snap = Snapshot(nodes=ns, services=(svc,), tasks=tasks)
    homeless = tasks_without_home(snap, frozenset({"id1"}))
    assert len(homeless) == 1
    task, why = homeless[0]
    assert task.swarm_id in {"t1", "t2"}
    assert "not enough CPU (n2)" in why and "being drained (n1)" in why
    # With a third node there is room for both.
    roomy = replace(snap, nodes=ns + (Node("id3", "n3"),))
    assert tasks_without_home(roomy, frozenset({"id1"})) == []


def test_tasks_without_home_respects_max_per_node_and_ignores_global():
    api = Service("a", "api", max_per_node=1)
    mon = Service("g", "mon", mode="global")
    ns = tuple(nodes(3))
    tasks = (Task("a1", "a", "api", 1, node_id="id1", state="running"),
             Task("a2", "a", "api", 2, node_id="id2", state="running"),
             Task("a3", "a", "api", 3, node_id="id3", state="running"),
             Task("g1", "g", "mon", 0, node_id="id1", state="running"))
    snap = Snapshot(nodes=ns, services=(api, mon), tasks=tasks)
    homeless = tasks_without_home(snap, frozenset({"id1"}))
    assert [t.swarm_id for t, _ in homeless] == ["a1"]
    assert "max 1 per node (n2, n3)" in homeless[0][1]
    # Leaving two nodes at once: both api tasks there compete for n3's single slot.
    api2 = replace(api, max_per_node=2)
    snap2 = replace(snap, services=(api2, mon))
    homeless2 = tasks_without_home(snap2, frozenset({"id1", "id2"}))
    assert [t.swarm_id for t, _ in homeless2] == ["a2"]
