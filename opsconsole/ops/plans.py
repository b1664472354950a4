"""The operations the console offers, built as plans of idempotent steps.

A plan is made from a snapshot: it names its target exactly, lists its
steps in words, and carries the guards' findings for the confirmation.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..model import ACTIVE, DRAIN, PAUSE, RUNNING, Node, ProxyServer, Snapshot
from .engine import Context, Plan, Step, StepFailed
from .guards import FAIL, WARN, Check, drain_checks, node_ready


@dataclass(frozen=True)
class Timing:
    """How long the waits may take; from the inventory's [operations] table."""
    sessions_timeout: float = 120.0     # for sessions on a draining proxy server to end
    sessions_threshold: int = 0         # sessions still allowed when moving on
    drain_timeout: float = 300.0        # for the node's tasks to move and converge


class PlanError(Exception):
    """The operation cannot even be planned (no such node, ...)."""


def find_node(snap: Snapshot, name: str) -> Node:
    node = snap.node_named(name)
    if node is None:
        known = ", ".join(sorted(n.hostname for n in snap.nodes)) or "none"
        raise PlanError(f"no node named {name!r} (known: {known})")
    return node


def _set_availability(node: Node, availability: str) -> Step:
    """Idempotent; when it takes capacity away, abort puts back what was there."""
    def to(value: str):
        async def run(ctx: Context) -> None:
            current = (await ctx.current()).get(node.id)
            if isinstance(current, Node) and current.availability == value:
                ctx.log(f"{node.hostname} is already {value}")
                return
            await ctx.actions.set_availability(node.swarm_id, value)
        return run
    restore = to(node.availability) if availability != ACTIVE else None
    return Step(f"set {node.hostname} availability to {availability}", to(availability), restore)


def _set_server(server: ProxyServer, state: str) -> Step:
    """Idempotent; when it takes the server out, abort puts back its earlier state."""
    def to(value: str):
        async def run(ctx: Context) -> None:
            current = (await ctx.current()).get(server.id)
            if isinstance(current, ProxyServer) and current.admin == value:
                return
            await ctx.actions.set_server_state(f"{server.backend}/{server.name}", value)
        return run
    restore = to(server.admin) if state != "ready" else None
    return Step(f"set proxy server {server.backend}/{server.name} to {state}", to(state), restore)


def _wait_sessions(server: ProxyServer, timing: Timing) -> Step:
    async def run(ctx: Context) -> None:
        start = server.cur_sessions or 1

        def pending(snap: Snapshot) -> str | None:
            s = snap.get(server.id)
            n = s.cur_sessions if isinstance(s, ProxyServer) else 0
            if n <= timing.sessions_threshold:
                return None
            ctx.say(f"{n} session(s) left on {server.name}", 1 - n / start)
            return f"{n} session(s) still on {server.backend}/{server.name}"
        try:
            await ctx.wait_for("sessions to end", pending, timing.sessions_timeout,
                               hypervisor=False)
        except StepFailed as e:   # sessions that outlive the wait move; say so, go on
            ctx.log(f"⚠ {e}; they will move to another server")
    return Step(f"wait for sessions on {server.backend}/{server.name} to end "
                f"(≤{timing.sessions_threshold}, {timing.sessions_timeout:.0f}s)", run)


def _wait_drained(node: Node, affected: frozenset[str], timing: Timing) -> Step:
    """Done when nothing runs on the node and the services that ran there converged.

    Only those services: an unrelated service stuck elsewhere must not hold
    this drain hostage. On timeout the message names each pending task and
    Swarm's reason for it.
    """
    async def run(ctx: Context) -> None:
        first = len((await ctx.current()).tasks_on_node(node.swarm_id)) or 1

        def pending(snap: Snapshot) -> str | None:
            here = [t for t in snap.tasks_on_node(node.swarm_id, wanted_only=False)
                    if t.wanted or t.state == RUNNING]
            waiting = [t for t in snap.tasks if t.service_id in affected and t.wanted
                       and t.state != RUNNING and t.node_id != node.swarm_id]
            unconverged = [s.name for s in snap.services
                           if s.swarm_id in affected and not snap.converged(s)]
            if not here and not waiting and not unconverged:
                return None
            ctx.say(f"{len(here)} task(s) on {node.hostname}, {len(waiting)} starting "
                    "elsewhere", 1 - len(here) / first)
            parts = [f"{t.name} {t.state} on {node.hostname}" for t in here]
            parts += [f"{t.name} {t.state}" + (f" ({t.error})" if t.error else "")
                      for t in waiting]
            return "; ".join(parts) or "converging: " + ", ".join(unconverged)
        await ctx.wait_for(f"{node.hostname} to drain", pending, timing.drain_timeout,
                           hypervisor=False)
    return Step(f"wait until {node.hostname} runs no tasks and its services converge "
                f"({timing.drain_timeout:.0f}s)", run)


def cordon(snap: Snapshot, name: str) -> Plan:
    node = find_node(snap, name)
    return Plan("cordon", node.hostname, [_set_availability(node, PAUSE)], [node_ready(node),
                Check("effect", "ok", "running tasks stay; no new tasks are scheduled here")])


def activate(snap: Snapshot, name: str) -> Plan:
    node = find_node(snap, name)
    steps = return_steps(snap, node, only_needed=True)
    return Plan("activate", node.hostname, steps, [node_ready(node), Check(
        "effect", "ok", "new tasks may land here; Swarm does not move running tasks back "
        "(rebalance does)")])


def drain_steps(snap: Snapshot, node: Node, timing: Timing) -> list[Step]:
    """Session-aware: the node's proxy servers drain and their sessions end first."""
    vm = snap.vm_of_node(node)
    servers = snap.servers_of_vm(vm.name) if vm and not snap.proxy_read_only else []
    steps: list[Step] = []
    for s in servers:
        steps += [_set_server(s, "drain"), _wait_sessions(s, timing)]
    affected = frozenset(t.service_id for t in snap.tasks_on_node(node.swarm_id))
    return steps + [_set_availability(node, DRAIN), _wait_drained(node, affected, timing)]


def return_steps(snap: Snapshot, node: Node, only_needed: bool = False) -> list[Step]:
    """The reverse of a drain: node active, then its proxy servers ready.

    `only_needed` leaves out servers already ready; a window keeps them all,
    since its own earlier steps will have drained them by then.
    """
    vm = snap.vm_of_node(node)
    servers = snap.servers_of_vm(vm.name) if vm else []
    return [_set_availability(node, ACTIVE)] + [
        _set_server(s, "ready") for s in servers if not only_needed or s.admin != "ready"]


def drain(snap: Snapshot, name: str, timing: Timing = Timing(), force: bool = False) -> Plan:
    """Session-aware drain: proxy server(s) to drain, sessions end, then the node.

    `force` turns refusals into warnings (kubectl's --force): the drain then
    runs and, if tasks cannot move, times out naming them.
    """
    node = find_node(snap, name)
    steps = drain_steps(snap, node, timing)

    def guard(now: Snapshot) -> list[Check]:
        current = now.get(node.id)
        return [] if not isinstance(current, Node) else [
            c for c in drain_checks(now, current) if c.name == "capacity"]
    checks = drain_checks(snap, node)
    if force:
        checks = [Check(c.name, WARN, c.message + " (overridden by force)")
                  if c.level == FAIL else c for c in checks]
    return Plan("drain", node.hostname, steps, checks, None if force else guard)


PLANS = {"cordon": cordon, "drain": drain, "activate": activate}


def make_plan(kind: str, snap: Snapshot, target: str, timing: Timing = Timing(),
              force: bool = False) -> Plan:
    if kind not in PLANS:
        raise PlanError(f"unknown operation {kind!r} (known: {', '.join(PLANS)})")
    return drain(snap, target, timing, force) if kind == "drain" else PLANS[kind](snap, target)

