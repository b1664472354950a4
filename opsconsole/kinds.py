"""One table of entity kinds: what the console does with each kind of entity.

Per kind: where its row hangs in the tree, its label, what hangs off it in the details
pane, which other rows show a count derived from it, its order among its siblings, whether
its row starts unfolded, whether it is shown in the tree and in `opsconsole status`, and the
Swarm node an operation on it means. The TUI (tree, details pane, node actions) and the
CLI's status tree read this table: a new kind of entity is one entry here.
"""
from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Generic, TypeVar

from .model import (
    MANAGER,
    READY,
    ROOT_HOSTS,
    ROOT_PROXY,
    ROOT_SERVICES,
    ROOT_UNPLACED,
    RUNNING,
    VM,
    Backend,
    Entity,
    Host,
    Node,
    ProxyServer,
    ProxySession,
    Service,
    Snapshot,
    Task,
    backend_id,
    host_id,
    node_id,
    proxy_server_id,
    service_id,
    vm_id,
)
from .present import (
    ACCENT,
    AVAILABILITY,
    BAD,
    HOST_ROLES,
    MUTED,
    OK,
    PLAIN,
    TASK_ROLES,
    VM_ROLES,
    WARN,
    Piece,
    proxy_role,
)

E = TypeVar("E", Host, VM, Node, Service, Task, Backend, ProxyServer, ProxySession)


@dataclass(frozen=True)
class Related:
    """What hangs off an entity, for the details pane: a tasks table, a sessions table, or
    lines of text."""
    title: str = ""
    tasks: tuple[tuple[Task, str], ...] | None = None     # (task, the node it is on)
    where: bool = True              # a "where" column (not when every task is on one node)
    sessions: tuple[ProxySession, ...] | None = None      # oldest first
    lines: tuple[str, ...] = ()
    history: str = ""               # an entity id whose session counts the pane draws


@lru_cache(maxsize=65536)
def natural(kind: str, name: str) -> tuple[Any, ...]:
    """Kind first, then the name with its numbers compared as numbers (vm-2 < vm-10)."""
    return (kind, tuple((0, int(p), "") if p.isdigit() else (1, 0, p)
                        for p in re.split(r"(\d+)", name)))


@dataclass(frozen=True)
class Kind(Generic[E]):
    type: type[E]
    name: str                                       # the id's prefix: "host", "vm", ...
    parent: Callable[[E, Snapshot], str]            # the row it hangs under (id or group)
    label: Callable[[E, Snapshot], list[Piece]]
    title: Callable[[E], str]                       # its name, for ordering and messages
    related: Callable[[E, Snapshot], Related | None] = lambda e, snap: None
    counts: Callable[[E], tuple[str, ...]] = lambda e: ()   # rows besides its ancestors
    # that show a count derived from it (they are relabelled when it changes)
    order: Callable[[E], tuple[Any, ...]] | None = None     # None: natural order of the title
    expanded: bool = False                          # its tree row starts unfolded
    shown: Callable[[E], bool] = lambda e: True     # a row in the tree
    in_status: bool = True                          # a row of `opsconsole status`
    node: Callable[[E, Snapshot], Node | None] = lambda e, snap: None   # what a node action
    # on it acts on


# -- labels ------------------------------------------------------------------------------
def _host_label(h: Host, snap: Snapshot) -> list[Piece]:
    vms = snap.vms_on_host(h.name)
    tasks = len(snap.tasks_on_host(h.name))
    return [("▣ ", ACCENT), (h.name, PLAIN), ("  ", PLAIN),
            (h.state, HOST_ROLES.get(h.state, WARN)),
            (f"  {len(vms)} VMs, {tasks} tasks", MUTED)]


def _vm_label(vm: VM, snap: Snapshot) -> list[Piece]:
    sessions = sum(s.cur_sessions for s in snap.servers_of_vm(vm.name))
    out = [("◆ ", ACCENT), (vm.name, PLAIN), ("  ", PLAIN),
           (vm.state, VM_ROLES.get(vm.state, WARN))]
    if snap.servers_of_vm(vm.name):
        out.append((f"  {sessions} sess", MUTED))
    if snap.node_of_vm(vm) is None:
        out.append(("  no swarm node", WARN))
    return out


def _node_label(n: Node, snap: Snapshot) -> list[Piece]:
    role = "★ leader" if n.leader else n.role
    avail_text, avail_role = AVAILABILITY.get(n.availability, (n.availability, WARN))
    return [("● " if n.state == READY else "○ ", OK if n.state == READY else BAD),
            (n.hostname, PLAIN), ("  ", PLAIN),
            (role, ACCENT if n.role == MANAGER else MUTED), ("  ", PLAIN),
            (n.state, OK if n.state == READY else BAD), ("  ", PLAIN),
            (avail_text, avail_role),
            (f"  {len(snap.tasks_on_node(n.swarm_id))} tasks", MUTED)]


def _task_label(t: Task, snap: Snapshot) -> list[Piece]:
    out = [("· ", MUTED), (t.name, PLAIN), ("  ", PLAIN), (t.state, TASK_ROLES.get(t.state, WARN))]
    if not t.wanted:
        out.append((f" → {t.desired_state}", MUTED))
    if t.error:
        out.append((f"  {t.error}", BAD))
    return out


def _service_label(s: Service, snap: Snapshot) -> list[Piece]:
    running, desired = snap.convergence(s)
    return [("≡ ", ACCENT), (s.name, PLAIN), ("  ", PLAIN),
            (f"{running}/{desired}", OK if snap.converged(s) else WARN),
            (f"  {s.mode}", MUTED)] + (
                [(f"  update {s.update_state}", WARN)]
                if s.update_state not in ("", "completed") else [])


def _backend_label(b: Backend, snap: Snapshot) -> list[Piece]:
    servers = [s for s in snap.servers if s.backend == b.name]
    up = sum(1 for s in servers if proxy_role(s.status) == OK)
    return [("⇄ ", ACCENT), (b.name, PLAIN), (f"  {up}/{len(servers)} up", OK if up else BAD),
            (f"  {sum(s.cur_sessions for s in servers)} sess", MUTED)]


def _server_label(s: ProxyServer, snap: Snapshot) -> list[Piece]:
    return [("▸ ", MUTED), (s.name, PLAIN), ("  ", PLAIN), (s.status, proxy_role(s.status)),
            (f"  {s.cur_sessions} sess", PLAIN if s.cur_sessions else MUTED),
            (f"  w{s.weight}", MUTED)]


def _session_label(s: ProxySession, snap: Snapshot) -> list[Piece]:
    return [("· ", MUTED), (s.client or s.session_id, MUTED)]


# -- what hangs off an entity ------------------------------------------------------------
def _host_related(h: Host, snap: Snapshot) -> Related:
    return Related(lines=tuple(f"{v.name}: {v.state}" for v in snap.vms_on_host(h.name)))


def _vm_related(vm: VM, snap: Snapshot) -> Related:
    node = snap.node_of_vm(vm)
    return Related(lines=(f"swarm node: {node.hostname if node else 'none'}", *(
        f"proxy: {s.backend}/{s.name} {s.status}, {s.cur_sessions} sessions"
        for s in snap.servers_of_vm(vm.name))))


def _node_related(n: Node, snap: Snapshot) -> Related:
    tasks = snap.tasks_on_node(n.swarm_id, wanted_only=False)
    return Related(f"tasks on {n.hostname} ({len(tasks)}, with history)",
                   tasks=tuple((t, n.hostname) for t in tasks), where=False)


def _service_related(s: Service, snap: Snapshot) -> Related:
    def where(t: Task) -> str:
        node = snap.node(t.node_id)
        return node.hostname if node else "unassigned"
    tasks = sorted(snap.tasks_of_service(s.swarm_id), key=lambda t: (where(t), t.slot))
    running, desired = snap.convergence(s)
    return Related(f"tasks by node: {running}/{desired} running",
                   tasks=tuple((t, where(t)) for t in tasks))


def _server_related(s: ProxyServer, snap: Snapshot) -> Related:
    sessions = sorted(snap.sessions_of_server(s), key=lambda x: x.started_at)
    return Related(f"{len(sessions)} sessions", sessions=tuple(sessions), history=s.id)


# -- the table ---------------------------------------------------------------------------
def _node_parent(n: Node, snap: Snapshot) -> str:
    vm = snap.vm_of_node(n)
    return vm.id if vm else ROOT_UNPLACED


def _vm_node(vm: VM, snap: Snapshot) -> Node | None:
    return snap.node_of_vm(vm)


def _server_node(s: ProxyServer, snap: Snapshot) -> Node | None:
    vm = snap.vm(s.vm) if s.vm else None
    return snap.node_of_vm(vm) if vm else None


KINDS: dict[type, Kind[Any]] = {k.type: k for k in (
    Kind(Host, "host", parent=lambda h, snap: ROOT_HOSTS, label=_host_label,
         title=lambda h: h.name, related=_host_related, expanded=True),
    Kind(VM, "vm", parent=lambda v, snap: host_id(v.host), label=_vm_label,
         title=lambda v: v.name, related=_vm_related, expanded=True, node=_vm_node),
    Kind(Node, "node", parent=_node_parent, label=_node_label,
         title=lambda n: n.hostname, related=_node_related, node=lambda n, snap: n),
    # an unassigned task hangs under its service; task history stays out of the tree (it
    # is in the details)
    Kind(Task, "task", parent=lambda t, snap: node_id(t.node_id) if t.node_id
         else service_id(t.service_id), label=_task_label, title=lambda t: t.name,
         counts=lambda t: (service_id(t.service_id),),
         shown=lambda t: t.wanted or t.state == RUNNING,
         node=lambda t, snap: snap.node(t.node_id) if t.node_id else None),
    Kind(Service, "service", parent=lambda s, snap: ROOT_SERVICES, label=_service_label,
         title=lambda s: s.name, related=_service_related),
    Kind(Backend, "backend", parent=lambda b, snap: ROOT_PROXY, label=_backend_label,
         title=lambda b: b.name, expanded=True),
    Kind(ProxyServer, "proxy", parent=lambda s, snap: backend_id(s.backend),
         label=_server_label, title=lambda s: s.name, related=_server_related,
         counts=lambda s: (vm_id(s.vm),) if s.vm else (), node=_server_node),
    # thousands of them: oldest first, and not in `opsconsole status`
    Kind(ProxySession, "session", parent=lambda s, snap: proxy_server_id(s.backend, s.server),
         label=_session_label, title=lambda s: s.client or s.session_id,
         order=lambda s: ("session", (s.started_at, s.id)), in_status=False),
)}


def kind_of(entity: Entity) -> Kind[Any]:
    kind = KINDS.get(type(entity))
    if kind is None:
        raise TypeError(f"not an entity: {entity!r}")
    return kind


def parent_id(snap: Snapshot, entity: Entity) -> str:
    """Where an entity hangs in the console's tree: a group id or another entity's id."""
    return kind_of(entity).parent(entity, snap)


def label(entity: Entity, snap: Snapshot) -> list[Piece]:
    return kind_of(entity).label(entity, snap)


def related(entity: Entity, snap: Snapshot) -> Related | None:
    return kind_of(entity).related(entity, snap)


def shown(entity: Entity) -> bool:
    return kind_of(entity).shown(entity)


def node_of(entity: Entity | None, snap: Snapshot) -> Node | None:
    """The Swarm node a node action on `entity` means: the node itself, or the node of the
    VM, task or proxy server."""
    return kind_of(entity).node(entity, snap) if entity is not None else None


def sort_key(snap: Snapshot, entity_id: str) -> tuple[Any, ...]:
    """An entity's place among its siblings (kind first, then natural order)."""
    entity = snap.by_id.get(entity_id)
    if entity is None:
        return natural(entity_id.partition(":")[0], entity_id)
    kind = kind_of(entity)
    return kind.order(entity) if kind.order else natural(kind.name,
                                                         kind.title(entity) or entity_id)
