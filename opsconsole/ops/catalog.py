"""Every operation the console offers, by name: one place for the TUI and the CLI.

Also the two ways out of an operation a dead console left behind: resume it
(the same plan, rebuilt from its recorded parameters, skipping finished
steps) or roll it back (bring every VM, node and proxy server it touched
back into service).
"""
from __future__ import annotations

from dataclasses import asdict

from ..model import MANAGER, VM, Snapshot
from .engine import Plan
from .maintenance import (WindowOptions, act, demote_stand_in, make_window, wait_healthy,
                          wait_node_back, wait_vm)
from .plans import PlanError, Timing, find_node, make_plan, return_steps

NODE_OPERATIONS = ("cordon", "drain", "activate")
WINDOWS = ("maintenance", "rolling-update")
OPERATIONS = NODE_OPERATIONS + WINDOWS


def build(kind: str, snap: Snapshot, target: str, timing: Timing = Timing(),
          options: WindowOptions = WindowOptions(), force: bool = False,
          params: dict | None = None) -> Plan:
    if kind in NODE_OPERATIONS:
        plan = make_plan(kind, snap, target, timing, force)
        plan.params = {"force": force} if force else {}
    elif kind in WINDOWS:
        plan = make_window(kind, snap, target, timing, options, params)
        plan.params["options"] = asdict(options)
    else:
        raise PlanError(f"unknown operation {kind!r} (known: {', '.join(OPERATIONS)})")
    plan.params["timing"] = asdict(timing)    # a resumed plan waits as the first one did
    return plan


def rebuild(record: dict, snap: Snapshot) -> Plan:
    """The plan of an unfinished operation, made as its journal record says it was."""
    params = dict(record.get("params") or {})
    timing = Timing(**params.pop("timing", {}))
    options = WindowOptions(**params.pop("options", {}))
    return build(record["kind"], snap, record["target"], timing, options,
                 force=bool(params.get("force")), params=params)


def rollback(record: dict, snap: Snapshot) -> Plan:
    """Everything an unfinished operation touched, back in service (waiting and
    restarting a stalled engine as the operation's recorded options say)."""
    params = record.get("params") or {}
    options = WindowOptions(**params.get("options", {}))
    names = params.get("vms") or [record["target"]]
    steps = []
    for name in names:
        vm = snap.get(f"vm:{name}")
        node = snap.node_of_vm(vm) if isinstance(vm, VM) else snap.node_named(name)
        if isinstance(vm, VM) and vm.state != "running":
            steps.append(act(f"start {vm.name}", lambda ctx, v=vm.name: ctx.actions.start_vm(v)))
            steps.append(wait_vm(vm.name, "running", options.boot_timeout))
            if node is not None:
                steps.append(wait_node_back(node, vm.name, options))
        if node is not None:
            steps += return_steps(snap, node)
    if params.get("promote"):
        stand_in = find_node(snap, params["promote"])
        if stand_in.role == MANAGER:
            steps.append(demote_stand_in(stand_in))
    if not steps:
        raise PlanError(f"nothing of {record['kind']} {record['target']} to roll back")
    steps.append(wait_healthy([n for n in names if snap.get(f"vm:{n}")], 600.0))
    return Plan("rollback", f"{record['kind']} {record['target']}", steps,
                params={"takes_over": record["op"]}, report=True)
