"""Rehearsal on a simulated twin: a plan, or a failure, played on a copy of the live
cluster in accelerated time, before anyone touches the real one.

Nothing here can reach a real system: the twin's providers are the simulator's,
built here from a snapshot (data, not connections), and its journal and audit go
to a temporary directory that is removed after. What the twin cannot know (how
long a real VM takes to boot, how users come and go) it takes from the
simulator, so timings are indicative; the decisions (guards, placement, quorum,
which step would pause or fail) are the planner's and the engine's own.
"""
from __future__ import annotations

import asyncio
import dataclasses
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .cluster import Cluster
from .config import Timing, WindowOptions
from .model import RUNNING, Snapshot
from .ops import catalog, registry
from .ops.actions import Actions
from .ops.engine import DONE, PAUSED, Engine, Operation, Plan
from .ops.records import Audit, Journal
from .ops.report import markdown
from .ops.resilience import HOST, Domain, domains
from .ops.roles import ADMIN, Access, Identity
from .providers.sim import ManualClock, SimCluster

SPEED = 30.0                # simulated seconds per real second
MARK = "REHEARSAL"          # on everything a rehearsal shows


@dataclass
class Rehearsal:
    plan: Plan
    op: Operation | None        # None when the plan was refused on the twin
    report: str                 # the run's markdown report (empty when refused)
    sessions_moved: int         # sessions whose server went away under them
    speed: float

    @property
    def passed(self) -> bool:
        return self.op is not None and self.op.state == DONE


async def rehearse(snap: Snapshot, kind: str, target: str, timing: Timing = Timing(),
                   options: WindowOptions = WindowOptions(), force: bool = False,
                   speed: float = SPEED) -> Rehearsal:
    """Run the operation `kind` on `target` to its end on a twin of `snap`."""
    twin = SimCluster(world=snap, speed=speed)
    providers = twin.providers()
    # the twin's waits, pauses and time limits pass `speed` times faster, as its world does
    quick = dataclasses.replace(timing, **{f: getattr(timing, f) / speed for f in (
        "sessions_timeout", "drain_timeout", "settle", "paused_limit")})
    options = dataclasses.replace(options, **{f: getattr(options, f) / speed for f in (
        "shutdown_timeout", "update_timeout", "boot_timeout", "engine_stall", "time_limit")})
    with tempfile.TemporaryDirectory(prefix="opsconsole-rehearsal-") as tmp:
        records = Path(tmp)
        cluster = Cluster(providers)
        # the twin's own records, as a twin's user: its changes touch only the twin
        access = Access(ADMIN, Identity(MARK.lower(), "a simulated twin"), registry.PERMISSIONS)
        audit = Audit(records / "audit.jsonl", access.identity)
        engine = Engine(cluster, Actions(providers, audit, access),
                        Journal(records / "journal.jsonl"))
        engine.guard_wait = quick.paused_limit
        plan = catalog.build(kind, await cluster.snapshot(), target, quick, options, force)
        if plan.refused:
            return Rehearsal(plan, None, "", 0, speed)
        op = engine.start(plan)
        assert op.task is not None
        while not op.task.done():
            if op.state == PAUSED and op.plan.steps[op.index].risk is None:
                engine.resume(op)       # a step that waits for the operator (manual host step)
            await asyncio.wait({op.task}, timeout=0.2)
        report = f"# {MARK} on a simulated twin (x{speed:g})\n\n" + markdown(op, MARK.lower())
        return Rehearsal(plan, op, report, twin.sessions_moved, speed)


@dataclass(frozen=True)
class ServiceAfter:
    name: str
    running_before: int
    running_after: int
    desired: int
    moved_to: tuple[str, ...]       # hostnames of the replacements Swarm started


@dataclass
class LossRehearsal:
    domain: Domain
    seconds: float                  # simulated time played after the failure
    quorum_after: int               # Raft's margin after it (negative: quorum lost)
    services: list[ServiceAfter]
    sessions_moved: int
    after: Snapshot

    @property
    def down(self) -> list[str]:
        """Services that run no task at the end although they should."""
        return [s.name for s in self.services if s.desired and not s.running_after]


async def rehearse_loss(snap: Snapshot, name: str, seconds: float = 120.0) -> LossRehearsal:
    """What happens, on a twin of `snap`, when the failure domain `name` (a host or a VM)
    dies now and `seconds` of simulated time pass: played on a hand-moved clock, so it
    takes no real time."""
    domain = next((d for d in domains(snap) if d.name == name), None)
    if domain is None:
        known = ", ".join(d.name for d in domains(snap)) or "none"
        raise ValueError(f"no host or VM named {name!r} (known: {known})")
    clock = ManualClock()
    twin = SimCluster(world=snap, clock=clock)
    cluster = Cluster(twin.providers())
    before = await cluster.snapshot()
    twin.fail(domain.vms, host=domain.name if domain.kind == HOST else "")
    for _ in range(int(seconds)):
        clock.advance(1.0)
        twin.advance()
    after = await cluster.snapshot()
    return LossRehearsal(domain, seconds, after.quorum_tolerance,
                         [_service_after(before, after, s.name) for s in before.services],
                         twin.sessions_moved, after)


def _service_after(before: Snapshot, after: Snapshot, name: str) -> ServiceAfter:
    def running(snap: Snapshot) -> list[str]:
        svc = next(s for s in snap.services if s.name == name)
        return [t.swarm_id for t in snap.tasks_of_service(svc.swarm_id)
                if t.wanted and t.state == RUNNING]
    svc = next(s for s in after.services if s.name == name)
    was = set(running(before))
    hostnames = {n.swarm_id: n.hostname for n in after.nodes}
    new = [t for t in after.tasks_of_service(svc.swarm_id)
           if t.wanted and t.swarm_id not in was and t.node_id]
    return ServiceAfter(name, len(was), after.convergence(svc)[0], after.convergence(svc)[1],
                        tuple(sorted(hostnames.get(t.node_id, t.node_id) for t in new)))
