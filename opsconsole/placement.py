"""Where a Swarm task may run: constraints, max replicas per node, resources.

Pure functions over the model. The simulated cluster schedules with them and
the guards use them to say, before a drain, whether every task that must
move has somewhere to go -- and if not, why.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from .model import ACTIVE, READY, Node, Service, Snapshot, Task, constraint_holds


class Load:
    """Tasks and reservations per node, kept up to date as tasks are placed."""

    def __init__(self) -> None:
        self.per_service: Counter[tuple[str, str]] = Counter()
        self.cpu: Counter[str] = Counter()
        self.mem: Counter[str] = Counter()
        self.total: Counter[str] = Counter()

    @classmethod
    def of(cls, snapshot: Snapshot) -> Load:
        load = cls()
        services = {s.swarm_id: s for s in snapshot.services}
        for t in snapshot.tasks:
            if t.wanted and t.node_id and t.service_id in services:
                load.add(t.node_id, services[t.service_id])
        return load

    def add(self, node_id: str, service: Service, n: int = 1) -> None:
        self.per_service[(node_id, service.swarm_id)] += n
        self.total[node_id] += n
        self.cpu[node_id] += n * service.reserve_nano_cpus
        self.mem[node_id] += n * service.reserve_memory_bytes


@dataclass(frozen=True)
class Verdict:
    node: Node
    reason: str = ""                # empty: the task fits here

    @property
    def fits(self) -> bool:
        return not self.reason


def judge(service: Service, node: Node, load: Load,
          excluded: frozenset[str] = frozenset()) -> Verdict:
    """Whether one more task of `service` could be placed on `node`."""
    if node.swarm_id in excluded:
        return Verdict(node, "being drained")
    if node.state != READY:
        return Verdict(node, f"node {node.state}")
    if node.availability != ACTIVE:
        return Verdict(node, f"availability {node.availability}")
    for c in service.constraints:
        if not constraint_holds(c, node):
            return Verdict(node, f"constraint {c}")
    if service.max_per_node and \
            load.per_service[(node.swarm_id, service.swarm_id)] >= service.max_per_node:
        return Verdict(node, f"max {service.max_per_node} per node")
    if node.nano_cpus and service.reserve_nano_cpus and \
            load.cpu[node.swarm_id] + service.reserve_nano_cpus > node.nano_cpus:
        return Verdict(node, "not enough CPU")
    if node.memory_bytes and service.reserve_memory_bytes and \
            load.mem[node.swarm_id] + service.reserve_memory_bytes > node.memory_bytes:
        return Verdict(node, "not enough memory")
    return Verdict(node)


def best_node(nodes: Iterable[Node], service: Service, load: Load,
              excluded: frozenset[str] = frozenset()) -> Node | None:
    """Swarm's spread strategy: fewest tasks of the service, then fewest tasks."""
    fits = [n for n in nodes if judge(service, n, load, excluded).fits]
    if not fits:
        return None
    return min(fits, key=lambda n: (load.per_service[(n.swarm_id, service.swarm_id)],
                                    load.total[n.swarm_id], n.hostname))


def why_unplaceable(nodes: Iterable[Node], service: Service, load: Load,
                    excluded: frozenset[str] = frozenset()) -> str:
    """One line that says why no node can take a task of `service`."""
    reasons: dict[str, list[str]] = {}
    for n in nodes:
        v = judge(service, n, load, excluded)
        if v.fits:
            return ""
        reasons.setdefault(v.reason, []).append(n.hostname)
    parts = [f"{r} ({', '.join(sorted(h))})" for r, h in sorted(reasons.items())]
    return "no suitable node: " + "; ".join(parts) if parts else "no nodes"


def tasks_without_home(snapshot: Snapshot, leaving: frozenset[str],
                       moved: dict[str, int] | None = None) -> list[tuple[Task, str]]:
    """Replicated tasks on the leaving nodes that would have nowhere to go.

    Placed one after another, so two tasks cannot both claim the last slot. `moved`:
    per service, how many of its tasks there already have a replacement running (a
    replica-preserving drain scaled it up): those need no home.
    """
    load = Load.of(snapshot)
    spare = dict(moved or {})
    homeless: list[tuple[Task, str]] = []
    for node_id in sorted(leaving):
        for task in snapshot.tasks_on_node(node_id):
            service = snapshot.service(task.service_id)
            if service is None or service.mode == "global":
                continue
            if spare.get(service.swarm_id, 0) > 0:
                spare[service.swarm_id] -= 1
                continue
            target = best_node(snapshot.nodes, service, load, leaving)
            if target is None:
                homeless.append((task, why_unplaceable(snapshot.nodes, service, load, leaving)))
            else:
                load.add(target.swarm_id, service)
    return homeless
