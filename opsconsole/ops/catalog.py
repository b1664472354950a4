"""Plans by operation name (the registry's builders), and the two ways out of an operation a
dead console left behind: resume it (the same plan, rebuilt from its recorded parameters,
skipping finished steps) or roll it back (bring every VM, node and proxy server it touched
back into service).
"""
from __future__ import annotations

from dataclasses import asdict, fields, replace
from typing import Any, TypeVar

from ..model import MANAGER, RUNNING, Snapshot
from .engine import Plan, resume_check, resume_refusal
from .guards import FAIL, OK, WARN, Check, moved_now
from .maintenance import (
    WindowOptions,
    demote_stand_in,
    start,
    wait_healthy,
    wait_host_up,
    wait_node_back,
    wait_vm,
)
from .moves import restore_replicas
from .plans import PlanError, Timing, find_node, return_steps
from .records import OpRecord
from .registry import OPERATIONS, Ask, operation
from .services import put_back

D = TypeVar("D", Timing, WindowOptions)


def build(kind: str, snap: Snapshot, target: str, timing: Timing = Timing(),
          options: WindowOptions = WindowOptions(), force: bool = False,
          params: dict[str, Any] | None = None, moved: dict[str, int] | None = None) -> Plan:
    plan = operation(kind).build(snap, target, Ask(timing, options, force, dict(params or {}),
                                                   dict(moved or {})))
    if force:
        plan.params["force"] = True
    plan.params["timing"] = asdict(timing)    # a resumed plan waits as the first one did
    # what abort and rollback put back: the states from before the operation, also
    # after a console restart (when the cluster already shows the operation's own)
    plan.params["was"] = (params or {}).get("was") or {
        **{n.hostname: n.availability for n in snap.nodes},
        **{f"{s.backend}/{s.name}": s.admin for s in snap.servers}}
    return plan


# Options that are commands: a resume runs the inventory's, and says when they changed.
COMMANDS = ("update_command", "reboot_command", "engine_restart_command", "script")


def rebuild(record: OpRecord, snap: Snapshot, options_now: WindowOptions | None = None) -> Plan:
    """The plan of an unfinished operation, made as its journal record says it was, with
    the commands of the inventory now, and what a resume will find on the cluster."""
    params = dict(record.params)
    timing = _known(Timing, params.pop("timing", {}))
    recorded = _known(WindowOptions, params.pop("options", {}))
    options, changed = recorded, []
    if options_now is not None and "options" in record.params:
        changed = [(k, getattr(recorded, k), getattr(options_now, k)) for k in COMMANDS
                   if getattr(recorded, k) != getattr(options_now, k)]
        options = replace(recorded, **{k: getattr(options_now, k) for k in COMMANDS})
    plan = build(record.kind, snap, record.target, timing, options,
                 force=bool(params.get("force")), params=params,
                 moved=moved_now(record.notes, snap))
    refusal = resume_refusal(plan, record)
    if refusal:
        plan.checks.append(Check("resume", FAIL, refusal))
        return plan
    check = resume_check(plan, record, snap)
    plan.checks += [Check("resume", WARN, line) for line in check.redo]
    plan.checks.append(Check("resume", OK, f"{len(check.skip)} finished step(s) still hold"
                             + (f", {check.rerun} wait(s) run again" if check.rerun else "")))
    plan.checks += [Check("commands", WARN, f"{k} changed since the operation began: was "
                          f"{old!r}, now {new!r} (the inventory's is used)")
                    for k, old, new in changed]
    return plan


def _known(cls: type[D], values: dict[str, Any]) -> D:
    """A dataclass from recorded values, leaving out fields this version does not know."""
    names = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in values.items() if k in names})


def rollback(record: OpRecord, snap: Snapshot) -> Plan:
    """Everything an unfinished operation touched, back in service (waiting and
    restarting a stalled engine as the operation's recorded options say)."""
    params = record.params
    options = _known(WindowOptions, params.get("options", {}))
    timing = _known(Timing, params.get("timing", {}))
    if record.kind in OPERATIONS and OPERATIONS[record.kind].targets in (
            "service", "replicas", "image"):
        return _closing(record, put_back(record.kind, record.target, params, snap, timing))
    names = params.get("vms") or [record.target]
    steps = [restore] if (restore := restore_replicas(record.notes)) else []
    hosts = {vm.host for n in names if (vm := snap.vm(n)) is not None}
    for host in sorted(hosts):      # a host still updating or restarting starts no VM
        steps.append(wait_host_up(host, options.update_timeout + options.boot_timeout))
    for name in names:
        vm = snap.vm(name)
        node = snap.node_of_vm(vm) if vm else snap.node_named(name)
        if vm and vm.state != RUNNING:
            steps.append(start(vm.name))
            steps.append(wait_vm(vm.name, RUNNING, options.boot_timeout))
            if node is not None:
                steps.append(wait_node_back(node, vm.name, options))
        if node is not None:
            steps += return_steps(snap, node)
    if params.get("promote"):
        stand_in = find_node(snap, params["promote"])
        if stand_in.role == MANAGER:
            steps.append(demote_stand_in(stand_in))
    if not steps:
        raise PlanError(f"nothing of {record.kind} {record.target} to roll back")
    steps.append(wait_healthy([n for n in names if snap.vm(n)], timing))
    return _closing(record, steps)


def _closing(record: OpRecord, steps: list) -> Plan:
    """The rollback plan of `record`: its steps, then it takes over and closes the record."""
    plan = Plan("rollback", f"{record.kind} {record.target}", steps,
                params={"takes_over": record.op}, report=True)
    live = record.liveness()
    if live:
        plan.checks.append(Check("live", FAIL, f"{record.op} is not dead: {live}"))
    if record.newer:
        plan.checks.append(Check("version", FAIL, f"{record.op} was written by a newer "
                                 "opsconsole: roll it back with that version"))
    return plan
