"""Maintenance windows: a whole physical host, or a rolling update VM by VM.

Both are plans of small idempotent steps built from the node steps in
plans.py, so the engine journals, pauses, aborts and resumes them like any
other operation. What a plan decided from the cluster (which worker to
promote, which VMs, in which order) is kept in `plan.params`, so a console
that died mid-way rebuilds the very same plan from the journal.
"""
from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import asdict

from ..config import HOST_STEPS, Timing, WindowOptions
from ..model import (
    MANAGER,
    PROXY,
    READY,
    RUNNING,
    SWARM,
    UP,
    VM,
    WORKER,
    Node,
    Service,
    Snapshot,
    constraint_holds,
    host_id,
)
from ..providers.base import ProviderError, QuorumRefused
from .engine import PAUSED, Context, Effect, Plan, Probe, Run, Step, StepFailed
from .guards import (
    FAIL,
    OK,
    WARN,
    Check,
    Risk,
    capacity,
    forced,
    proxy_keeps_a_server,
    quorum_after_loss,
    spread,
    stops,
)
from .moves import move_checks
from .plans import PlanError, cordon_step, drain_steps, return_steps


# -- waits on the cluster, as steps ---------------------------------------------------
def _wait(title: str, what: str, probe: Probe, timeout: float, group: str = "",
          hypervisor: bool = True, key: str = "", subject: str = "") -> Step:
    async def run(ctx: Context) -> None:
        await ctx.wait_for(what, probe, timeout, hypervisor)
    return Step(title, run, group=group, key=key, wait=True,
                effect=Effect(subject) if subject else None)


def vm_is(vm: str, wanted: str) -> Probe:
    """Probe (and effect): the VM's power state is `wanted`."""
    def probe(snap: Snapshot) -> str | None:
        v = snap.vm(vm)
        state = v.state if v else "missing"
        return None if state == wanted else f"{vm} is {state}"
    return probe


def wait_vm(vm: str, wanted: str, timeout: float, group: str = "") -> Step:
    return _wait(f"wait until {vm} is {wanted}", f"{vm} to be {wanted}", vm_is(vm, wanted),
                 timeout, group, key=f"wait-vm:{vm}:{wanted}", subject=f"power:{vm}")


def _node_back(node: Node, engine_not: str = "") -> Probe:
    """Probe: the node is Ready (a manager also reachable in Raft; with `engine_not`, on
    another engine version)."""
    def probe(snap: Snapshot) -> str | None:
        n = snap.get(node.id)
        if not isinstance(n, Node):
            return f"{node.hostname} is not in the swarm"
        if n.state != READY:
            return f"{node.hostname} is {n.state}"
        # a manager back up is Ready before Raft counts it again; until then losing
        # another manager (or demoting the stand-in) would cost the quorum
        if n.role == MANAGER and n.reachability != "reachable":
            return f"manager {node.hostname} is {n.reachability or 'not yet'} reachable in Raft"
        if engine_not and n.engine_version == engine_not:
            return f"{node.hostname} still runs engine {n.engine_version}"
        return None
    return probe


def wait_node_back(node: Node, vm: str, options: WindowOptions, group: str = "",
                   engine_not: str = "") -> Step:
    """Wait for a returning node to be Ready; restart a stalled engine once.

    Swarm sometimes leaves a restarted node Down for good although its VM runs
    and its daemon answers: the agent's session with the managers stalls
    (moby/moby#38107). What an engineer would do is restart the engine; this
    step does it once, in the log and the audit, after `engine_stall` seconds.
    """
    probe = _node_back(node, engine_not)
    what = f"{node.hostname} to be {READY}"
    stall = options.engine_stall

    async def run(ctx: Context) -> None:
        if stall <= 0 or ctx.actions.providers.shell is None or not options.engine_restart_command:
            await ctx.wait_for(what, probe, options.boot_timeout)
            return
        t0, since = time.monotonic(), None

        def back_or_stalled(snap: Snapshot) -> str | None:
            nonlocal since
            pending = probe(snap)
            n, v = snap.get(node.id), snap.vm(vm)
            stuck = (pending is not None and isinstance(n, Node) and n.state != READY
                     and getattr(v, "state", "unknown") in (RUNNING, "unknown"))
            since = (since or time.monotonic()) if stuck else None
            return None if since is not None and time.monotonic() - since >= stall else pending
        snap = await ctx.wait_for(what, back_or_stalled, options.boot_timeout)
        if probe(snap) is None:
            return
        ctx.log(f"⚠ {vm} runs but node {node.hostname} has stayed "
                f"{getattr(snap.get(node.id), 'state', '?')} for {stall:.0f}s: restarting its "
                f"Docker engine (`{options.engine_restart_command}`)")
        try:
            await ctx.actions.run_command(vm, options.engine_restart_command, 120.0,
                                          on_line=lambda line: ctx.log(f"{vm}│ {line}"))
        except ProviderError as e:
            ctx.log(f"could not restart the engine on {vm}: {e}; still waiting")
        left = options.boot_timeout - (time.monotonic() - t0)
        await ctx.wait_for(what, probe, max(left, stall))
    extra = f" with an engine newer than {engine_not}" if engine_not else ""
    return Step(f"wait until node {node.hostname} is {READY}{extra}", run, group=group,
                key=f"node-back:{node.hostname}", wait=True, effect=Effect(f"power:{vm}"))


def wait_healthy(vms: list[str], timing: Timing, group: str = "") -> Step:
    """The gate before going on: every service converged (Swarm's UpdateStatus included),
    the VMs' proxy servers UP, all of it held for the settle time."""
    def probe(snap: Snapshot) -> str | None:
        bad = [f"{s.name} {why}" for s in snap.services if (why := snap.unconverged(s))]
        bad += [f"{s.backend}/{s.name} {s.status}" for v in vms for s in snap.servers_of_vm(v)
                if not s.status.startswith(UP)]
        return "; ".join(bad) or None

    async def run(ctx: Context) -> None:
        await ctx.wait_for("the cluster to be healthy", probe, timing.drain_timeout,
                           hypervisor=False, needs=(SWARM, PROXY), hold=timing.settle)
    return Step(f"health gate: services converged, proxy servers of {', '.join(vms)} UP",
                run, group=group, key=f"health:{','.join(vms)}", wait=True)


def act(title: str, call: Run, group: str = "", undo: Run | None = None, key: str = "",
        risk: Risk | None = None,
        effect: Effect | None = None) -> Step:
    async def run(ctx: Context) -> None:
        await call(ctx)
    return Step(title, run, undo, group, key=key, risk=risk, effect=effect)


def role_is(node: Node, role: str) -> Probe:
    def holds(snap: Snapshot) -> str | None:
        now = snap.get(node.id)
        actual = now.role if isinstance(now, Node) else "gone"
        return None if actual == role else f"{node.hostname} is a {actual}, not a {role}"
    return holds


def promote_stand_in(node: Node, why: str, patience: float = 60.0) -> Step:
    """The stand-in votes while managers are away; abort demotes it again. Done only once
    Raft counts it (reachable): a promoted node votes half a second or more after Swarm
    says manager, and a manager lost in between would cost the quorum."""
    back = _node_back(node)

    def voting(snap: Snapshot) -> str | None:
        now = snap.find(Node, node.id)
        if now is not None and now.role != MANAGER:
            return f"{node.hostname} is still a {now.role}"
        return back(snap)

    async def run(ctx: Context) -> None:
        await ctx.actions.set_role(node.swarm_id, MANAGER)
        await ctx.wait_for(f"{node.hostname} to vote in Raft", voting, patience,
                           hypervisor=False)
    return Step(f"promote {node.hostname} to manager {why}", run,
                lambda ctx: ctx.actions.set_role(node.swarm_id, WORKER),
                key=f"promote:{node.hostname}",
                effect=Effect(f"role:{node.hostname}", role_is(node, MANAGER)))


def demote_stand_in(node: Node, patience: float = 60.0) -> Step:
    """Swarm refuses a demotion that would cost quorum, also for a while after a manager
    came back (Ready and reachable before Raft counts it as active): retried until then."""
    async def run(ctx: Context) -> None:
        now = (await ctx.current()).get(node.id)
        if isinstance(now, Node) and now.role == WORKER:
            ctx.log(f"{node.hostname} is already a worker")
            return
        deadline = time.monotonic() + patience
        while True:
            await ctx.checkpoint()
            try:
                await ctx.actions.set_role(node.swarm_id, WORKER)
                return
            except QuorumRefused:
                if time.monotonic() > deadline:
                    raise
                ctx.say(f"Swarm does not let {node.hostname} go yet (quorum); retrying")
            await asyncio.sleep(2.0)
    return Step(f"demote {node.hostname} back to worker", run, key=f"demote:{node.hostname}",
                risk=Risk(managers=frozenset({node.swarm_id})),
                effect=Effect(f"role:{node.hostname}", role_is(node, WORKER)))


# -- host maintenance --------------------------------------------------------------------
def _host_vms(snap: Snapshot, host: str) -> list[VM]:
    if snap.host(host) is None:
        raise PlanError(f"no host named {host!r} (known: "
                        f"{', '.join(sorted(h.name for h in snap.hosts)) or 'none'})")
    vms = [v for v in snap.vms if v.host == host]
    # workers first, managers last: the control plane stays whole as long as it can
    return sorted(vms, key=lambda v: (_role(snap, v) == MANAGER, v.name))


def _role(snap: Snapshot, vm: VM) -> str:
    node = snap.node_of_vm(vm)
    return node.role if node else ""


def _stand_in(snap: Snapshot, host: str) -> Node | None:
    """A ready, active worker on another host that may vote while this host is down."""
    workers = [n for n in snap.nodes if n.role == WORKER and n.schedulable
               and (vm := snap.vm_of_node(n)) and vm.host != host]
    return min(workers, key=lambda n: n.hostname) if workers else None


def host_maintenance(snap: Snapshot, host: str, timing: Timing = Timing(),
                     options: WindowOptions = WindowOptions(), params: dict | None = None,
                     force: bool = False, moved: dict[str, int] | None = None) -> Plan:
    if options.host_step not in HOST_STEPS:
        raise PlanError(f"unknown host step {options.host_step!r} (one of {', '.join(HOST_STEPS)})")
    vms = _host_vms(snap, host)
    nodes = [n for v in vms if (n := snap.node_of_vm(v))]
    leaving = frozenset(n.swarm_id for n in nodes)
    managers = [n for n in nodes if n.role == MANAGER]
    params = dict(params or {})
    params["options"] = asdict(options)     # a resume rebuilds the window with them
    params.setdefault("host", host)
    params.setdefault("vms", [v.name for v in vms])

    quorum = quorum_after_loss(snap, managers)
    promote = params.get("promote")
    if promote is None:
        stand_in = _stand_in(snap, host) if quorum.level == FAIL else None
        promote = stand_in.hostname if stand_in else ""
        params["promote"] = promote
    checks = [capacity(snap, leaving, moved), stops(snap, leaving), spread(snap, leaving),
              proxy_keeps_a_server(snap, set(params["vms"]))]
    if promote:
        checks.append(Check("quorum", OK, f"{quorum.message}; so {promote} "
                            "is promoted to manager for the window and demoted after"))
    else:
        checks.append(quorum)
    unmatched = [v.name for v in vms if snap.node_of_vm(v) is None]
    if unmatched:
        checks.append(Check("nodes", WARN, f"no swarm node for {', '.join(unmatched)}: "
                            "only powered off and on"))

    steps: list[Step] = []
    stand_in_node = snap.node_named(promote) if promote else None
    if stand_in_node:
        steps.append(promote_stand_in(stand_in_node, "for the window"))
    # cordoned first: no replacement of a drained node's task starts on another of them
    steps += [cordon_step(node) for node in nodes]
    for node in nodes:
        steps += drain_steps(snap, node, timing, leaving, cordon=False)
        checks += move_checks(snap, node, leaving, f"{node.hostname}: ", moved)
    for vm in vms:
        steps.append(shut_down(snap, vm, options))
        steps.append(wait_vm(vm.name, "off", options.shutdown_timeout))
    steps += _host_steps(host, options)
    for vm in vms:
        steps.append(start(vm.name))
    for vm in vms:
        steps.append(wait_vm(vm.name, RUNNING, options.boot_timeout))
    for vm in vms:
        if (back := snap.node_of_vm(vm)) is not None:
            steps.append(wait_node_back(back, vm.name, options))
    for node in nodes:
        steps += return_steps(snap, node)
    params.setdefault("rebalance", _crowded(snap, leaving))
    steps.append(_rebalance(snap, params["rebalance"], timing))
    if stand_in_node:
        steps.append(demote_stand_in(stand_in_node))
    steps.append(wait_healthy(params["vms"], timing))
    return Plan("maintenance", host, steps, forced(checks) if force else checks, force=force,
                params=params, report=True)


def shut_down(snap: Snapshot, vm: VM, options: WindowOptions) -> Step:
    """Graceful shutdown; the guards check quorum (a manager stops voting), capacity and the
    proxy first, on data read for this step."""
    node = snap.node_of_vm(vm)
    ids = frozenset({node.swarm_id}) if node else frozenset()
    return act(f"shut down {vm.name} (graceful, {options.shutdown_timeout:.0f}s)",
               lambda ctx: ctx.actions.stop_vm(vm.name, options.shutdown_timeout),
               undo=_start_again(vm.name, options), key=f"shutdown:{vm.name}",
               risk=Risk(nodes=ids, managers=ids if node and node.role == MANAGER
                         else frozenset(), vms=frozenset({vm.name})),
               effect=Effect(f"power:{vm.name}", _off_or_going(vm.name)))


def _off_or_going(vm: str) -> Probe:
    def holds(snap: Snapshot) -> str | None:
        state = getattr(snap.vm(vm), "state", "missing")
        return None if state in ("off", "stopping") else f"{vm} is {state}, not off"
    return holds


def start(vm: str) -> Step:
    return act(f"start {vm}", lambda ctx: ctx.actions.start_vm(vm), key=f"start:{vm}",
               effect=Effect(f"power:{vm}", _on_or_coming(vm)))


def _on_or_coming(vm: str) -> Probe:
    def holds(snap: Snapshot) -> str | None:
        state = getattr(snap.vm(vm), "state", "missing")
        return None if state in (RUNNING, "starting") else f"{vm} is {state}, not running"
    return holds


def _reboot(vm: str, options: WindowOptions) -> Run:
    """Reboot once, even across a console crash: the boot id before is journaled.

    Run again after a crash, a VM already on another boot id has rebooted; one
    still on the old id either never got the command or is about to go down,
    so it gets a short while to go, and the command again if it does not.
    """
    async def run(ctx: Context) -> None:
        shell = ctx.actions.providers.shell
        if shell is None:
            raise StepFailed("no [ssh] in the inventory: VMs cannot be rebooted")
        before = ctx.recall("boot_id")
        if before is None:
            before = await shell.boot_id(vm)
            ctx.remember("boot_id", before)
        else:
            try:
                await shell.wait_reboot(vm, 15.0, options.boot_timeout, boot_id=str(before))
                return
            except ProviderError:
                ctx.log(f"{vm} did not reboot before the restart; rebooting it now")
        await ctx.actions.reboot_vm(vm, options.reboot_command)
        await shell.wait_reboot(vm, min(options.boot_timeout, 120.0), options.boot_timeout,
                                boot_id=str(before))
    return run


def _start_again(vm: str, options: WindowOptions) -> Run:
    """Undo of a shutdown: let a shutdown in progress finish, then start the VM."""
    async def undo(ctx: Context) -> None:
        def settled(snap: Snapshot) -> str | None:
            state = getattr(snap.vm(vm), "state", "missing")
            return None if state in ("off", RUNNING, "saved") else f"{vm} is {state}"
        snap = await ctx.wait_for(f"{vm} to finish stopping", settled, options.shutdown_timeout)
        if getattr(snap.vm(vm), "state", "") != RUNNING:
            await ctx.actions.start_vm(vm)
    return undo


def host_is_up(host: str) -> Probe:
    def probe(snap: Snapshot) -> str | None:
        state = getattr(snap.host(host), "state", "missing")
        return None if state == "up" else f"{host} is {state}"
    return probe


def wait_host_up(host: str, timeout: float) -> Step:
    return _wait(f"wait until {host} is up", f"{host} to be up", host_is_up(host), timeout,
                 key=f"host-up:{host}", subject=host_id(host))


def _host_steps(host: str, options: WindowOptions) -> list[Step]:
    host_up = host_is_up(host)
    if options.host_step == "manual":
        async def hold(ctx: Context) -> None:
            ctx.op.state = PAUSED
            ctx.log(f"⏸ {host} is yours: do the work, then {ctx.engine.press('pause', 'resume')}"
                    " (or `opsconsole resume`) to bring everything back")
            await ctx.checkpoint()
        return [Step(f"hold: the operator works on {host}, then resumes the operation", hold,
                     key=f"hold:{host}", risk=Risk(host=host))]
    what = f"run {options.script!r}" if options.host_step == "script" else "install updates"
    off = Risk(host=host)       # never with a VM of the host still running
    return [
        act(f"{what} on {host}", lambda ctx: ctx.actions.install_updates(
            host, options.update_timeout, options.script if options.host_step == "script" else ""),
            key=f"host-update:{host}", risk=off),
        _wait(f"wait for {host} to finish", f"{host} to finish", host_up, options.update_timeout,
              key=f"host-finish:{host}", subject=host_id(host)),
        act(f"restart {host}", lambda ctx: ctx.actions.restart_host(host),
            key=f"host-restart:{host}", risk=off),
        _wait(f"wait until {host} is up again", f"{host} to come back", host_up,
              options.boot_timeout, key=f"host-up:{host}", subject=host_id(host)),
    ]


def _crowded(snap: Snapshot, leaving: frozenset[str]) -> list[str]:
    """Replicated services whose tasks will crowd onto the other nodes."""
    return sorted({t.service_id for n in leaving for t in snap.tasks_on_node(n)
                   if getattr(snap.service(t.service_id), "mode", "") == "replicated"})


def crowding(snap: Snapshot, svc: Service) -> str:
    """Where a replicated service runs more tasks on a node than an even spread over the
    nodes it may use would ("" when nowhere): rebalancing it restarts every task, so only
    then is it worth it."""
    eligible = [n for n in snap.nodes if n.schedulable
                and all(constraint_holds(c, n) for c in svc.constraints)]
    if not eligible:
        return ""
    share = -(-svc.replicas // len(eligible))
    here = Counter(t.node_id for t in snap.tasks if t.service_id == svc.swarm_id and t.wanted)
    node, most = max(here.items(), key=lambda kv: kv[1], default=("", 0))
    if most <= share:
        return ""
    where = snap.find(Node, f"node:{node}")
    return f"{most} tasks on {where.hostname if where else node} (an even spread: {share})"


def _rebalance(snap: Snapshot, services: list[str], timing: Timing) -> Step:
    """Swarm does not move tasks back: spread again the services that crowded elsewhere,
    and wait for each update Swarm starts to complete (it replaces tasks one by one)."""
    names = {s: getattr(snap.service(s), "name", s) for s in services}

    async def run(ctx: Context) -> None:
        snap = await ctx.current()
        crowded = []
        for sid in services:
            svc = snap.find(Service, f"service:{sid}")
            if svc is not None and not crowding(snap, svc):
                ctx.log(f"{names[sid]} is spread already: not rebalanced (no task restarts)")
                continue
            await ctx.actions.rebalance(sid)
            ctx.log(f"rebalancing {names[sid]}")
            crowded.append(sid)

        def pending(now: Snapshot) -> str | None:
            bad = [f"{names[sid]} {why}" for sid in crowded
                   if (svc := now.service(sid)) is not None
                   and (why := now.unconverged(svc))]
            return "; ".join(bad) or None
        await ctx.wait_for("the rebalanced services to converge", pending,
                           timing.drain_timeout, hypervisor=False)
    return Step(f"rebalance {', '.join(names.values()) or 'nothing'}", run, key="rebalance")


# -- rolling update -------------------------------------------------------------------------
def rolling_update(snap: Snapshot, targets: list[str] | None = None, timing: Timing = Timing(),
                   options: WindowOptions = WindowOptions(), params: dict | None = None,
                   label: str = "", force: bool = False,
                   moved: dict[str, int] | None = None) -> Plan:
    """Workers first, then managers one at a time; each VM drained, updated, returned.

    `label` is how the operator named the targets ("cluster", a host, VMs): the
    plan's target, and the word the confirmation asks for.
    """
    if not options.update_command and not options.reboot:
        raise PlanError("nothing to roll: set update_command (and/or reboot) in [maintenance]")
    params = dict(params or {})
    params["options"] = asdict(options)     # a resume rebuilds the window with them
    if "vms" not in params:
        chosen = [v for v in snap.vms if not targets or v.name in targets]
        missing = sorted(set(targets or ()) - {v.name for v in chosen})
        if missing:
            raise PlanError(f"no VM named {', '.join(missing)}")
        chosen.sort(key=lambda v: (_role(snap, v) == MANAGER, v.name))
        params["vms"] = [v.name for v in chosen]
    found = [snap.vm(n) for n in params["vms"]]
    vms = [vm for vm in found if vm is not None]
    if len(vms) != len(found):
        raise PlanError("a VM of the recorded plan is gone from the cluster")
    # a manager that reboots stops voting: with too few managers, a worker that is
    # already updated votes in its place while the managers go, and stops after
    managers = [n for vm in vms if (n := snap.node_of_vm(vm)) and n.role == MANAGER]
    lone = next((m for m in managers if quorum_after_loss(snap, [m]).level == FAIL), None)
    if "promote" not in params:
        stand_in = _stand_in(snap, "") if lone else None
        params["promote"] = stand_in.hostname if stand_in else ""
    stand_in_node = snap.node_named(params["promote"]) if params["promote"] else None
    checks: list[Check] = []
    if lone and not stand_in_node:
        checks.append(quorum_after_loss(snap, [lone]))
    elif stand_in_node:
        checks.append(Check("quorum", OK, f"{stand_in_node.hostname} votes as a manager while "
                            "the managers reboot, and is demoted after"))
    else:
        checks.append(quorum_after_loss(snap, managers[:1]))
    steps: list[Step] = []
    promoted = False
    for vm in vms:
        node = snap.node_of_vm(vm)
        if stand_in_node and node is not None and node.role == MANAGER and not promoted:
            steps.append(promote_stand_in(stand_in_node, "while the managers reboot"))
            promoted = True
        if node is None:
            checks.append(Check("nodes", WARN, f"{vm.name} has no swarm node: skipped"))
            continue
        one = frozenset({node.swarm_id})
        for c in (capacity(snap, one, moved), stops(snap, one), spread(snap, one),
                  proxy_keeps_a_server(snap, {vm.name})):
            if c.level != OK:
                checks.append(Check(c.name, c.level, f"{vm.name}: {c.message}"))
        checks += move_checks(snap, node, prefix=f"{vm.name}: ", moved=moved)
        engine = params.setdefault("engines", {}).setdefault(vm.name, node.engine_version)
        steps += _update_one(snap, vm, node, timing, options, engine)
    if stand_in_node:
        steps.append(demote_stand_in(stand_in_node))
    for name, ok in (("capacity", "every task of each VM can move to other nodes"),
                     ("stops", "no service runs only on one of these VMs"),
                     ("spread", "every service keeps a running task elsewhere"),
                     ("proxy", "every backend keeps a server UP while each VM is out")):
        if not any(c.name == name for c in checks):
            checks.append(Check(name, OK, ok + ", one VM at a time"))
    checks.append(Check("order", OK, "one VM at a time: " + ", ".join(params["vms"])))
    return Plan("rolling-update", label or (",".join(targets) if targets else "cluster"), steps,
                forced(checks) if force else checks, force=force, params=params,
                retries=options.retries, report=True,
                failure_budget=options.failure_budget, time_limit=options.time_limit)


def _update_one(snap: Snapshot, vm: VM, node: Node, timing: Timing,
                options: WindowOptions, engine_before: str) -> list[Step]:
    group = vm.name
    steps = [_grouped(s, group) for s in drain_steps(snap, node, timing)]
    # the update (it may restart the engine) and the reboot take a manager's vote away
    ids = frozenset({node.swarm_id})
    risk = Risk(nodes=ids, managers=ids if node.role == MANAGER else frozenset(),
                vms=frozenset({vm.name}))
    if options.update_command:
        async def update(ctx: Context) -> None:
            await ctx.actions.run_command(vm.name, options.update_command, options.update_timeout,
                                          on_line=lambda line: ctx.log(f"{vm.name}│ {line}"))
        steps.append(Step(f"run the update on {vm.name}", update, group=group,
                          key=f"update:{vm.name}", risk=risk))
    if options.reboot:
        steps.append(Step(f"reboot {vm.name} and wait for it", _reboot(vm.name, options),
                          group=group, key=f"reboot:{vm.name}", risk=risk))
    steps.append(wait_node_back(node, vm.name, options, group,
                                engine_not=engine_before if options.expect_engine_change else ""))
    steps += [_grouped(s, group) for s in return_steps(snap, node)]
    steps.append(wait_healthy([vm.name], timing, group))
    return steps


def _grouped(step: Step, group: str) -> Step:
    step.group = group
    return step


def vms_named(snap: Snapshot, target: str) -> list[str] | None:
    """A rolling update's target: "cluster" (None: every VM), a host's name (its VMs), or VM
    names separated by commas."""
    if target in ("", "cluster"):
        return None
    if snap.host(target) is not None:
        return [v.name for v in snap.vms if v.host == target]
    return [t.strip() for t in target.split(",")]
