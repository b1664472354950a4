"""The operations the console offers, built as plans of idempotent steps.

A plan is made from a snapshot: it names its target exactly, lists its
steps in words, and carries the guards' findings for the confirmation.
"""
from __future__ import annotations

from ..config import Timing
from ..model import (
    ACTIVE,
    DRAIN,
    PAUSE,
    PROXY,
    RUNNING,
    SERVER_DRAIN,
    SERVER_READY,
    Node,
    ProxyServer,
    Snapshot,
)
from .engine import Context, Effect, Plan, Probe, Run, Step, StepFailed, Unreadable
from .guards import Check, Risk, drain_checks, forced, node_ready
from .moves import move_checks, move_first, scale_back


class PlanError(Exception):
    """The operation cannot even be planned (no such node, ...)."""


def find_node(snap: Snapshot, name: str) -> Node:
    node = snap.node_named(name)
    if node is None:
        known = ", ".join(sorted(n.hostname for n in snap.nodes)) or "none"
        raise PlanError(f"no node named {name!r} (known: {known})")
    return node


def availability_is(node: Node, value: str) -> Probe:
    """Effect probe: the node's availability is `value`."""
    def holds(snap: Snapshot) -> str | None:
        now = snap.get(node.id)
        if not isinstance(now, Node):
            return f"{node.hostname} is not in the swarm"
        return None if now.availability == value else \
            f"{node.hostname} is {now.availability}, not {value}"
    return holds


def _set_availability(node: Node, availability: str, vm: str = "") -> Step:
    """Idempotent; when it takes capacity away, abort puts back what was there before the
    operation (recorded in its params, so a resumed operation restores the same)."""
    def to(value: str | None) -> Run:
        async def run(ctx: Context) -> None:
            wanted = value or ctx.op.plan.params.get("was", {}).get(
                node.hostname, node.availability)
            current = (await ctx.current()).get(node.id)
            if isinstance(current, Node) and current.availability == wanted:
                ctx.log(f"{node.hostname} is already {wanted}")
                return
            await ctx.actions.set_availability(node.swarm_id, wanted)
        return run
    restore = to(None) if availability != ACTIVE else None
    # a drain takes the node's tasks elsewhere, and its VM's proxy servers out with it
    risk = Risk(nodes=frozenset({node.swarm_id}), vms=frozenset({vm} - {""})) \
        if availability == DRAIN else None
    return Step(f"set {node.hostname} availability to {availability}", to(availability),
                restore, key=f"availability:{node.hostname}:{availability}", risk=risk,
                effect=Effect(f"availability:{node.hostname}",
                              availability_is(node, availability)))


def cordon_step(node: Node) -> Step:
    """The node takes no new task; abort puts back its availability from before."""
    return _set_availability(node, PAUSE)


def _set_server(server: ProxyServer, state: str, risk: Risk | None = None) -> Step:
    """Idempotent; while it holds the server out, the operation keeps it so (a restarted
    HAProxy forgets); abort puts back its state from before the operation. `risk`: what
    taking it out starts to take away (a node drain's whole risk, checked from its first
    step on)."""
    name = f"{server.backend}/{server.name}"

    def to(value: str | None) -> Run:
        async def run(ctx: Context) -> None:
            wanted = value or ctx.op.plan.params.get("was", {}).get(name, server.admin)
            ctx.hold(name, wanted)
            current = (await ctx.current()).get(server.id)
            if isinstance(current, ProxyServer) and current.admin == wanted:
                return
            await ctx.actions.set_server_state(name, wanted)
        return run

    def holds(snap: Snapshot) -> str | None:
        if snap.unreadable(PROXY):
            return f"{name} cannot be read"
        now = snap.get(server.id)
        admin = now.admin if isinstance(now, ProxyServer) else "missing"
        return None if admin == state else f"proxy server {name} is {admin}, not {state}"
    restore = to(None) if state != SERVER_READY else None
    if risk is None and state != SERVER_READY and server.vm:
        risk = Risk(vms=frozenset({server.vm}))
    return Step(f"set proxy server {name} to {state}", to(state), restore,
                key=f"server:{name}:{state}", risk=risk, effect=Effect(f"server:{name}", holds))


def _wait_sessions(server: ProxyServer, timing: Timing) -> Step:
    name = f"{server.backend}/{server.name}"

    async def run(ctx: Context) -> None:
        start = server.cur_sessions or 1

        def pending(snap: Snapshot) -> str | None:
            s = snap.get(server.id)
            if not isinstance(s, ProxyServer):
                return f"{name} is not in HAProxy's answer"
            if s.cur_sessions <= timing.sessions_threshold:
                return None
            ctx.say(f"{s.cur_sessions} session(s) left on {server.name}",
                    1 - s.cur_sessions / start)
            return f"{s.cur_sessions} session(s) still on {name}"
        try:
            await ctx.wait_for("sessions to end", pending, timing.sessions_timeout,
                               hypervisor=False, needs=(PROXY,))
        except Unreadable:
            raise          # never go on with a count read before the proxy went away
        except StepFailed as e:   # sessions that outlive the wait move; say so, go on
            ctx.log(f"⚠ {e}; they will move to another server")
    return Step(f"wait for sessions on {name} to end "
                f"(≤{timing.sessions_threshold}, {timing.sessions_timeout:.0f}s)", run,
                key=f"sessions:{name}", effect=Effect(f"server:{name}"), wait=True)


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
            unconverged = [f"{s.name} {why}" for s in snap.services
                           if s.swarm_id in affected and (why := snap.unconverged(s))]
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
                f"({timing.drain_timeout:.0f}s)", run, key=f"drained:{node.hostname}",
                effect=Effect(f"availability:{node.hostname}"), wait=True)


def cordon(snap: Snapshot, name: str) -> Plan:
    node = find_node(snap, name)
    return Plan("cordon", node.hostname, [cordon_step(node)], [node_ready(node),
                Check("effect", "ok", "running tasks stay; no new tasks are scheduled here")])


def activate(snap: Snapshot, name: str) -> Plan:
    node = find_node(snap, name)
    steps = return_steps(snap, node, only_needed=True)
    return Plan("activate", node.hostname, steps, [node_ready(node), Check(
        "effect", "ok", "new tasks may land here; Swarm does not move running tasks back "
        "(rebalance does)")])


def drain_steps(snap: Snapshot, node: Node, timing: Timing,
                leaving: frozenset[str] = frozenset(), cordon: bool = True) -> list[Step]:
    """Session-aware and replica-preserving: the node's proxy servers drain and their
    sessions end; the node is cordoned and its replicated tasks start elsewhere (moves.py);
    then it drains and the moved services go back to their replica counts.

    `leaving`: other nodes of the same window (no replacement goes there); `cordon=False`
    when the window cordoned its nodes already.
    """
    vm = snap.vm_of_node(node)
    servers = snap.servers_of_vm(vm.name) if vm and not snap.proxy_read_only else []
    steps: list[Step] = []
    drain_it = _set_availability(node, DRAIN, vm.name if vm else "")
    for s in servers:
        steps += [_set_server(s, SERVER_DRAIN, drain_it.risk), _wait_sessions(s, timing)]
    if cordon:
        steps.append(cordon_step(node))
    affected = frozenset(t.service_id for t in snap.tasks_on_node(node.swarm_id))
    return steps + [move_first(node, leaving, timing.drain_timeout), drain_it,
                    scale_back(node), _wait_drained(node, affected, timing)]


def return_steps(snap: Snapshot, node: Node, only_needed: bool = False) -> list[Step]:
    """The reverse of a drain: node active, then its proxy servers ready.

    `only_needed` leaves out servers already ready; a window keeps them all,
    since its own earlier steps will have drained them by then.
    """
    vm = snap.vm_of_node(node)
    servers = snap.servers_of_vm(vm.name) if vm else []
    return [_set_availability(node, ACTIVE)] + [
        _set_server(s, SERVER_READY) for s in servers
        if not only_needed or s.admin != SERVER_READY]


def drain(snap: Snapshot, name: str, timing: Timing = Timing(), force: bool = False,
          moved: dict[str, int] | None = None) -> Plan:
    """Session-aware drain: proxy server(s) to drain, sessions end, then the node.

    `force` turns refusals into warnings (kubectl's --force): the drain then
    runs and, if tasks cannot move, times out naming them. `moved`: tasks a resumed
    drain already replaced (their services are scaled up), per service.
    """
    node = find_node(snap, name)
    checks = drain_checks(snap, node, moved) + move_checks(snap, node, moved=moved)
    return Plan("drain", node.hostname, drain_steps(snap, node, timing),
                forced(checks) if force else checks, force=force)

