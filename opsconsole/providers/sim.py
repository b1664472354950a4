"""An in-process simulated cluster: Swarm, Hyper-V, HAProxy and SSH in one.

It is the console's default when no inventory is given, the demo, and the
ground the unit tests stand on. It behaves like the real systems where the
console cares: drained nodes lose their tasks after a realistic delay, the
scheduler spreads them respecting constraints and max-replicas-per-node (and
leaves them pending when nothing fits), a stopped VM's node goes Down,
sessions arrive, stick to a server and end, a server in drain gets no new
ones.

Time is simulated: `speed` multiplies the clock, and the state advances in
fixed ticks, with every random draw from one seeded generator. The same
seed and the same clock readings give the same cluster, so tests can pass a
manual clock and rely on it.
"""
from __future__ import annotations

import asyncio
import dataclasses
import functools
import heapq
import itertools
import random
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import replace
from typing import Any

from ..model import (
    AVAILABILITIES,
    DOWN,
    DRAIN,
    HYPERV,
    LIVE_TASK_STATES,
    MANAGER,
    PROXY,
    READY,
    RUNNING,
    SHELL,
    SWARM,
    VM,
    WORKER,
    Backend,
    Host,
    Lock,
    Node,
    ProxyServer,
    ProxySession,
    Service,
    Snapshot,
    Task,
)
from ..placement import Load, best_node, constraint_holds, why_unplaceable
from .base import (
    LOG_TAIL,
    OUTPUT_CAP,
    LineSink,
    LockHeld,
    LogSource,
    ProviderError,
    Providers,
    QuorumRefused,
    capped_lines,
)

TICK = 0.25                 # simulated seconds per step
GIB = 1 << 30
EPOCH = 1_790_000_000.0     # a fixed wall-clock origin keeps hand-clocked sims reproducible
WARM_UP = 60.0              # simulated seconds run before the first read


def _front(snap: Snapshot, backend: str) -> str:
    """The service that serves `backend`: the one running on the node of every UP server
    of it with the fewest tasks elsewhere ("" when none does: any task will do)."""
    hostnames = {v.name: v.node_hostname or v.name for v in snap.vms}
    nodes = {n.hostname: n.swarm_id for n in snap.nodes}
    up = {nodes.get(hostnames.get(s.vm, s.vm)) for s in snap.servers
          if s.backend == backend and s.status.split()[:1] == ["UP"]} - {None}
    best: tuple[int, str] | None = None
    for svc in snap.services:
        on = {t.node_id for t in snap.tasks_of_service(svc.swarm_id)
              if t.wanted and t.state == RUNNING}
        if up and up <= on and (best is None or len(on - up) < best[0]):
            best = (len(on - up), svc.name)
    return best[1] if best else ""


class ManualClock:
    """A clock tests move by hand."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class SimCluster:
    """The whole simulated world; `providers()` exposes it as the four interfaces."""

    def __init__(self, seed: int = 1, speed: float = 1.0, scale: int = 0,
                 clock: Callable[[], float] = time.monotonic,
                 session_rate: float = 0.2, session_mean_s: float = 20.0,
                 world: Snapshot | None = None) -> None:
        self.rng = random.Random(seed)
        self.speed, self.clock = speed, clock
        self._origin = clock()
        self.now = 0.0                      # simulated seconds since start
        # session start times: on the wall clock when the sim runs in real time (so the
        # console's ages are right), on a fixed origin when a test moves the clock
        self.epoch = time.time() - WARM_UP / speed if clock is time.monotonic else EPOCH
        self._events: list[tuple[float, int, Callable[[], object]]] = []
        self._seq = itertools.count()
        self._ids = itertools.count(1)
        self.session_mean_s = session_mean_s
        self.hosts: dict[str, Host] = {}
        self.vms: dict[str, VM] = {}
        self.nodes: dict[str, Node] = {}    # by swarm id
        self.services: dict[str, Service] = {}
        self.tasks: dict[str, Task] = {}
        self.servers: dict[tuple[str, str], ProxyServer] = {}
        self.admin: dict[tuple[str, str], str] = {}   # proxy server -> ready|drain|maint
        self.sessions: dict[str, ProxySession] = {}
        self.sessions_moved = 0             # sessions whose server vanished under them
        self._rr = itertools.count()
        self._ready: dict[str, list[ProxyServer]] = {}   # backend -> servers taking sessions
        self.changed = asyncio.Event()
        self.read_only_proxy = ""
        self.proxy_pid, self.proxy_started = 1000, 0.0   # HAProxy's process, as show info says
        self.lock: Lock | None = None
        self.boots: dict[str, int] = {}             # VM -> how many times it booted
        self.upgrade_on_boot: set[str] = set()      # VMs whose engine changes at next boot
        self.exit_codes: dict[str, int] = {}        # VM -> what its commands exit with
        self.stalled_agents: set[str] = set()       # VMs whose node stays Down after the next
                                                    # boot until their engine restarts
        self.engine_restarts: dict[str, int] = {}   # VM -> engine restarts asked over SSH
        self.unreachable: dict[str, str] = {}       # part (swarm, proxy, hyper-v, ssh) -> the
                                                    # error it answers with: a fault injected
        self.quorum_refusals = 0                    # demotions to refuse, as Swarm does for a
                                                    # while after a manager came back
        self.previous_specs: dict[str, Service] = {}    # service -> its spec before the
                                                        # last update (Swarm's PreviousSpec)
        self.raw_logs: dict[str, list[bytes]] = {}  # service/task id -> bytes its log
                                                    # holds besides the made-up lines
        self.fronts: dict[str, str] = {}            # backend -> the service that serves it
                                                    # ("": any running task on its node)
        if world is None:
            self._build(scale)
            self.session_rate = session_rate * len(self.servers)
        else:   # a twin: sessions keep arriving at the rate that keeps today's count
            self._copy(world)
            self.session_rate = len(self.sessions) / session_mean_s
        self._schedule(self._next_arrival_delay(), self._session_arrives)
        self._run_until(WARM_UP)   # open as a cluster that has been up a while
        self._origin = clock() - WARM_UP / speed

    # -- topology -------------------------------------------------------------
    def _build(self, scale: int) -> None:
        n_vms = max(6, scale)
        n_hosts = max(2, (n_vms + 2) // 3)
        manager_count = 2 if n_vms <= 6 else min(5, n_hosts) | 1
        managers = {1 + 3 * i for i in range(manager_count)}   # first VM of a host
        for h in range(1, n_hosts + 1):
            name = f"hv-{h:02d}"
            self.hosts[name] = Host(name, address=f"{name}.lab", os_build="20348.2849",
                                    uptime_s=86400 * 12)
        width = max(2, len(str(n_vms)))
        for i in range(1, n_vms + 1):
            vm_name = f"vm-{i:0{width}d}"
            host = f"hv-{(i - 1) // 3 + 1:02d}"
            self.vms[vm_name] = VM(vm_name, host, address=f"192.0.2.{i % 250 + 1}",
                                   node_hostname=vm_name, uptime_s=86400 * 5, cpu_pct=12,
                                   memory_bytes=8 * GIB)
            labels = (("storage", "ssd"),) if i % 3 == 0 else ()
            node = Node(swarm_id=self._new_id(), hostname=vm_name,
                        role=MANAGER if i in managers else WORKER,
                        leader=(i == 1), reachability="reachable" if i in managers else "",
                        address=self.vms[vm_name].address, engine_version="20.10.24",
                        nano_cpus=4 * 10**9, memory_bytes=8 * GIB, labels=labels)
            self.nodes[node.swarm_id] = node
        if scale:   # a web front on every VM, the rest in services of 100 tasks
            self._add_service("portail", 0, mode="global")
            per_service = 100
            for s in range(max(1, (19 * n_vms) // per_service)):
                self._add_service(f"app-{s:03d}", per_service)
        else:
            self._add_service("portail", 0, mode="global", reserve_cpu=0.5, reserve_mem=GIB)
            self._add_service("api", 4, max_per_node=2, reserve_cpu=0.5, reserve_mem=GIB)
            self._add_service("worker", 3)
            self._add_service("reports", 1, constraints=("node.labels.storage==ssd",))
            self._add_service("db", 1, constraints=("node.role==manager",),
                              reserve_mem=2 * GIB)
            self._add_service("node-exporter", 0, mode="global")
        self._initial_placement()
        self.fronts["portail"] = "portail"
        for vm in self.vms.values():
            key = ("portail", vm.name)
            self.servers[key] = ProxyServer("portail", vm.name, address=f"{vm.address}:8080",
                                            check_status="L7OK", vm=vm.name)
            self.admin[key] = "ready"
        self._refresh_servers()

    def _add_service(self, name: str, replicas: int, mode: str = "replicated",
                     max_per_node: int = 0, constraints: tuple[str, ...] = (),
                     reserve_cpu: float = 0, reserve_mem: int = 0) -> None:
        sid = self._new_id()
        self.services[sid] = Service(sid, name, mode=mode, replicas=replicas,
                                     image=f"registry.lab/{name}:1.4.2",
                                     constraints=constraints, max_per_node=max_per_node,
                                     reserve_nano_cpus=int(reserve_cpu * 1e9),
                                     reserve_memory_bytes=reserve_mem,
                                     update_state="completed")

    def _initial_placement(self) -> None:
        """Spread each service round-robin over the nodes it may use (fast at scale)."""
        nodes = sorted(self.nodes.values(), key=lambda n: n.hostname)
        for k, svc in enumerate(self.services.values()):
            fits = [n for n in nodes if all(constraint_holds(c, n) for c in svc.constraints)]
            if svc.mode == "global":
                for n in fits:
                    self._new_task(svc, 0, n.swarm_id, state=RUNNING)
                continue
            offset = (k * 7) % len(fits) if fits else 0
            fits = fits[offset:] + fits[:offset]
            cap = len(fits) * svc.max_per_node if svc.max_per_node else svc.replicas
            for slot in range(1, svc.replicas + 1):
                if slot <= cap and fits:
                    self._new_task(svc, slot, fits[(slot - 1) % len(fits)].swarm_id, state=RUNNING)
                else:
                    self._new_task(svc, slot, "", state="pending")

    def _copy(self, snap: Snapshot) -> None:
        """The topology and state of a live snapshot, as a twin to rehearse on: what runs
        goes on running, what was pending is placed by the twin's scheduler."""
        self.hosts = {h.name: replace(h, state="up" if h.state == "unknown" else h.state)
                      for h in snap.hosts}
        self.vms = {v.name: replace(v, state=RUNNING if v.state == "unknown" else v.state)
                    for v in snap.vms}
        self.nodes = {n.swarm_id: n for n in snap.nodes}
        self.services = {s.swarm_id: s for s in snap.services}
        self.tasks = {t.swarm_id: replace(t, state=RUNNING) if t.node_id and t.state in
                      LIVE_TASK_STATES else t for t in snap.tasks if t.wanted}
        self.servers = {(s.backend, s.name): s for s in snap.servers}
        self.admin = {(s.backend, s.name): s.admin for s in snap.servers}
        self.sessions = {s.session_id: s for s in snap.sessions}
        for sid in self.sessions:
            self._schedule(self.rng.expovariate(1 / self.session_mean_s),
                           functools.partial(self.sessions.pop, sid, None))
        self.fronts = {b: _front(snap, b) for b in {s.backend for s in snap.servers}}
        self._refresh_servers()

    # -- machinery --------------------------------------------------------------
    def _new_id(self) -> str:
        return f"{self.rng.getrandbits(100):025x}"

    def _schedule(self, delay: float, action: Callable[[], object]) -> None:
        heapq.heappush(self._events, (self.now + delay, next(self._seq), action))

    def _delay(self, low: float, high: float) -> float:
        return round(self.rng.uniform(low, high), 2)

    def advance(self) -> None:
        """Bring the simulated world up to the clock, in fixed ticks."""
        self._run_until((self.clock() - self._origin) * self.speed)

    def _run_until(self, target: float) -> None:
        busy = False
        while self.now + TICK <= target:
            tick_end = self.now + TICK
            while self._events and self._events[0][0] <= tick_end:
                at, _, action = heapq.heappop(self._events)
                self.now = max(self.now, at)   # what it schedules counts from its own time
                action()
                busy = True
            self.now = tick_end
            busy = self._reschedule_lost() or busy
            busy = self._place_pending() or busy
        if busy:
            self._refresh_servers()
            self.changed.set()

    def _new_task(self, svc: Service, slot: int, node_id: str, state: str = "pending") -> Task:
        task = Task(self._new_id(), svc.swarm_id, svc.name, slot=slot, node_id=node_id,
                    state=state)
        self.tasks[task.swarm_id] = task
        if state != RUNNING and node_id:
            self._start(task)
        return task

    def _start(self, task: Task) -> None:
        """Assigned -> preparing -> starting -> running, over a few seconds."""
        tid = task.swarm_id
        self.tasks[tid] = replace(task, state="assigned", error="", message="")
        for state, delay in (("preparing", self._delay(0.3, 0.8)),
                             ("starting", self._delay(1.0, 2.0)),
                             (RUNNING, self._delay(2.0, 4.0))):
            self._schedule(delay, functools.partial(self._set_task_state, tid, state))

    def _set_task_state(self, tid: str, state: str) -> None:
        task = self.tasks.get(tid)
        if task is None or not task.wanted:
            return
        node = self.nodes.get(task.node_id)
        if node is None or node.state != READY:
            return
        self.tasks[tid] = replace(task, state=state)

    def _stop_task(self, task: Task, replace_it: bool, desired: str = "shutdown") -> None:
        """Desired shutdown (or remove, scaled away) now, actually stopped after a grace
        period."""
        tid = task.swarm_id
        self.tasks[tid] = replace(task, desired_state=desired)
        node_up = self.nodes[task.node_id].state == READY if task.node_id else False

        def stopped() -> None:
            if tid in self.tasks and (not node_up or self.nodes[task.node_id].state == READY):
                self.tasks[tid] = replace(self.tasks[tid], state="shutdown")
            self._schedule(30.0, lambda: self.tasks.pop(tid, None))   # task history
        self._schedule(self._delay(0.5, 2.0) if node_up else 0.0, stopped)
        svc = self.services.get(task.service_id)
        if replace_it and svc and svc.mode == "replicated":
            self._new_task(svc, task.slot, "")

    def _load(self) -> Load:
        load = Load()
        for t in self.tasks.values():
            if t.wanted and t.node_id:
                load.add(t.node_id, self.services[t.service_id])
        return load

    def _place_pending(self) -> bool:
        if not self._has_quorum():
            return False
        pending = [t for t in self.tasks.values() if t.wanted and not t.node_id]
        missing_global = self._missing_global()
        if not pending and not missing_global:
            return False
        load, nodes = self._load(), list(self.nodes.values())
        for task in sorted(pending, key=lambda t: (t.service_name, t.slot)):
            svc = self.services[task.service_id]
            node = best_node(nodes, svc, load)
            if node is None:
                why = why_unplaceable(nodes, svc, load)
                if task.error != why:
                    self.tasks[task.swarm_id] = replace(task, state="pending", error=why)
                continue
            load.add(node.swarm_id, svc)
            self._start(replace(task, node_id=node.swarm_id))
        for svc, node in missing_global:
            self._new_task(svc, 0, node.swarm_id, state="new")
        return True

    def _missing_global(self) -> list[tuple[Service, Node]]:
        out = []
        for svc in self.services.values():
            if svc.mode != "global":
                continue
            have = {t.node_id for t in self.tasks.values()
                    if t.service_id == svc.swarm_id and t.wanted}
            out += [(svc, n) for n in self.nodes.values()
                    if n.schedulable and n.swarm_id not in have
                    and all(constraint_holds(c, n) for c in svc.constraints)]
        return out

    def _node_of_vm(self, vm: str) -> Node | None:
        hostname = self.vms[vm].node_hostname or vm
        return next((n for n in self.nodes.values() if n.hostname == hostname), None)

    # -- swarm behaviour ----------------------------------------------------------
    def _evict(self, node_id: str, global_too: bool) -> None:
        for task in list(self.tasks.values()):
            if task.node_id == node_id and task.wanted:
                svc = self.services[task.service_id]
                if svc.mode == "global" and not global_too:
                    continue
                self._stop_task(task, replace_it=True)

    def _has_quorum(self) -> bool:
        managers = [n for n in self.nodes.values() if n.role == MANAGER]
        return sum(n.state == READY for n in managers) >= len(managers) // 2 + 1

    def _reschedule_lost(self) -> bool:
        """Replicated tasks left on nodes that went down get replacements, as Swarm's
        orchestrator does: only while Raft has a leader (without quorum nothing moves)."""
        down = {i for i, n in self.nodes.items() if n.state != READY}
        if not down or not self._has_quorum():
            return False
        lost = [t for t in self.tasks.values() if t.wanted and t.node_id in down
                and self.services[t.service_id].mode == "replicated"]
        for task in lost:
            self._stop_task(task, replace_it=True)
        return bool(lost)

    def _need_quorum(self) -> None:
        """Like Raft: without a majority of managers up, the swarm takes no writes."""
        if not self._has_quorum():
            raise ProviderError("rpc error: the swarm does not have a leader "
                                "(quorum lost: too few managers are up)")

    def set_availability(self, node_id: str, availability: str) -> None:
        self._need_quorum()
        node = self._node(node_id)
        if availability not in AVAILABILITIES:
            raise ProviderError(f"unknown availability {availability!r}")
        self.nodes[node_id] = replace(node, availability=availability)
        if availability == DRAIN:
            self._evict(node_id, global_too=True)
        self.changed.set()

    def set_role(self, node_id: str, role: str) -> None:
        self._need_quorum()
        if role != MANAGER and self.quorum_refusals > 0:
            self.quorum_refusals -= 1
            raise QuorumRefused("rpc error: code = FailedPrecondition desc = can't remove member "
                                "from the raft: this would result in a loss of quorum")
        node = self._node(node_id)
        self.nodes[node_id] = replace(node, role=role,
                                      reachability="reachable" if role == MANAGER else "")
        self.changed.set()

    def rebalance(self, service_id: str) -> None:
        """`service update --force`: replace each task, one at a time, as Swarm's update
        does (UpdateStatus updating, then completed); the scheduler spreads them."""
        self._need_quorum()
        svc = self.services.get(service_id)
        if svc is None:
            raise ProviderError(f"no such service {service_id}")
        tasks = [t for t in self.tasks.values() if t.service_id == service_id and t.wanted]
        self.services[service_id] = replace(svc, update_state="updating",
                                            update_started=self._stamp())
        for i, task in enumerate(tasks):
            self._schedule(i * 2.0, functools.partial(self._replace, task.swarm_id))
        self._schedule(len(tasks) * 2.0 + 1.0, lambda: self._update_done(service_id))
        self.changed.set()

    def _replace(self, task_id: str) -> None:
        task = self.tasks.get(task_id)
        if task is not None and task.wanted:    # not already gone or replaced (a node went
            self._stop_task(task, replace_it=True)     # down, an update replaced it)

    def _update_done(self, service_id: str) -> None:
        if service_id in self.services:
            self.services[service_id] = replace(self.services[service_id],
                                                update_state="completed")

    # -- service actions (kept apart from the scheduler: small methods of their own) -----
    def _stamp(self) -> str:
        """An UpdateStatus.StartedAt: the simulated wall clock, unique per update."""
        at = self.epoch + self.now / self.speed
        return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(at)) + \
            f".{next(self._seq):09d}Z"

    def _service(self, service_id: str) -> Service:
        self._need_quorum()
        svc = self.services.get(service_id)
        if svc is None:
            raise ProviderError(f"service {service_id} not found")
        return svc

    def scale_service(self, service_id: str, replicas: int) -> None:
        """`docker service scale`, as Swarm's replicated orchestrator does it (measured in
        the lab, see README "Drains that never lose a replica"): up, new tasks in free slots;
        down, it keeps running tasks before the others and, among them, the first copies on
        each node; a task not yet assigned to a node goes first."""
        self._need_quorum()
        svc = self._service(service_id)
        if svc.mode != "replicated":
            raise ProviderError(f"service {svc.name} is {svc.mode}: only replicated services "
                                "can be scaled")
        if replicas < 0:
            raise ProviderError(f"replicas must be 0 or more, not {replicas}")
        self.previous_specs[service_id] = svc
        self.services[service_id] = replace(svc, replicas=replicas)
        slots = [t for t in self.tasks.values() if t.service_id == service_id and t.wanted]
        used = {t.slot for t in slots}
        free = (n for n in itertools.count(1) if n not in used)
        for _ in range(replicas - len(slots)):
            self._new_task(self.services[service_id], next(free), "")
        for task in removed_on_scale_down(slots, replicas):
            self._stop_task(task, replace_it=False, desired="remove")
        self.changed.set()

    def _fit_slots(self, service_id: str) -> None:
        svc = self.services[service_id]
        wanted = [t for t in self.tasks.values() if t.service_id == service_id and t.wanted]
        have = {t.slot for t in wanted}
        for slot in range(1, svc.replicas + 1):
            if slot not in have:
                self._new_task(svc, slot, "")
        for task in wanted:
            if task.slot > svc.replicas:
                self._stop_task(task, replace_it=False)

    def set_image(self, service_id: str, image: str) -> None:
        """A rolling update to `image`: each task replaced in turn."""
        svc = self._service(service_id)
        self.previous_specs[service_id] = svc
        self.services[service_id] = replace(svc, image=image)
        self._roll(service_id, "updating", "completed")

    def rollback_service(self, service_id: str) -> None:
        """Back to the spec before the last update, rolled out like an update."""
        svc = self._service(service_id)
        before = self.previous_specs.pop(service_id, None)
        if before is None:
            raise ProviderError(f"service {svc.name} has no previous spec to roll back to")
        self.previous_specs[service_id] = svc
        self.services[service_id] = replace(svc, image=before.image, replicas=before.replicas)
        if svc.mode == "replicated":
            self._fit_slots(service_id)
        self._roll(service_id, "rollback_started", "rollback_completed")

    def _roll(self, service_id: str, state: str, done: str) -> None:
        svc = self.services[service_id]
        tasks = [t for t in self.tasks.values() if t.service_id == service_id and t.wanted]
        self.services[service_id] = replace(svc, update_state=state,
                                            update_started=self._stamp(), update_message="")
        for i, task in enumerate(tasks):
            self._schedule(i * 2.0, functools.partial(self._replace, task.swarm_id))
        self._schedule(len(tasks) * 2.0 + 1.0,
                       functools.partial(self._update_ends, service_id, done))
        self.changed.set()

    def _update_ends(self, service_id: str, state: str) -> None:
        svc = self.services.get(service_id)
        if svc is not None and svc.update_state not in ("paused", "rollback_paused"):
            self.services[service_id] = replace(svc, update_state=state)

    # -- logs: plausible lines, made up from the task and the time -------------------------
    LOG_WORDS = ("GET /health 200", "GET /api/orders 200", "POST /api/orders 201",
                 "GET /static/app.js 304", "GET /api/orders/17 404", "worker: job done")

    def log_line(self, task: Task, n: int) -> bytes:
        """Line `n` of a task's log: the same n and task always give the same line."""
        pick = random.Random(f"{task.swarm_id}:{n}")
        at = self.epoch + n / self.speed
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(at)) + f".{n % 1000:03d}000000Z"
        words = pick.choice(self.LOG_WORDS)
        return (f"{stamp} [{task.swarm_id[:12]}] {task.name} 198.51.100.{pick.randint(2, 254)}"
                f" {words} {pick.randint(1, 90)}ms\n").encode()

    def log_tasks(self, kind: LogSource, swarm_id: str) -> list[Task]:
        if kind == "task":
            if swarm_id not in self.tasks:
                raise ProviderError(f"task {swarm_id} not found")
            return [self.tasks[swarm_id]]
        if swarm_id not in self.services:
            raise ProviderError(f"service {swarm_id} not found")
        return [t for t in self.tasks.values() if t.service_id == swarm_id and t.node_id]

    def _node(self, node_id: str) -> Node:
        try:
            return self.nodes[node_id]
        except KeyError:
            raise ProviderError(f"no such node: {node_id}") from None

    def _node_down(self, node_id: str) -> None:
        node = self.nodes[node_id]
        self.nodes[node_id] = replace(node, state=DOWN, leader=False,
                                      reachability="unreachable" if node.role == MANAGER else "",
                                      message="heartbeat failure")
        if node.leader:   # a surviving manager takes over leadership
            heir = next((n for n in self.nodes.values()
                         if n.role == MANAGER and n.state == READY), None)
            if heir:
                self.nodes[heir.swarm_id] = replace(heir, leader=True)

    def _node_up(self, node_id: str) -> None:
        node = self.nodes[node_id]
        self.nodes[node_id] = replace(node, state=READY, message="",
                                      reachability="reachable" if node.role == MANAGER else "")
        for t in list(self.tasks.values()):   # what ran there before is gone now
            if t.node_id == node_id and not t.wanted:
                self.tasks[t.swarm_id] = replace(t, state="shutdown")

    # -- hypervisor behaviour -------------------------------------------------------
    def stop_vm(self, name: str, force: bool = False) -> None:
        vm = self._vm(name)
        if vm.state in ("off", "stopping"):
            return
        self.vms[name] = replace(vm, state="stopping")

        def off() -> None:
            if self.vms[name].state != "stopping":   # started again meanwhile
                return
            self.vms[name] = replace(self.vms[name], state="off", uptime_s=0, cpu_pct=0)
            node = self._node_of_vm(name)
            if node:
                self._schedule(self._delay(1.0, 3.0), lambda: self._node_down(node.swarm_id))
        self._schedule(0.5 if force else self._delay(4.0, 8.0), off)
        self.changed.set()

    def fail(self, vm_names: Iterable[str], host: str = "") -> None:
        """A failure, not a shutdown: the VMs (and their host) are gone at once; Swarm marks
        their nodes Down when their heartbeats stop, a few seconds later."""
        if host:
            self.hosts[host] = replace(self._host(host), state="unreachable",
                                       message="failed (rehearsal)")
        for name in vm_names:
            self.vms[name] = replace(self._vm(name), state="off", uptime_s=0, cpu_pct=0)
            node = self._node_of_vm(name)
            if node:
                self._schedule(5.0, functools.partial(self._node_down, node.swarm_id))
        self.changed.set()

    def start_vm(self, name: str) -> None:
        vm = self._vm(name)
        if self.hosts[vm.host].state != "up":
            raise ProviderError(f"{vm.host} is {self.hosts[vm.host].state}; cannot start {name}")
        if vm.state in (RUNNING, "starting"):
            return
        if vm.state == "stopping":
            raise ProviderError(f"{name} is still shutting down; start it once it is off")
        self.vms[name] = replace(vm, state="starting")

        def running() -> None:
            if self.vms[name].state != "starting":   # stopped again meanwhile
                return
            self.vms[name] = replace(self.vms[name], state=RUNNING, cpu_pct=9)
            self.boots[name] = self.boots.get(name, 0) + 1
            node = self._node_of_vm(name)
            if node and name in self.upgrade_on_boot:
                self.upgrade_on_boot.discard(name)
                self.nodes[node.swarm_id] = replace(node, engine_version="24.0.7")
            if node and name in self.stalled_agents:   # the Swarm agent never registers
                self.stalled_agents.discard(name)
            elif node:
                self._schedule(self._delay(2.0, 4.0), lambda: self._node_up(node.swarm_id))
        self._schedule(self._delay(5.0, 9.0), running)
        self.changed.set()

    def restart_engine(self, name: str) -> None:
        """`systemctl restart docker`: the node drops and registers again."""
        self.engine_restarts[name] = self.engine_restarts.get(name, 0) + 1
        node = self._node_of_vm(name)
        if node:
            self._node_down(node.swarm_id)
            self._schedule(self._delay(1.0, 2.0), lambda: self._node_up(node.swarm_id))
        self.changed.set()

    def reboot_vm(self, name: str) -> None:
        """The guest reboots itself: down a few seconds later, back after a boot."""
        def go_down() -> None:
            self.stop_vm(name, force=True)
            self._schedule(2.0, lambda: self.start_vm(name)
                           if self.vms[name].state == "off" else None)
        self._schedule(1.0, go_down)

    def restart_host(self, name: str) -> None:
        host = self._host(name)
        busy = [v.name for v in self.vms.values() if v.host == name and v.state != "off"]
        if busy:
            raise ProviderError(f"{name}: VMs still running: {', '.join(busy)}")
        self.hosts[name] = replace(host, state="rebooting")

        def back() -> None:
            self.hosts[name] = replace(self.hosts[name], state="up", uptime_s=0,
                                       pending_reboot=False)
        self._schedule(self._delay(30.0, 45.0), back)
        self.changed.set()

    def install_updates(self, name: str, script: str = "") -> str:
        """Takes a while; Windows updates leave a reboot pending, a script does not."""
        host = self._host(name)
        if host.state != "up":
            raise ProviderError(f"{name} is {host.state}; cannot install updates")
        self.hosts[name] = replace(host, state="updating")

        def done() -> None:
            self.hosts[name] = replace(self.hosts[name], state="up",
                                       pending_reboot=not script or host.pending_reboot)
        self._schedule(self._delay(20.0, 40.0), done)
        self.changed.set()
        return f"script ran: {script}" if script else "3 updates installed, reboot pending"

    def _vm(self, name: str) -> VM:
        if name not in self.vms:
            raise ProviderError(f"no such VM: {name!r}")
        return self.vms[name]

    def _host(self, name: str) -> Host:
        if name not in self.hosts:
            raise ProviderError(f"no such host: {name!r}")
        return self.hosts[name]

    # -- proxy behaviour ------------------------------------------------------------------
    def _refresh_servers(self) -> None:
        counts: dict[tuple[str, str], int] = {}
        for s in self.sessions.values():
            counts[(s.backend, s.server)] = counts.get((s.backend, s.server), 0) + 1
        ready = {n.swarm_id: n.hostname for n in self.nodes.values() if n.state == READY}
        serving = {(t.service_name, ready[t.node_id]) for t in self.tasks.values()
                   if t.state == RUNNING and t.wanted and t.node_id in ready}
        anything = {hostname for _, hostname in serving}
        for key, srv in self.servers.items():
            admin = self.admin[key]
            vm = self.vms.get(srv.vm)
            hostname = (vm.node_hostname or vm.name) if vm else srv.name
            front = self.fronts.get(srv.backend, "")
            up = (front, hostname) in serving if front else hostname in anything
            status = "MAINT" if admin == "maint" else ("DOWN" if not up else
                                                       "DRAIN" if admin == "drain" else "UP")
            self.servers[key] = replace(srv, status=status, admin=admin,
                                        cur_sessions=counts.get(key, 0),
                                        weight=0 if admin == "drain" else 1,
                                        check_status="L7OK" if up else "L4CON")
        moved = False
        self._ready = {}
        for srv in sorted(self.servers.values(), key=lambda s: s.name):
            if srv.status == "UP":
                self._ready.setdefault(srv.backend, []).append(srv)
        for sid, sess in list(self.sessions.items()):   # server gone: session moves
            if self.servers[(sess.backend, sess.server)].status in ("DOWN", "MAINT"):
                target = self._pick_server(sess.backend)
                if target is None:
                    del self.sessions[sid]
                else:
                    self.sessions[sid] = replace(sess, server=target.name)
                self.sessions_moved += 1
                moved = True
        if moved:   # count again: the sessions that moved now belong to other servers
            counts = Counter((s.backend, s.server) for s in self.sessions.values())
            for key, srv in self.servers.items():
                self.servers[key] = replace(srv, cur_sessions=counts.get(key, 0))

    def _pick_server(self, backend: str) -> ProxyServer | None:
        """Round robin over the servers that take new sessions (UP, not draining)."""
        ready = self._ready.get(backend, [])
        return ready[next(self._rr) % len(ready)] if ready else None

    def _next_arrival_delay(self) -> float:
        return self.rng.expovariate(self.session_rate) if getattr(self, "session_rate", 0) else 1.0

    def _session_arrives(self) -> None:
        backends = sorted({b for b, _ in self.servers})
        # one backend (the built-in site) draws nothing: a seed gives the same world as before
        backend = backends[0] if len(backends) == 1 else \
            self.rng.choice(backends) if backends else ""
        server = self._pick_server(backend) if backend else None
        if server is not None:
            sid = f"0x{self.rng.getrandbits(40):010x}"
            self.sessions[sid] = ProxySession(sid, server.backend, server.name,
                                              started_at=self.epoch + self.now / self.speed,
                                              client=f"198.51.100.{self.rng.randint(2, 254)}:"
                                                     f"{self.rng.randint(20000, 60000)}")
            self._schedule(self.rng.expovariate(1 / self.session_mean_s),
                           lambda: self.sessions.pop(sid, None))
            key = (server.backend, server.name)
            self.servers[key] = replace(self.servers[key],
                                        total_sessions=self.servers[key].total_sessions + 1)
        self._schedule(self._next_arrival_delay(), self._session_arrives)

    def restart_proxy(self) -> None:
        """HAProxy restarted from its configuration: a new process that forgot every
        runtime server state (all ready again), as a real one does."""
        self.proxy_pid += 1
        self.proxy_started = self.epoch + self.now / self.speed
        for key in self.admin:
            self.admin[key] = "ready"
        self._refresh_servers()
        self.changed.set()

    def set_server_state(self, backend: str, server: str, state: str) -> None:
        if self.read_only_proxy:
            raise ProviderError(self.read_only_proxy)
        if (backend, server) not in self.servers:
            raise ProviderError(f"No such server: {backend}/{server}")
        if state not in ("ready", "drain", "maint"):
            raise ProviderError(f"unknown server state {state!r}")
        self.admin[(backend, server)] = state
        self._refresh_servers()
        self.changed.set()

    # -- reads ----------------------------------------------------------------------------
    def providers(self) -> Providers:
        return Providers(SimSwarm(self), SimHypervisor(self), SimProxy(self), SimShell(self))


def removed_on_scale_down(tasks: list[Task], replicas: int) -> list[Task]:
    """Which of a replicated service's tasks (one per slot, all wanted) Swarm stops when it
    is scaled to `replicas`: swarmkit's reconcile sorts running before not running (then by
    slot), numbers each task as the nth copy on its node (a task on no node: last of all),
    sorts by that number, stably, and removes the tail."""
    if replicas >= len(tasks):
        return []
    ordered = sorted(tasks, key=lambda t: (t.state != RUNNING, t.slot))
    copies: Counter[str] = Counter()
    nth: dict[str, float] = {}
    for t in ordered:
        if t.node_id:
            copies[t.node_id] += 1
        nth[t.swarm_id] = copies[t.node_id] if t.node_id else float("inf")
    return sorted(ordered, key=lambda t: nth[t.swarm_id])[replicas:]


class _Part:
    part = ""

    def __init__(self, sim: SimCluster) -> None:
        self.sim = sim

    def _answer(self) -> None:
        """Move the world on, or fail as an unreachable system does (a test's fault)."""
        if self.part in self.sim.unreachable:
            raise ProviderError(self.sim.unreachable[self.part])
        self.sim.advance()


class SimSwarm(_Part):
    part = SWARM
    endpoint = "sim://manager"

    async def read(self) -> tuple[list[Node], list[Service], list[Task]]:
        self._answer()
        return list(self.sim.nodes.values()), list(self.sim.services.values()), \
            list(self.sim.tasks.values())

    async def set_availability(self, node_id: str, availability: str) -> None:
        self._answer()
        self.sim.set_availability(node_id, availability)

    async def set_role(self, node_id: str, role: str) -> None:
        self._answer()
        self.sim.set_role(node_id, role)

    async def rebalance(self, service_id: str) -> None:
        self._answer()
        self.sim.rebalance(service_id)

    async def scale_service(self, service_id: str, replicas: int) -> None:
        self._answer()
        self.sim.scale_service(service_id, replicas)

    async def set_image(self, service_id: str, image: str) -> None:
        self._answer()
        self.sim.set_image(service_id, image)

    async def rollback_service(self, service_id: str) -> None:
        self._answer()
        self.sim.rollback_service(service_id)

    async def inspect(self, kind: str, swarm_id: str) -> dict[str, Any]:
        """What the sim knows of the object, shaped a little like Swarm's answer."""
        self._answer()
        known: dict[str, dict[str, Any]] = {"node": self.sim.nodes,
                                            "service": self.sim.services,
                                            "task": self.sim.tasks}
        found = known[kind].get(swarm_id)
        if found is None:
            raise ProviderError(f"{kind} {swarm_id} not found")
        return {"ID": swarm_id, "Spec": dataclasses.asdict(found), "Simulated": True}

    async def logs(self, kind: LogSource, swarm_id: str, tail: int = LOG_TAIL,
                   follow: bool = False) -> AsyncIterator[str]:
        """The last `tail` lines (one a simulated second, from its tasks in turn), then
        with `follow` one more each simulated second; raw_logs are sent first, as is."""
        self._answer()
        sim = self.sim
        tasks = sim.log_tasks(kind, swarm_id)
        lines: list[str] = []
        capped = capped_lines(lines, total_cap=1 << 62 if follow else OUTPUT_CAP)
        now = int(sim.now)
        for raw in sim.raw_logs.get(swarm_id, []):
            capped.feed(0, raw)
        for n in range(max(0, now - tail), now):
            if tasks:
                capped.feed(0, sim.log_line(tasks[n % len(tasks)], n))
        if not follow:
            capped.close()
        for line in lines:
            yield line
        lines.clear()
        while follow:
            await asyncio.sleep(1.0 / sim.speed)
            self._answer()
            tasks = sim.log_tasks(kind, swarm_id) or tasks
            if tasks:
                capped.feed(0, sim.log_line(tasks[now % len(tasks)], now))
            now += 1
            for line in lines:
                yield line
            lines.clear()

    async def read_lock(self) -> Lock | None:
        self._answer()
        return self.sim.lock

    async def take_lock(self, lock: Lock) -> None:
        self._answer()
        held = self.sim.lock
        if held is not None and held.op != lock.op:
            raise LockHeld(held)
        self.sim.lock = lock
        self.sim.changed.set()

    async def release_lock(self, op: str) -> None:
        self._answer()
        if self.sim.lock is not None and self.sim.lock.op == op:
            self.sim.lock = None
            self.sim.changed.set()

    async def break_lock(self) -> None:
        self._answer()
        self.sim.lock = None
        self.sim.changed.set()

    async def wait_for_change(self, timeout: float) -> None:
        """Like a real event stream: return as soon as the simulated world changes."""
        sim = self.sim
        sim.changed.clear()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not sim.changed.is_set() and loop.time() < deadline:
            step = min(deadline - loop.time(), TICK / sim.speed)
            try:
                await asyncio.wait_for(sim.changed.wait(), max(step, 0.01))
            except TimeoutError:
                sim.advance()


class SimHypervisor(_Part):
    part = HYPERV

    async def read(self) -> tuple[list[Host], list[VM]]:
        self._answer()
        return list(self.sim.hosts.values()), list(self.sim.vms.values())

    async def stop_vm(self, vm: str, timeout: float, force: bool = False) -> None:
        self._answer()
        self.sim.stop_vm(vm, force)

    async def start_vm(self, vm: str) -> None:
        self._answer()
        self.sim.start_vm(vm)

    async def restart_host(self, host: str) -> None:
        self._answer()
        self.sim.restart_host(host)

    async def install_updates(self, host: str, timeout: float, script: str = "") -> str:
        self._answer()
        return self.sim.install_updates(host, script)


class SimProxy(_Part):
    """Says what the real provider says: `notices`, `started_at`, `restarted_at` (a
    restart seen), `parse_problems` (none here)."""
    part = PROXY

    def __init__(self, sim: SimCluster) -> None:
        super().__init__(sim)
        self.notices: list[str] = []
        self.parse_problems: list[str] = []
        self.started_at = self.restarted_at = 0.0
        self._pid = 0

    async def read(self) -> tuple[list[Backend], list[ProxyServer], list[ProxySession]]:
        self._answer()
        self.notices = []
        pid = self.sim.proxy_pid
        if self._pid and pid != self._pid:
            self.restarted_at = self.sim.proxy_started
            self.notices.append(f"HAProxy restarted (pid {self._pid} -> {pid})")
        self._pid, self.started_at = pid, self.sim.proxy_started or self.sim.epoch
        return [Backend(b) for b in sorted({b for b, _ in self.sim.servers})], \
            list(self.sim.servers.values()), \
            list(self.sim.sessions.values())

    async def set_server_state(self, backend: str, server: str, state: str) -> None:
        self._answer()
        self.sim.set_server_state(backend, server, state)

    async def read_only_reason(self) -> str:
        return self.sim.read_only_proxy


class SimShell(_Part):
    part = SHELL

    """Commands "run" for a simulated moment; `reboot` restarts the VM,
    `systemctl restart docker` its engine, and another command that names
    docker (an upgrade) gives its node a newer engine at next boot."""

    async def run(self, vm: str, command: str, timeout: float,
                  on_line: LineSink | None = None) -> int:
        self._answering(vm)
        for line in (f"$ {command}", "ok"):
            await asyncio.sleep(0.2 / self.sim.speed)
            if on_line:
                on_line(line)
        if "restart docker" in command:
            self.sim.restart_engine(vm)
        elif "docker" in command:
            self.sim.upgrade_on_boot.add(vm)
        if "reboot" in command:
            self.sim.reboot_vm(vm)
        return self.sim.exit_codes.get(vm, 0)

    def _answering(self, vm: str) -> None:
        self._answer()
        state = self.sim._vm(vm).state
        if state != RUNNING:
            raise ProviderError(f"{vm}: no answer on port 22 (VM is {state})")

    async def boot_id(self, vm: str) -> str:
        self._answering(vm)
        return f"{vm}/{self.sim.boots.get(vm, 0)}"

    async def wait_reboot(self, vm: str, down_timeout: float, up_timeout: float,
                          boot_id: str = "") -> str:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (down_timeout + up_timeout) / self.sim.speed
        while loop.time() < deadline:
            self._answer()
            if self.sim._vm(vm).state == RUNNING and \
                    f"{vm}/{self.sim.boots.get(vm, 0)}" != boot_id:
                return f"{vm}/{self.sim.boots.get(vm, 0)}"
            await asyncio.sleep(TICK / self.sim.speed)
        raise ProviderError(f"{vm} did not come back within {down_timeout + up_timeout:.0f}s")
