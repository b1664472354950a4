"""kinds: the one table of entity kinds the tree, the details pane and `status` read."""
from __future__ import annotations

import typing

import pytest
from test_model import world

from opsconsole import kinds
from opsconsole.kinds import parent_id
from opsconsole.model import (
    ROOT_HOSTS,
    ROOT_PROXY,
    ROOT_SERVICES,
    ROOT_UNPLACED,
    Entity,
    node_id,
    proxy_server_id,
    vm_id,
)


def test_parent_id_for_every_kind():
    snap = world()
    g = snap.get
    assert parent_id(snap, g("host:hv-01")) == ROOT_HOSTS
    assert parent_id(snap, g("vm:vm-c")) == "host:hv-02"
    assert parent_id(snap, g("node:id-a")) == "vm:vm-a"
    assert parent_id(snap, g("node:id-x")) == ROOT_UNPLACED
    assert parent_id(snap, g("task:t1")) == "node:id-a"
    assert parent_id(snap, g("task:t3")) == "service:s-web"     # unassigned: under its service
    assert parent_id(snap, g("service:s-web")) == ROOT_SERVICES
    assert parent_id(snap, g("backend:be")) == ROOT_PROXY
    assert parent_id(snap, g("proxy:be/srv-c")) == "backend:be"
    assert parent_id(snap, g("session:0x3")) == "proxy:be/srv-c"
    # Every parent of an entity is either a group root or an entity of the snapshot.
    roots = {ROOT_HOSTS, ROOT_UNPLACED, ROOT_SERVICES, ROOT_PROXY}
    for e in snap.entities():
        p = parent_id(snap, e)
        assert p in roots or snap.get(p) is not None, (e.id, p)
    with pytest.raises(TypeError):
        parent_id(snap, "not an entity")  # type: ignore[arg-type]


def test_every_kind_of_entity_has_one_entry_named_as_its_ids():
    assert set(kinds.KINDS) == set(typing.get_args(Entity))
    for e in world().entities():
        assert e.id.startswith(kinds.kind_of(e).name + ":"), e.id


def test_the_node_a_node_action_means():
    snap = world()
    a = snap.node("id-a")
    assert kinds.node_of(snap.get(node_id("id-a")), snap) is a
    assert kinds.node_of(snap.get(vm_id("vm-a")), snap) is a
    assert kinds.node_of(snap.get("task:t1"), snap) is a
    assert kinds.node_of(snap.get(proxy_server_id("be", "srv-a")), snap) is a
    assert kinds.node_of(snap.get("task:t3"), snap) is None           # unassigned
    assert kinds.node_of(snap.get("host:hv-01"), snap) is None
    assert kinds.node_of(None, snap) is None


def test_related_rows_and_what_a_change_relabels():
    snap = world()
    assert kinds.related(snap.get(vm_id("vm-a")), snap).lines == (
        "swarm node: node-a", "proxy: be/srv-a UP, 2 sessions")
    node = kinds.related(snap.get(node_id("id-a")), snap)
    assert {t.swarm_id for t, where in node.tasks} == {"t1", "t4", "m1"}
    assert {where for _, where in node.tasks} == {"node-a"}
    server = kinds.related(snap.get(proxy_server_id("be", "srv-a")), snap)
    assert server.title == "2 sessions" and len(server.sessions) == 2
    assert kinds.related(snap.get("backend:be"), snap) is None
    task = snap.get("task:t1")
    assert kinds.kind_of(task).counts(task) == ("service:s-web",)
    assert kinds.kind_of(snap.get("session:0x1")).in_status is False
    with pytest.raises(TypeError):
        kinds.kind_of("not an entity")  # type: ignore[arg-type]
