"""Everything that is wrong now, worst first, each with since when and its entity.

Pure over a snapshot (plus the journal's unfinished operations); `Diagnosis`
only remembers when each concern was first seen, so "since" survives refreshes
for the facts that Swarm, HAProxy and Hyper-V do not date themselves.
"""
from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, replace

from ..model import (
    ACTIVE,
    DOWN,
    MAINT,
    MANAGER,
    READY,
    RUNNING,
    UP,
    Snapshot,
)
from .guards import FAIL, WARN
from .records import STALE_S, OpRecord

ORDER = {FAIL: 0, WARN: 1}


@dataclass(frozen=True)
class Concern:
    level: str                      # FAIL: something is down or unknown; WARN: at risk, odd
    kind: str                       # "node", "quorum", "service", "proxy", "host", "vm", ...
    message: str
    entity: str = ""                # the entity id to jump to ("" when none)
    since: float = 0.0              # epoch seconds it was first seen (0: not known)

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.kind, self.entity, self.message)


def concerns(snap: Snapshot, unfinished: Iterable[OpRecord] = ()) -> list[Concern]:
    """What is wrong in `snap`, unsorted, without first-seen times."""
    out = [Concern(FAIL, "unreadable", str(p), p.entity, p.since) for p in snap.problems]
    out += _swarm(snap) + _services(snap) + _proxy(snap) + _hyperv(snap)
    out += _operations(snap, unfinished)
    return out


def _during(snap: Snapshot) -> str:
    return f" (during {snap.lock.title})" if snap.lock else " (no operation running)"


def _swarm(snap: Snapshot) -> list[Concern]:
    out = []
    tol = snap.quorum_tolerance
    if snap.managers and tol < 0:
        out.append(Concern(FAIL, "quorum", "Raft has lost quorum: the swarm cannot be changed "
                           "and reschedules nothing"))
    elif snap.managers and tol == 0:
        out.append(Concern(WARN, "quorum", f"quorum tolerates no manager loss "
                           f"({sum(m.votes for m in snap.managers)} of {len(snap.managers)} "
                           "vote)"))
    for n in snap.nodes:
        if n.state != READY:
            level = FAIL if n.role == MANAGER or n.state == DOWN else WARN
            out.append(Concern(level, "node", f"{n.hostname} is {n.state}"
                               + (f": {n.message}" if n.message else ""), n.id))
        elif n.role == MANAGER and not n.votes:
            out.append(Concern(FAIL, "node", f"manager {n.hostname} is unreachable in Raft",
                               n.id))
        if n.availability != ACTIVE:
            out.append(Concern(WARN, "node", f"{n.hostname} is {n.availability}"
                               + _during(snap), n.id))
    versions = {n.engine_version for n in snap.nodes if n.engine_version}
    if len(versions) > 1:
        by = {v: sorted(n.hostname for n in snap.nodes if n.engine_version == v)
              for v in sorted(versions)}
        out.append(Concern(WARN, "engine", "engine versions differ: " + "; ".join(
            f"{v} on {', '.join(h)}" for v, h in by.items())))
    return out


def _services(snap: Snapshot) -> list[Concern]:
    out = []
    for svc in snap.services:
        why = snap.unconverged(svc)
        if svc.update_state in ("paused", "rollback_paused"):
            out.append(Concern(FAIL, "service", f"{svc.name}: update {svc.update_state}",
                               svc.id))
        elif svc.update_state == "rollback_completed":
            out.append(Concern(WARN, "service", f"{svc.name}: its last update was rolled back",
                               svc.id))
        elif why:
            running, desired = snap.convergence(svc)
            level = FAIL if desired and not running else WARN
            reason = _task_error(snap, svc.swarm_id)
            out.append(Concern(level, "service", f"{svc.name}: {why}{reason}", svc.id))
    return out


def _task_error(snap: Snapshot, service_id: str) -> str:
    """Swarm's reason for the service's task that is not running, if it gives one."""
    for t in snap.tasks_of_service(service_id):
        if (t.wanted and t.state != RUNNING or t.state in ("failed", "rejected")) and (
                t.error or t.message):
            return f" ({t.name} {t.state}: {t.error or t.message})"
    return ""


def _proxy(snap: Snapshot) -> list[Concern]:
    out = []
    for s in snap.servers:
        status = s.status.split()[0] if s.status else ""
        if s.admin != "ready" or status in (MAINT, "DRAIN"):
            out.append(Concern(WARN, "proxy", f"{s.backend}/{s.name} is "
                               f"{s.admin if s.admin != 'ready' else status}" + _during(snap),
                               s.id))
        elif status != UP:
            others = [o for o in snap.servers if o.backend == s.backend and o != s
                      and o.status.split()[:1] == [UP]]
            out.append(Concern(WARN if others else FAIL, "proxy",
                               f"{s.backend}/{s.name} is {s.status}"
                               + ("" if others else f": {s.backend} has no server UP"), s.id))
    return out


def _hyperv(snap: Snapshot) -> list[Concern]:
    out = []
    for h in snap.hosts:
        if h.state != "up":
            out.append(Concern(FAIL, "host", f"{h.name} is {h.state}"
                               + (f": {h.message}" if h.message else ""), h.id))
        elif h.pending_reboot:
            out.append(Concern(WARN, "host", f"{h.name} has a reboot pending", h.id))
    for v in snap.vms:
        if v.state in ("off", "saved", "unknown"):
            out.append(Concern(WARN, "vm", f"{v.name} is {v.state}" + _during(snap), v.id))
    return out


def _operations(snap: Snapshot, unfinished: Iterable[OpRecord]) -> list[Concern]:
    out = []
    for rec in unfinished:
        if not rec.liveness(snap.taken_at or None):
            out.append(Concern(WARN, "operation", f"{rec.kind} {rec.target} is unfinished "
                               f"({rec.op}): resume, roll back or abandon it", "",
                               rec.beat))
    lock = snap.lock
    if lock and lock.beat and (snap.taken_at or time.time()) - lock.beat > STALE_S:
        out.append(Concern(FAIL, "lock", f"the cluster lock of {lock.title} by {lock.holder} "
                           "is stale (no heartbeat): nothing can run until it is broken",
                           "", lock.beat))
    return out


class Diagnosis:
    """Concerns with the time each was first seen, kept across refreshes."""

    def __init__(self) -> None:
        self._first: dict[tuple[str, str, str], float] = {}

    def __call__(self, snap: Snapshot, unfinished: Iterable[OpRecord] = ()) -> list[Concern]:
        now = snap.taken_at or time.time()
        found = concerns(snap, unfinished)
        first = {c.key: c.since or self._first.get(c.key, now) for c in found}
        self._first = first
        out = [replace(c, since=first[c.key]) for c in found]
        return sorted(out, key=lambda c: (ORDER.get(c.level, 2), c.since, c.kind, c.message))
