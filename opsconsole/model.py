"""The cluster as frozen data: entities with stable ids, one snapshot, a diff.

No I/O and no textual here: providers build these, the UI and the operations
read them. Every entity is a frozen dataclass, so two snapshots compare by
value and a diff is a dictionary walk.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cached_property
from typing import TypeVar

# Text values, not enums: they come straight from remote systems and are shown
# as they are; the constants below name the ones the console reasons about.
ACTIVE, PAUSE, DRAIN = "active", "pause", "drain"
AVAILABILITIES = (ACTIVE, PAUSE, DRAIN)
READY, DOWN = "ready", "down"
MANAGER, WORKER = "manager", "worker"
RUNNING = "running"
# Task states after which a task never runs again.
TERMINAL_TASK_STATES = frozenset(
    {"complete", "shutdown", "failed", "rejected", "remove", "orphaned"})
# Task states of a task that is (still) running or about to: not yet gone.
LIVE_TASK_STATES = frozenset({"assigned", "accepted", "preparing", "ready", "starting", RUNNING})
# A service's UpdateStatus.State once Swarm is done ("" = never updated).
SETTLED_UPDATE_STATES = frozenset({"", "completed", "rollback_completed"})
# Proxy server statuses as HAProxy reports them (first word of `status`).
UP, NOLB, MAINT = "UP", "NOLB", "MAINT"
# What an operator set on a proxy server (ProxyServer.admin).
SERVER_READY, SERVER_DRAIN, SERVER_MAINT = "ready", "drain", "maint"


# -- stable ids: built here only ----------------------------------------------------
def host_id(name: str) -> str:
    return f"host:{name}"


def vm_id(name: str) -> str:
    return f"vm:{name}"


def node_id(swarm_id: str) -> str:
    return f"node:{swarm_id}"


def service_id(swarm_id: str) -> str:
    return f"service:{swarm_id}"


def task_id(swarm_id: str) -> str:
    return f"task:{swarm_id}"


def backend_id(name: str) -> str:
    return f"backend:{name}"


def proxy_server_id(backend: str, server: str) -> str:
    """A proxy server's id; `backend` may be "backend/server" with `server` empty."""
    return f"proxy:{backend}/{server}" if server else f"proxy:{backend}"


def proxy_session_id(session: str) -> str:
    return f"session:{session}"


@dataclass(frozen=True)
class Host:
    name: str
    address: str = ""
    state: str = "up"               # up | rebooting | unreachable | unknown
    os_build: str = ""
    uptime_s: int = 0
    pending_reboot: bool = False
    message: str = ""               # why a host is unreachable, etc.

    @property
    def id(self) -> str:
        return host_id(self.name)


@dataclass(frozen=True)
class VM:
    name: str
    host: str                       # Host.name
    state: str = "running"          # running | off | stopping | starting | saved | unknown
    address: str = ""
    node_hostname: str = ""         # Swarm hostname this VM runs as
    uptime_s: int = 0
    cpu_pct: int = 0
    memory_bytes: int = 0

    @property
    def id(self) -> str:
        return vm_id(self.name)


@dataclass(frozen=True)
class Node:
    swarm_id: str
    hostname: str
    role: str = WORKER
    availability: str = ACTIVE
    state: str = READY              # ready | down | unknown | disconnected
    leader: bool = False
    reachability: str = ""          # managers: reachable | unreachable
    address: str = ""
    engine_version: str = ""
    nano_cpus: int = 0
    memory_bytes: int = 0
    labels: tuple[tuple[str, str], ...] = ()
    message: str = ""

    @property
    def id(self) -> str:
        return node_id(self.swarm_id)

    @property
    def schedulable(self) -> bool:
        return self.state == READY and self.availability == ACTIVE

    @property
    def votes(self) -> bool:
        """A manager counted in Raft now: Ready, and not reported unreachable (a manager
        back from a reboot is Ready a moment before Raft counts it again)."""
        return self.role == MANAGER and self.state == READY and self.reachability != "unreachable"


@dataclass(frozen=True)
class Service:
    swarm_id: str
    name: str
    mode: str = "replicated"        # replicated | global
    replicas: int = 1               # desired, replicated mode only
    image: str = ""
    constraints: tuple[str, ...] = ()
    max_per_node: int = 0           # 0 = no limit
    reserve_nano_cpus: int = 0
    reserve_memory_bytes: int = 0
    update_state: str = ""          # updating | completed | paused | rollback_* | ""
    labels: tuple[tuple[str, str], ...] = ()

    def label(self, key: str) -> str:
        return next((v for k, v in self.labels if k == key), "")
    update_started: str = ""        # when the last update began (Swarm's UpdateStatus.StartedAt)
    update_message: str = ""        # what Swarm says of it ("update paused due to failure...")

    @property
    def id(self) -> str:
        return service_id(self.swarm_id)


@dataclass(frozen=True)
class Task:
    swarm_id: str
    service_id: str                 # Service.swarm_id
    service_name: str
    slot: int = 0                   # 0 for global tasks
    node_id: str = ""               # Node.swarm_id, "" while unassigned
    state: str = "new"
    desired_state: str = RUNNING
    error: str = ""
    message: str = ""

    @property
    def id(self) -> str:
        return task_id(self.swarm_id)

    @property
    def wanted(self) -> bool:
        """Swarm still wants this task to run (it counts toward the service)."""
        return self.desired_state == RUNNING

    @property
    def name(self) -> str:
        return f"{self.service_name}.{self.slot or self.node_id[:12]}"


@dataclass(frozen=True)
class Backend:
    name: str
    status: str = UP

    @property
    def id(self) -> str:
        return backend_id(self.name)


@dataclass(frozen=True)
class ProxyServer:
    backend: str
    name: str
    status: str = UP                # UP | DOWN | DRAIN | MAINT | NOLB | "UP 1/3" ...
    admin: str = SERVER_READY       # SERVER_READY | SERVER_DRAIN | SERVER_MAINT
    weight: int = 1
    cur_sessions: int = 0
    total_sessions: int = 0
    address: str = ""
    check_status: str = ""
    vm: str = ""                    # VM.name it fronts, when known

    @property
    def id(self) -> str:
        return proxy_server_id(self.backend, self.name)


@dataclass(frozen=True)
class ProxySession:
    session_id: str
    backend: str
    server: str
    started_at: float = 0.0         # epoch seconds; stable across reads, unlike an age
    client: str = ""

    @property
    def id(self) -> str:
        return proxy_session_id(self.session_id)


# Where a problem comes from: the part of the world that could not be read.
SWARM, PROXY, HYPERV, LOCK, SHELL = "swarm", "proxy", "hyper-v", "lock", "ssh"


@dataclass(frozen=True)
class Problem:
    """Something that could not be read (or was read malformed), and since when.

    Decisions never treat a source with a problem as "ok": its data is old.
    """
    source: str                     # SWARM | PROXY | HYPERV | LOCK | SHELL
    message: str
    since: float = 0.0              # epoch seconds of the first failure in a row (0: now)
    entity: str = ""                # the entity id, when it is about one entity

    def __str__(self) -> str:
        return f"{self.source}: {self.message}"


@dataclass(frozen=True)
class Lock:
    """The one-operation-at-a-time lock, kept in the Swarm itself."""
    holder: str                     # user@host from where
    op: str                         # operation id
    title: str                      # "drain vm-03"
    since: float                    # epoch seconds
    host: str = ""                  # the machine and process of the console running it,
    pid: int = 0
    beat: float = 0.0               # and its last heartbeat (epoch seconds)

    def age(self, now: float) -> float:
        return max(0.0, now - self.since)


Entity = Host | VM | Node | Service | Task | Backend | ProxyServer | ProxySession
E = TypeVar("E", Host, VM, Node, Service, Task, Backend, ProxyServer, ProxySession)

# Tree roots: fixed ids for the groups that have no entity of their own.
ROOT_HOSTS, ROOT_UNPLACED, ROOT_SERVICES, ROOT_PROXY = (
    "group:hosts", "group:unplaced", "group:services", "group:proxy")


@dataclass(frozen=True)
class Snapshot:
    hosts: tuple[Host, ...] = ()
    vms: tuple[VM, ...] = ()
    nodes: tuple[Node, ...] = ()
    services: tuple[Service, ...] = ()
    tasks: tuple[Task, ...] = ()
    backends: tuple[Backend, ...] = ()
    servers: tuple[ProxyServer, ...] = ()
    sessions: tuple[ProxySession, ...] = ()
    taken_at: float = 0.0
    endpoint: str = ""              # which Swarm manager answered
    problems: tuple[Problem, ...] = ()  # what could not be read, and since when
    notices: tuple[str, ...] = ()   # what a provider did by itself (failover, re-applied state)
    lock: Lock | None = None        # who runs an operation on this cluster right now
    proxy_read_only: str = ""       # why the proxy cannot be changed, if so

    def unreadable(self, *sources: str) -> list[Problem]:
        """The problems of these sources (all when none named): their data is not current."""
        return [p for p in self.problems if not sources or p.source in sources]

    # -- lookup -------------------------------------------------------------
    @cached_property
    def by_id(self) -> dict[str, Entity]:
        return {e.id: e for e in self.entities()}

    def entities(self) -> Iterable[Entity]:
        for group in (self.hosts, self.vms, self.nodes, self.services,
                      self.tasks, self.backends, self.servers, self.sessions):
            yield from group

    def get(self, entity_id: str) -> Entity | None:
        return self.by_id.get(entity_id)

    def find(self, kind: type[E], entity_id: str) -> E | None:
        """The entity with this id if it is of `kind` (typed, for code that needs one)."""
        entity = self.by_id.get(entity_id)
        return entity if isinstance(entity, kind) else None

    def host(self, name: str) -> Host | None:
        return self.find(Host, host_id(name))

    def vm(self, name: str) -> VM | None:
        return self.find(VM, vm_id(name))

    def node(self, swarm_id: str) -> Node | None:
        """A node by its Swarm id (by hostname: node_named)."""
        return self.find(Node, node_id(swarm_id))

    def service(self, swarm_id: str) -> Service | None:
        return self.find(Service, service_id(swarm_id))

    def service_named(self, name: str) -> Service | None:
        return next((s for s in self.services if s.name == name), None)

    def server(self, backend: str, name: str = "") -> ProxyServer | None:
        """A proxy server by backend and name, or by "backend/server"."""
        return self.find(ProxyServer, proxy_server_id(backend, name))

    @cached_property
    def _node_by_hostname(self) -> dict[str, Node]:
        return {n.hostname: n for n in self.nodes}

    @cached_property
    def _vm_by_hostname(self) -> dict[str, VM]:
        return {(v.node_hostname or v.name): v for v in self.vms}

    @property
    def ready_ids(self) -> frozenset[str]:
        """Swarm ids of the nodes that are Ready now."""
        return self._ready_nodes

    @cached_property
    def _ready_nodes(self) -> frozenset[str]:
        return frozenset(n.swarm_id for n in self.nodes if n.state == READY)

    @cached_property
    def _tasks_by_node(self) -> dict[str, list[Task]]:
        out: dict[str, list[Task]] = {}
        for t in self.tasks:
            out.setdefault(t.node_id, []).append(t)
        return out

    @cached_property
    def _tasks_by_service(self) -> dict[str, list[Task]]:
        out: dict[str, list[Task]] = {}
        for t in self.tasks:
            out.setdefault(t.service_id, []).append(t)
        return out

    def node_of_vm(self, vm: VM) -> Node | None:
        return self._node_by_hostname.get(vm.node_hostname or vm.name)

    def vm_of_node(self, node: Node) -> VM | None:
        return self._vm_by_hostname.get(node.hostname)

    def node_named(self, name: str) -> Node | None:
        """A node by hostname, VM name, swarm id or entity id."""
        if name.startswith(node_id("")):
            name = name.removeprefix(node_id(""))
        node = self._node_by_hostname.get(name)
        if node is None:
            vm = self.vm(name)
            node = self.node_of_vm(vm) if vm else None
        if node is None:
            node = next((n for n in self.nodes if n.swarm_id == name), None)
        return node

    def tasks_on_node(self, node_id: str, wanted_only: bool = True) -> list[Task]:
        tasks = self._tasks_by_node.get(node_id, [])
        return [t for t in tasks if t.wanted] if wanted_only else list(tasks)

    def tasks_of_service(self, service_id: str) -> list[Task]:
        return list(self._tasks_by_service.get(service_id, []))

    @cached_property
    def _vms_by_host(self) -> dict[str, list[VM]]:
        out: dict[str, list[VM]] = {}
        for v in self.vms:
            out.setdefault(v.host, []).append(v)
        return out

    def vms_on_host(self, host: str) -> list[VM]:
        return list(self._vms_by_host.get(host, []))

    def tasks_on_host(self, host: str) -> list[Task]:
        out: list[Task] = []
        for vm in self._vms_by_host.get(host, []):
            node = self.node_of_vm(vm)
            if node:
                out.extend(self.tasks_on_node(node.swarm_id))
        return out

    @cached_property
    def _servers_by_vm(self) -> dict[str, list[ProxyServer]]:
        out: dict[str, list[ProxyServer]] = {}
        for s in self.servers:
            out.setdefault(s.vm, []).append(s)
        return out

    @cached_property
    def _sessions_by_server(self) -> dict[tuple[str, str], list[ProxySession]]:
        out: dict[tuple[str, str], list[ProxySession]] = {}
        for s in self.sessions:
            out.setdefault((s.backend, s.server), []).append(s)
        return out

    def servers_of_vm(self, vm_name: str) -> list[ProxyServer]:
        return list(self._servers_by_vm.get(vm_name, []))

    def sessions_of_server(self, server: ProxyServer) -> list[ProxySession]:
        return list(self._sessions_by_server.get((server.backend, server.name), []))

    # -- derived facts ------------------------------------------------------
    @property
    def managers(self) -> list[Node]:
        return [n for n in self.nodes if n.role == MANAGER]

    @property
    def quorum_tolerance(self) -> int:
        """How many more managers may be lost before Raft loses quorum."""
        return quorum_tolerance(len(self.managers), sum(1 for m in self.managers if m.votes))

    @cached_property
    def _convergence(self) -> dict[Service, tuple[int, int]]:
        return {}

    def convergence(self, service: Service) -> tuple[int, int]:
        """(running, desired) for a service; global: one per node it may run on."""
        known = self._convergence.get(service)
        if known is None:
            known = self._convergence[service] = self._count_convergence(service)
        return known

    def _count_convergence(self, service: Service) -> tuple[int, int]:
        tasks = self._tasks_by_service.get(service.swarm_id, [])
        # Swarm keeps a task "running" in its books on a node that went down: not running
        ready = self._ready_nodes
        running = sum(1 for t in tasks if t.wanted and t.state == RUNNING and t.node_id in ready)
        if service.mode == "global":
            # every ready, active node its constraints allow; a paused node keeps the
            # task it has but gets none new
            holding = {t.node_id for t in tasks if t.wanted}
            desired = sum(1 for n in self.nodes if n.state == READY and (
                n.availability == ACTIVE or (n.availability == PAUSE and n.swarm_id in holding))
                and all(constraint_holds(c, n) for c in service.constraints))
        elif service.mode.endswith("-job"):   # jobs run to completion: nothing to converge
            desired = running
        else:
            desired = service.replicas
        return running, desired

    def converged(self, service: Service) -> bool:
        return not self.unconverged(service)

    def unconverged(self, service: Service) -> str:
        """Why a service is not converged ("" when it is): running == desired, no update in
        progress (Swarm's UpdateStatus), no task starting or stopping."""
        running, desired = self.convergence(service)
        if running != desired:
            return f"{running}/{desired} running"
        if service.update_state not in SETTLED_UPDATE_STATES:
            return f"update {service.update_state}"
        # a task left on a node that is down stays "running" in Swarm's books for good
        ready = self._ready_nodes
        moving = [t for t in self._tasks_by_service.get(service.swarm_id, [])
                  if (t.wanted and t.state != RUNNING)
                  or (not t.wanted and t.state in LIVE_TASK_STATES and t.node_id in ready)]
        if moving:
            return f"{len(moving)} task(s) {moving[0].state}" + (
                "" if moving[0].wanted else " (stopping)")
        return ""

    @property
    def nodes_ready(self) -> int:
        return sum(1 for n in self.nodes if n.state == READY)

    @property
    def session_count(self) -> int:
        return sum(s.cur_sessions for s in self.servers)


def quorum_tolerance(managers: int, reachable: int | None = None) -> int:
    """Manager losses Raft survives: a majority of all managers must remain.

    With every manager up this is (N-1)//2; with some already down it is
    what is left of that margin (negative means quorum is already lost).
    """
    if reachable is None:
        reachable = managers
    majority = managers // 2 + 1
    return reachable - majority


def constraint_holds(constraint: str, node: Node) -> bool:
    """Swarm's `key==value` / `key!=value` placement constraints."""
    for op in ("==", "!="):
        if op in constraint:
            key, value = (part.strip() for part in constraint.split(op, 1))
            break
    else:
        return True  # Swarm rejects these at create time; nothing to judge
    actual = {
        "node.hostname": node.hostname,
        "node.role": node.role,
        "node.id": node.swarm_id,
    }.get(key)
    if actual is None and key.startswith("node.labels."):
        actual = dict(node.labels).get(key[len("node.labels."):])
    return (actual == value) == (op == "==")


@dataclass(frozen=True)
class Diff:
    added: dict[str, Entity] = field(default_factory=dict)
    changed: dict[str, Entity] = field(default_factory=dict)
    removed: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.added or self.changed or self.removed)


def diff(old: Snapshot, new: Snapshot) -> Diff:
    """What changed between two snapshots, by id. Moves count as changes."""
    before, after = old.by_id, new.by_id
    added = {k: v for k, v in after.items() if k not in before}
    # an entity a provider did not read again is the same object: no field to compare
    changed = {k: v for k, v in after.items()
               if k in before and before[k] is not v and before[k] != v}
    removed = tuple(k for k in before if k not in after)
    return Diff(added, changed, removed)
