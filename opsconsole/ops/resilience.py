"""N-1: what the loss of each failure domain (a Hyper-V host, a VM) would do now.

Pure functions of a snapshot, so the header, the Resilience screen and the
`resilience` command give the same answer. A domain's loss is unplanned: its
nodes go down with their tasks (no drain first), its managers stop voting, its
proxy servers go DOWN. Swarm reschedules the lost replicated tasks only while
Raft keeps quorum, and only where placement allows (the same rules the guards
use: constraints, max replicas per node, reservations).
"""
from __future__ import annotations

from dataclasses import dataclass

from ..model import (
    HYPERV,
    PROXY,
    RUNNING,
    SWARM,
    UP,
    Node,
    Service,
    Snapshot,
    quorum_tolerance,
)
from ..placement import Load, best_node, judge, why_unplaceable
from .guards import FAIL, OK, WARN

HOST, VM_DOMAIN, NODE_DOMAIN = "host", "vm", "node"

# What a finding is about: the verdict and the header read these, never the wording.
QUORUM, OUTAGE, STRANDED, DEGRADED, BACKEND = (
    "quorum", "outage", "stranded", "degraded", "backend")


@dataclass(frozen=True)
class Domain:
    """Something that fails as one: a host with its VMs, or one VM (its node)."""
    kind: str                       # HOST | VM_DOMAIN | NODE_DOMAIN
    name: str
    nodes: frozenset[str]           # swarm ids of the nodes it takes down
    vms: frozenset[str]             # VM names whose proxy servers go DOWN

    @property
    def label(self) -> str:
        return f"{self.kind} {self.name}"


@dataclass(frozen=True)
class Finding:
    what: str                       # QUORUM | OUTAGE | STRANDED | DEGRADED | BACKEND
    level: str                      # FAIL: not survived; WARN: survived, with a cost
    subject: str                    # the service, backend or managers concerned
    message: str
    fix: str = ""


@dataclass(frozen=True)
class Outcome:
    domain: Domain
    findings: tuple[Finding, ...]

    @property
    def survived(self) -> bool:
        return not any(f.level == FAIL for f in self.findings)

    @property
    def level(self) -> str:
        levels = {f.level for f in self.findings}
        return FAIL if FAIL in levels else WARN if WARN in levels else OK


def domains(snap: Snapshot) -> list[Domain]:
    """Every host (with its VMs' nodes), then every VM, then nodes on no known VM."""
    out: list[Domain] = []
    placed: set[str] = set()
    for host in sorted(snap.hosts, key=lambda h: h.name):
        vms = [v for v in snap.vms if v.host == host.name]
        nodes = {n.swarm_id for v in vms if (n := snap.node_of_vm(v))}
        out.append(Domain(HOST, host.name, frozenset(nodes), frozenset(v.name for v in vms)))
    for vm in sorted(snap.vms, key=lambda v: v.name):
        node = snap.node_of_vm(vm)
        if node:
            placed.add(node.swarm_id)
        out.append(Domain(VM_DOMAIN, vm.name,
                          frozenset({node.swarm_id} if node else ()), frozenset({vm.name})))
    for node in sorted(snap.nodes, key=lambda n: n.hostname):
        if node.swarm_id not in placed:
            out.append(Domain(NODE_DOMAIN, node.hostname, frozenset({node.swarm_id}),
                              frozenset()))
    return out


@dataclass(frozen=True)
class Assessment:
    outcomes: tuple[Outcome, ...]
    unknown: tuple[str, ...]        # sources that could not be read: the answer is partial

    @property
    def survived(self) -> bool:
        """Every single loss is survived, as far as a complete read can tell."""
        return not self.unknown and all(o.survived for o in self.outcomes)

    @property
    def verdict(self) -> str:
        """One glance for the header: "N-1 ✔" or "N-1 ✘ hv-01: quorum, hv-02: quorum"."""
        bad = [o for o in self.outcomes if not o.survived]
        worst = [o for o in bad if o.domain.kind == HOST] or bad
        parts = [f"{o.domain.name}: " + ", ".join(dict.fromkeys(
            f.what for f in o.findings if f.level == FAIL)) for o in worst]
        if self.unknown:
            parts.append(f"{', '.join(self.unknown)} unreadable")
        if not parts:
            return "N-1 ✔"
        return ("N-1 ✘ " if bad else "N-1 ? ") + "; ".join(parts)


def assess(snap: Snapshot) -> Assessment:
    """The outcome of losing each failure domain, in the order of `domains`. Each domain
    costs what runs in it, not the cluster's size: one load, placements undone after."""
    unknown = tuple(dict.fromkeys(p.source for p in snap.unreadable(SWARM, PROXY, HYPERV)))
    load = Load.of(snap)
    up: dict[str, set[str]] = {}        # backend -> the VMs of its servers that are UP
    for s in snap.servers:
        if s.status == UP:
            up.setdefault(s.backend, set()).add(s.vm)
    return Assessment(tuple(Outcome(d, tuple(_losses(snap, d, load, up)))
                            for d in domains(snap)), unknown)


def _losses(snap: Snapshot, domain: Domain, load: Load,
            up: dict[str, set[str]]) -> list[Finding]:
    quorum = _quorum(snap, domain)
    out = [quorum] if quorum else []
    keeps_quorum = quorum is None or quorum.level != FAIL
    hit = {t.service_id for n in domain.nodes for t in snap.tasks_on_node(n)}
    placed: list[tuple[str, Service]] = []      # the lost tasks placed on `load`, to undo
    for svc in sorted((s for s in snap.services if s.swarm_id in hit), key=lambda s: s.name):
        finding = _service(snap, svc, domain, keeps_quorum, load, placed)
        if finding:
            out.append(finding)
    for node_id, svc in placed:
        load.add(node_id, svc, -1)
    out += _backends(snap, domain, up)
    return out


def _quorum(snap: Snapshot, domain: Domain) -> Finding | None:
    lost = [m for m in snap.managers if m.swarm_id in domain.nodes and m.votes]
    if not lost:
        return None
    managers = snap.managers
    up_after = sum(1 for m in managers if m.votes) - len(lost)
    names = ", ".join(sorted(m.hostname for m in lost))
    if quorum_tolerance(len(managers), up_after) >= 0:
        return Finding(QUORUM, OK, names, f"quorum holds: {up_after} of {len(managers)} "
                       f"managers left after {names}")
    return Finding(QUORUM, FAIL, names,
                   f"Raft loses quorum: {names} goes, {up_after} of {len(managers)} managers "
                   "left; running containers keep running, but the swarm cannot be changed "
                   "and reschedules nothing", fix=_quorum_fix(snap, domain))


def _quorum_fix(snap: Snapshot, domain: Domain) -> str:
    if domain.kind != HOST:
        return "run at least 3 managers (an odd number), so that one can be lost"
    hosts = {v.host for v in snap.vms if v.host}
    if len(hosts) <= 2:
        return (f"with {len(hosts)} host(s) no manager count survives the loss of either: "
                "add a manager in a third failure domain (a small VM elsewhere, like a "
                "cluster witness)")
    return ("spread the managers so that no host holds half of them or more "
            "(promote workers on other hosts, demote the extra ones here)")


def _running(snap: Snapshot, svc: Service) -> list[str]:
    """Node ids of the service's tasks that run now (on ready nodes)."""
    ready = snap.ready_ids
    return [t.node_id for t in snap.tasks_of_service(svc.swarm_id)
            if t.wanted and t.state == RUNNING and t.node_id in ready]


def _service(snap: Snapshot, svc: Service, domain: Domain, keeps_quorum: bool,
             load: Load, placed: list[tuple[str, Service]]) -> Finding | None:
    running = _running(snap, svc)
    lost = sum(1 for n in running if n in domain.nodes)
    if not lost:
        return None
    left = len(running) - lost
    if svc.mode == "global" or svc.mode.endswith("-job"):
        if left or svc.mode != "global":
            return None                 # a global service loses its tasks on those nodes only
        return Finding(OUTAGE, FAIL, svc.name, f"{svc.name} runs only in {domain.name}: "
                       "it stops", fix=f"let {svc.name}'s constraints allow a node elsewhere")
    if not keeps_quorum:
        if left:
            return Finding(DEGRADED, WARN, svc.name, f"{svc.name} runs {left} of "
                           f"{len(running)} until quorum is back (nothing is rescheduled)")
        return Finding(OUTAGE, FAIL, svc.name, f"{svc.name} stops: every running task is in "
                       f"{domain.name} and nothing is rescheduled without quorum",
                       fix=f"run {svc.name} outside {domain.name} too, and fix quorum")
    homeless = _homeless(snap, svc, lost, domain.nodes, load, placed)
    if homeless and not left:
        return Finding(STRANDED, FAIL, svc.name, f"{svc.name} stops and cannot be "
                       f"rescheduled: {homeless}", fix="make room for it on other nodes "
                       "(constraints, max per node, reservations)")
    if homeless:
        return Finding(DEGRADED, WARN, svc.name, f"{svc.name} keeps {left} of {len(running)}: "
                       f"the rest cannot be rescheduled: {homeless}")
    if not left:
        return Finding(OUTAGE, WARN, svc.name, f"{svc.name} runs no task until Swarm "
                       f"reschedules its {lost} task(s) (every one is in {domain.name})",
                       fix=f"spread {svc.name} (replicas, max per node) so a task runs "
                       "elsewhere")
    return None


def _homeless(snap: Snapshot, svc: Service, lost: int, gone: frozenset[str],
              load: Load, placed: list[tuple[str, Service]]) -> str:
    """Why the lost tasks of `svc` could not all be placed again ("" when they can);
    the ones that can are added to `load`, so services compete for the same room."""
    nodes: list[Node] = list(snap.nodes)
    if not (svc.max_per_node or svc.reserve_nano_cpus or svc.reserve_memory_bytes):
        # nothing counted per node: one node that may take it takes them all
        if any(judge(svc, n, load, gone).fits for n in nodes):
            return ""
        return why_unplaceable(nodes, svc, load, gone)
    for _ in range(lost):
        target = best_node(nodes, svc, load, gone)
        if target is None:
            return why_unplaceable(nodes, svc, load, gone)
        load.add(target.swarm_id, svc)
        placed.append((target.swarm_id, svc))
    return ""


def _backends(snap: Snapshot, domain: Domain, up: dict[str, set[str]]) -> list[Finding]:
    out = []
    for backend in sorted({s.backend for vm in domain.vms for s in snap.servers_of_vm(vm)}):
        if not up.get(backend, set()) - domain.vms:
            out.append(Finding(BACKEND, FAIL, backend, f"backend {backend} has no server UP "
                               f"without {domain.name}",
                               fix=f"put a server of {backend} on another host"))
    return out
