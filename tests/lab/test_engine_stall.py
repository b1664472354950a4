"""A node that stays Down although its VM runs: the console restarts its engine once.

Swarm can leave a restarted node Down for good (its agent's session with the
managers stalls; moby/moby#38107); the lab saw it happen to a manager after a
host maintenance. Here the stall is made on purpose: the VM's dockerd is
frozen (SIGSTOP), so the VM and its sshd run on while the managers mark the
node Down. The console's wait for the node runs `systemctl restart docker`
over SSH in that VM (the lab's script: it restarts that VM's dockerd alone).
"""
from __future__ import annotations

import asyncio
import os
import signal
import time

from opsconsole.ops.engine import DONE, Plan
from opsconsole.ops.maintenance import WindowOptions, wait_node_back

from .labkit import whole
from .swarm_lab import _lab_dockerd_pid, read_boots


async def test_a_frozen_engine_is_restarted_and_its_node_returns(lab, console):
    name = "vm-04"
    vm = lab.vm(name)
    boot_id, pid = vm.boot_id(), _lab_dockerd_pid(vm.pidfile)
    node = (await whole(console)).node_named(name)
    started = time.time()
    os.kill(pid, signal.SIGSTOP)
    try:
        lab.wait_node(name, "down")
        options = WindowOptions(engine_stall=3.0, boot_timeout=120.0)
        plan = Plan("test", name, [wait_node_back(node, name, options)])
        op = await asyncio.wait_for(console.engine.run(plan), 180)
    finally:
        os.kill(pid, signal.SIGCONT)       # a no-op once the restart has killed it
    assert op.state == DONE, (op.error, op.log)
    assert any(f"{name} runs but node {name} has stayed down for 3s: restarting its Docker "
               "engine (`systemctl restart docker`)" in line for line in op.log), op.log
    # as the lab saw it: one engine restart, no reboot; a new dockerd, the same boot
    events = [e for e in read_boots(vm) if e.get("seen", e.get("start", 0)) >= started]
    assert [(e["event"], e.get("verb")) for e in events] == [
        ("request", "restart-docker"), ("engine restart", None)], events
    assert vm.boot_id() == boot_id and _lab_dockerd_pid(vm.pidfile) not in (None, pid)
    assert lab.node_states()[name][0] == "ready"
    assert await console.providers.shell.run(name, "true", 10) == 0     # its sshd lived on
    audit = [r for r in console.engine.actions.audit.read() if r["action"] == "run command"]
    assert [(r["target"], r["result"]) for r in audit] == [(name, "started"), (name, "ok")]
