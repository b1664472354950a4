"""Drains that never lose a replica: a node's tasks start elsewhere before it is drained.

Swarm stops a drained node's tasks first and starts their replacements after, so every
replicated service with a task there runs short until the replacement starts. Here the node
is cordoned first and each such service is scaled up by its tasks on the node: the extra
tasks start on other nodes (Swarm reports a task `running` only once its healthcheck
passed). Then the node is drained: Swarm stops its tasks and gives each freed slot a new
task; scaled back down at once, Swarm removes exactly those (it removes tasks that do not
run, and tasks on no node, first). The node's tasks have moved, no other task restarted,
and the service's spec is as before: only its replica count changed, journaled with the
original before the change and restored by the scale-back, an abort or a rollback.

Where replacements cannot start first (a service labelled `opsconsole.drain=stop-first`,
no node with room for one more task), the plan says so per service and that service is
drained as Swarm does it.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..model import RUNNING, Node, Service, Snapshot, Task
from ..placement import Load, best_node, why_unplaceable
from .engine import Context, Step, StepFailed, Unreadable
from .guards import LANDED, OK, SCALED, WARN, Check

STOP_FIRST_LABEL, STOP_FIRST = "opsconsole.drain", "stop-first"
STOP_GAP_S = 5.0    # about how long a stopped task's replacement takes to start (lab: 2-6 s)
REMOVED = "removed"


@dataclass(frozen=True)
class Move:
    """A replicated service's tasks on a node that is drained."""
    service: Service
    tasks: int                  # its tasks on the node
    fallback: str = ""          # why they stop before their replacements start; "" if not

    def text(self, node: str) -> str:
        name, total = self.service.name, self.service.replicas
        if not self.fallback:
            return (f"{name}: {self.tasks} task(s) start elsewhere before {node} drains "
                    f"({total} of {total} keep running)")
        gap = "without a task" if self.tasks >= total else f"at {total - self.tasks} of {total}"
        return f"{name}: stop-first ({self.fallback}), about {STOP_GAP_S:.0f} s {gap}"


def plan_moves(snap: Snapshot, node: Node, leaving: frozenset[str] = frozenset(),
               moved: dict[str, int] | None = None) -> list[Move]:
    """Per replicated service with tasks on `node`: can its replacements start first?

    Room is judged as Swarm's scheduler would place the extra tasks, one by one, on the
    nodes that stay (not `leaving`, not cordoned), with the load of every move before.
    `moved`: services whose replacements run already (an operation resumed after its move).
    """
    leaving = leaving | {node.swarm_id}
    load = Load.of(snap)
    out: list[Move] = []
    per_service: dict[str, list[Task]] = {}
    for t in snap.tasks_on_node(node.swarm_id):
        per_service.setdefault(t.service_id, []).append(t)
    for sid, tasks in sorted(per_service.items(), key=lambda kv: kv[1][0].service_name):
        svc = snap.service(sid)
        if svc is None or svc.mode != "replicated":
            continue        # global services stop with the node (the `stops` guard)
        why = ""
        if svc.label(STOP_FIRST_LABEL) == STOP_FIRST:
            why = f"label {STOP_FIRST_LABEL}={STOP_FIRST}"
        elif svc.swarm_id in (moved or {}):
            pass
        elif svc.update_state == "updating":
            why = "an update of the service is in progress"
        else:
            for _ in tasks:
                there = best_node(snap.nodes, svc, load, leaving)
                if there is None:
                    why = "no room: " + why_unplaceable(snap.nodes, svc, load, leaving)
                    break
                load.add(there.swarm_id, svc)
        out.append(Move(svc, len(tasks), why))
    return out


def move_checks(snap: Snapshot, node: Node, leaving: frozenset[str] = frozenset(),
                prefix: str = "", moved: dict[str, int] | None = None) -> list[Check]:
    """What the plan says, per service, before confirmation."""
    return [Check("moves", WARN if m.fallback else OK, prefix + m.text(node.hostname))
            for m in plan_moves(snap, node, leaving, moved)]


def _key(node: Node) -> str:
    return f"move:{node.hostname}"


def _scaled(value: object) -> dict[str, dict]:
    return value if isinstance(value, dict) else {}


def move_first(node: Node, leaving: frozenset[str], timeout: float) -> Step:
    """Scale each movable service up by its tasks on the (cordoned) node; wait until the
    extra tasks run. What it scales is journaled, with the original count, before the change.
    A service whose extra tasks do not run in time is said and drained as Swarm does it."""
    async def run(ctx: Context) -> None:
        scaled = _scaled(ctx.recall(SCALED))
        if not scaled:
            snap = await ctx.current()
            now = snap.find(Node, node.id) or node
            scaled = {}
            for m in plan_moves(snap, now, leaving):
                if m.fallback:
                    ctx.log(f"⚠ {m.text(node.hostname)}")
                    continue
                scaled[m.service.swarm_id] = {
                    "name": m.service.name, "original": m.service.replicas,
                    "target": m.service.replicas + m.tasks, "tasks": m.tasks,
                    "before": sorted(t.swarm_id for t in snap.tasks
                                     if t.service_id == m.service.swarm_id and t.wanted)}
            ctx.remember(SCALED, scaled)     # journaled (fsynced) before anything changes
        for sid, s in scaled.items():
            await ctx.actions.scale_service(sid, s["target"])
            ctx.log(f"{s['name']}: scaled {s['original']} → {s['target']} to start "
                    f"{s['tasks']} task(s) elsewhere first")

        def pending(snap: Snapshot) -> str | None:
            short = []
            for sid, s in scaled.items():
                svc = snap.service(sid)
                running = snap.convergence(svc)[0] if svc else 0
                if running < s["target"]:
                    why = next((t.error for t in snap.tasks if t.service_id == sid and t.wanted
                                and t.state != RUNNING and t.error), "")
                    short.append(f"{s['name']} {running}/{s['target']} running"
                                 + (f" ({why})" if why else ""))
            return "; ".join(short) or None
        try:
            snap = await ctx.wait_for(f"the replacements of {node.hostname}'s tasks to run",
                                      pending, timeout, hypervisor=False)
        except Unreadable:
            raise
        except StepFailed as e:
            ctx.log(f"⚠ {e}: those services stop first on {node.hostname}")
            snap = await ctx.current()
        ctx.remember(LANDED, {s["name"]: sorted(_hostname(snap, t) for t in snap.tasks
                                                if t.service_id == sid and t.wanted
                                                and t.swarm_id not in s["before"])
                              for sid, s in scaled.items()})

    async def undo(ctx: Context) -> None:
        await _scale_back(ctx, node)
    return Step(f"start the replacements of {node.hostname}'s tasks on other nodes first",
                run, undo, key=_key(node))


def _hostname(snap: Snapshot, task: Task) -> str:
    n = snap.node(task.node_id)
    return n.hostname if n else "(not placed)"


async def _scale_back(ctx: Context, node: Node) -> list[Task]:
    """Every service the move scaled, back to its original count; the tasks Swarm removed
    that were running before (it should remove only the drained slots' new tasks)."""
    scaled = _scaled(ctx.recall_of(_key(node), SCALED))
    snap = await ctx.current()
    for sid, s in scaled.items():
        svc = snap.service(sid)
        if svc is not None and svc.replicas != s["original"]:
            await ctx.actions.scale_service(sid, s["original"])
            ctx.log(f"{s['name']}: scaled back to {s['original']}")
    after = await ctx.snapshot(hypervisor=False)
    return [t for t in snap.tasks if t.service_id in scaled and t.wanted and t.state == RUNNING
            and t.node_id != node.swarm_id
            and not getattr(after.find(Task, t.id), "wanted", False)]


def scale_back(node: Node) -> Step:
    """After the drain: the original replica counts. Swarm then drops the new tasks of the
    drained slots; a running task it stopped instead is said (and journaled)."""
    async def run(ctx: Context) -> None:
        gone = await _scale_back(ctx, node)
        for t in gone:
            ctx.log(f"⚠ Swarm stopped {t.name} on {_hostname(await ctx.current(), t)} "
                    "rather than a replacement that was not yet running")
        if gone:
            ctx.remember(REMOVED, [t.name for t in gone])
    return Step(f"scale the moved services back to their replica counts ({node.hostname})",
                run, key=f"scale-back:{node.hostname}")


def restore_replicas(notes: dict[str, object]) -> Step | None:
    """Rollback: every service an unfinished operation scaled, back to its original count
    (from the journal's notes); None when it scaled nothing."""
    originals: dict[str, tuple[str, int]] = {}
    for key, value in notes.items():
        if key.endswith(f":{SCALED}"):
            for sid, s in _scaled(value).items():
                originals.setdefault(sid, (str(s.get("name", sid)), int(s["original"])))
    if not originals:
        return None

    async def run(ctx: Context) -> None:
        snap = await ctx.current()
        for sid, (name, original) in originals.items():
            svc = snap.service(sid)
            if svc is None:
                ctx.log(f"⚠ {name} is gone: nothing to restore")
            elif svc.replicas != original:
                await ctx.actions.scale_service(sid, original)
                ctx.log(f"{name}: replicas {svc.replicas} → {original} (as before)")
    names = ", ".join(sorted(n for n, _ in originals.values()))
    return Step(f"restore the replica counts of {names}", run, key="restore-replicas")
