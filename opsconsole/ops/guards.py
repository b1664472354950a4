"""Safety checks, as pure functions of a snapshot.

Each returns Checks: `ok`, `warn` (shown, does not stop) or `fail` (refuses
the operation; the message says what and why, and what would fix it).
"""
from __future__ import annotations

import time
from dataclasses import dataclass

from ..model import (
    HYPERV,
    MANAGER,
    PROXY,
    READY,
    RUNNING,
    SWARM,
    UP,
    Node,
    Snapshot,
    constraint_holds,
    quorum_tolerance,
)
from ..placement import tasks_without_home

OK, WARN, FAIL = "ok", "warn", "fail"


@dataclass(frozen=True)
class Check:
    name: str
    level: str
    message: str
    fix: str = ""           # what the operator (or the plan) can do about it

    @property
    def text(self) -> str:
        return f"{self.message}. Fix: {self.fix}" if self.fix else self.message


def failures(checks: list[Check]) -> list[Check]:
    return [c for c in checks if c.level == FAIL]


def forced(checks: list[Check]) -> list[Check]:
    """--force: refusals of capacity and of services that stop become warnings."""
    return [Check(c.name, WARN, c.message + " (overridden by force)", c.fix)
            if c.level == FAIL and c.name in FORCEABLE else c for c in checks]


SCALED, LANDED = "scaled", "landed"     # what a replica-preserving drain journals (moves.py)
FORCEABLE = ("capacity", "stops")       # never quorum, proxy or unknown data


@dataclass(frozen=True)
class Risk:
    """What one step takes out of service; the guards run before it on fresh data."""
    nodes: frozenset[str] = frozenset()     # swarm ids whose tasks must go elsewhere
    managers: frozenset[str] = frozenset()  # swarm ids of managers that stop voting
    vms: frozenset[str] = frozenset()       # VMs whose proxy servers go out
    host: str = ""                          # a host that restarts: its VMs must be off


def scaled_originals(notes: dict[str, object]) -> dict[str, tuple[int, int]]:
    """Services a replica-preserving drain scaled, from an operation's journal notes:
    service id -> (original replicas, tasks it moves)."""
    return {sid: (s["original"], s["tasks"]) for key, value in notes.items()
            if key.endswith(f":{SCALED}") and isinstance(value, dict)
            for sid, s in value.items()}


def moved_now(notes: dict[str, object], snap: Snapshot) -> dict[str, int]:
    """Per service an operation holds scaled up now: how many of its tasks on a node being
    drained already have their replacement running (they need no home: `capacity`)."""
    out = {}
    for sid, (original, tasks) in scaled_originals(notes).items():
        svc = snap.service(sid)
        if svc is not None and svc.replicas > original:
            out[sid] = min(tasks, svc.replicas - original)
    return out


def before_step(snap: Snapshot, risk: Risk, moved: dict[str, int] | None = None) -> list[Check]:
    """Every guard that applies to a step that takes `risk` out, on a snapshot read for it.
    `moved`: tasks already replaced by a replica-preserving drain, per service (capacity).

    A source that could not be read fails its guards as "unknown": old data
    never says "ok".
    """
    checks = unknown(snap, SWARM)
    if risk.vms:
        checks += unknown(snap, PROXY)
    if risk.host:
        checks += unknown(snap, HYPERV)
    if failures(checks):
        return checks
    if snap.quorum_tolerance < 0:
        checks.append(Check("quorum", FAIL, "Raft has lost quorum now ("
                            f"{sum(m.votes for m in snap.managers)} of {len(snap.managers)} "
                            "managers vote): nothing more is taken out until it is back"))
    managers = [n for n in snap.nodes if n.swarm_id in risk.managers]
    if managers:
        checks.append(quorum_after_loss(snap, managers))
    if risk.nodes:
        checks += [capacity(snap, risk.nodes, moved), stops(snap, risk.nodes)]
    if risk.vms:
        checks.append(proxy_keeps_a_server(snap, set(risk.vms)))
    if risk.host:
        running = [v.name for v in snap.vms if v.host == risk.host and v.state != "off"]
        if running:
            checks.append(Check("host", FAIL, f"{risk.host} still has VMs that are not off: "
                                f"{', '.join(running)}"))
    return checks


def unknown(snap: Snapshot, source: str) -> list[Check]:
    """A failing check for each problem of `source`: its state is not known now."""
    return [Check("unknown", FAIL, f"{p.source} unreadable since "
                  f"{time.strftime('%H:%M:%S', time.localtime(p.since or snap.taken_at))}"
                  f" ({p.message}): cannot check") for p in snap.unreadable(source)]


def node_ready(node: Node) -> Check:
    if node.state == READY:
        return Check("node", OK, f"{node.hostname} is ready ({node.role}, {node.availability})")
    return Check("node", WARN, f"{node.hostname} is {node.state}")


def capacity(snap: Snapshot, leaving: frozenset[str],
             moved: dict[str, int] | None = None) -> Check:
    """Every replicated task on the leaving nodes has somewhere to go (or, `moved`, a
    replacement running already)."""
    homeless = tasks_without_home(snap, leaving, moved)
    if not homeless:
        moving = sum(len(snap.tasks_on_node(n)) for n in leaving)
        return Check("capacity", OK, f"{moving} tasks can move to other nodes")
    names = "; ".join(f"{t.name}: {why}" for t, why in homeless)
    return Check("capacity", FAIL, f"{len(homeless)} task(s) would have nowhere to go: {names}")


def stops(snap: Snapshot, leaving: frozenset[str]) -> Check:
    """Global services that run only on the leaving nodes (their constraints allow no
    other): they stop for the window. (Replicated tasks with nowhere to go: `capacity`.)"""
    stopped = []
    for svc in snap.services:
        if svc.mode != "global":
            continue
        running = [t for t in snap.tasks_of_service(svc.swarm_id)
                   if t.wanted and t.state == RUNNING]
        if not running or any(t.node_id not in leaving for t in running):
            continue
        if not any(n.swarm_id not in leaving and n.schedulable
                   and all(constraint_holds(c, n) for c in svc.constraints)
                   for n in snap.nodes):
            where = sorted(n.hostname for n in snap.nodes
                           if n.swarm_id in {t.node_id for t in running})
            stopped.append(f"{svc.name} runs only on {', '.join(where)}")
    if stopped:
        return Check("stops", FAIL, "; ".join(stopped) + ": it stops for the window")
    return Check("stops", OK, "no service stops")


def spread(snap: Snapshot, leaving: frozenset[str]) -> Check:
    """No replicated service loses every running task at once."""
    lost = []
    for svc in snap.services:
        if svc.mode != "replicated" or not svc.replicas:
            continue
        running = [t for t in snap.tasks_of_service(svc.swarm_id)
                   if t.wanted and t.state == RUNNING]
        if running and all(t.node_id in leaving for t in running):
            lost.append(svc.name)
    if lost:
        return Check("spread", WARN,
                     f"every running task of {', '.join(lost)} is on the leaving node(s): "
                     "a short outage until they restart elsewhere")
    return Check("spread", OK, "every service keeps a running task elsewhere")


def quorum_after_loss(snap: Snapshot, lost_managers: list[Node]) -> Check:
    """Raft quorum after stopping the named managers (drain alone keeps them voting)."""
    managers = snap.managers
    if not lost_managers:
        return Check("quorum", OK,
                     f"{len(managers)} managers, tolerates {snap.quorum_tolerance} loss(es)")
    up = sum(1 for m in managers if m.votes)
    # a manager that is already down (or out of Raft) loses no vote when it is stopped
    up_after = up - sum(1 for m in lost_managers if m.votes)
    left = quorum_tolerance(len(managers), up_after)
    names = ", ".join(m.hostname for m in lost_managers)
    if left < 0:
        return Check("quorum", FAIL,
                     f"stopping {names} leaves {up_after} of {len(managers)} "
                     "managers: Raft loses quorum and the swarm cannot be changed",
                     fix="promote a worker on another host for the duration")
    return Check("quorum", OK, f"after stopping {names}, quorum tolerates {left} more loss(es)")


def proxy_keeps_a_server(snap: Snapshot, vm_names: set[str]) -> Check:
    """Each affected backend keeps at least one other server UP."""
    for backend in {s.backend for s in snap.servers if s.vm in vm_names}:
        others = [s for s in snap.servers
                  if s.backend == backend and s.vm not in vm_names and s.status == UP]
        if not others:
            return Check("proxy", FAIL, f"backend {backend} would have no server UP")
    return Check("proxy", OK, "every affected backend keeps a server UP")


def drain_checks(snap: Snapshot, node: Node, moved: dict[str, int] | None = None) -> list[Check]:
    leaving = frozenset({node.swarm_id})
    vm = snap.vm_of_node(node)
    checks = [node_ready(node), capacity(snap, leaving, moved), stops(snap, leaving),
              spread(snap, leaving)]
    if node.role == MANAGER:
        checks.append(Check("quorum", OK, "a drained manager still votes: quorum unchanged"))
    if vm:
        checks.append(proxy_keeps_a_server(snap, {vm.name}))
        if snap.proxy_read_only and snap.servers_of_vm(vm.name):
            checks.append(Check("sessions", WARN, f"{snap.proxy_read_only}; sessions are not "
                                "drained first: they move when the tasks stop"))
    return checks
