"""Safety checks, as pure functions of a snapshot.

Each returns Checks: `ok`, `warn` (shown, does not stop) or `fail` (refuses
the operation; the message says what and why, and what would fix it).
"""
from __future__ import annotations

from dataclasses import dataclass

from ..model import MANAGER, READY, Node, Snapshot, quorum_tolerance
from ..placement import tasks_without_home

OK, WARN, FAIL = "ok", "warn", "fail"


@dataclass(frozen=True)
class Check:
    name: str
    level: str
    message: str


def failures(checks: list[Check]) -> list[Check]:
    return [c for c in checks if c.level == FAIL]


def node_ready(node: Node) -> Check:
    if node.state == READY:
        return Check("node", OK, f"{node.hostname} is ready ({node.role}, {node.availability})")
    return Check("node", WARN, f"{node.hostname} is {node.state}")


def capacity(snap: Snapshot, leaving: frozenset[str]) -> Check:
    """Every replicated task on the leaving nodes has somewhere to go."""
    homeless = tasks_without_home(snap, leaving)
    if not homeless:
        moving = sum(len(snap.tasks_on_node(n)) for n in leaving)
        return Check("capacity", OK, f"{moving} tasks can move to other nodes")
    names = "; ".join(f"{t.name}: {why}" for t, why in homeless)
    return Check("capacity", FAIL, f"{len(homeless)} task(s) would have nowhere to go: {names}")


def spread(snap: Snapshot, leaving: frozenset[str]) -> Check:
    """No replicated service loses every running task at once."""
    lost = []
    for svc in snap.services:
        if svc.mode != "replicated" or not svc.replicas:
            continue
        running = [t for t in snap.tasks_of_service(svc.swarm_id)
                   if t.wanted and t.state == "running"]
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
                     "managers: Raft loses quorum and the swarm cannot be changed. "
                     "Fix: promote a worker on another host for the duration")
    return Check("quorum", OK, f"after stopping {names}, quorum tolerates {left} more loss(es)")


def proxy_keeps_a_server(snap: Snapshot, vm_names: set[str]) -> Check:
    """Each affected backend keeps at least one other server UP."""
    for backend in {s.backend for s in snap.servers if s.vm in vm_names}:
        others = [s for s in snap.servers
                  if s.backend == backend and s.vm not in vm_names and s.status == "UP"]
        if not others:
            return Check("proxy", FAIL, f"backend {backend} would have no server UP")
    return Check("proxy", OK, "every affected backend keeps a server UP")


def drain_checks(snap: Snapshot, node: Node) -> list[Check]:
    leaving = frozenset({node.swarm_id})
    vm = snap.vm_of_node(node)
    checks = [node_ready(node), capacity(snap, leaving), spread(snap, leaving)]
    if node.role == MANAGER:
        checks.append(Check("quorum", OK, "a drained manager still votes: quorum unchanged"))
    if vm:
        checks.append(proxy_keeps_a_server(snap, {vm.name}))
        if snap.proxy_read_only and snap.servers_of_vm(vm.name):
            checks.append(Check("sessions", WARN, f"{snap.proxy_read_only}; sessions are not "
                                "drained first: they move when the tasks stop"))
    return checks
