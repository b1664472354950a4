"""The lab VMs' sshd cannot reboot or power off this machine: proven, in that order.

The lab VMs share this machine's kernel. Each VM's sshd runs without
CAP_SYS_BOOT (and CAP_SYS_ADMIN, so nothing can undo its mounts), as PID 1
of its own PID namespace, in its own mount namespace where the power
commands are the lab's script (see tests/lab/vminit.py). The first test
checks all of that from outside and from inside a session, without running
anything that could do harm. Only the second test runs the power commands
themselves, and it first checks again, refusing to go on otherwise.
"""
from __future__ import annotations

import asyncio
import os
import re
import time
from pathlib import Path

import pytest

from .labkit import until
from .swarm_lab import CAP_SYS_BOOT, POWER_COMMANDS, SSHD_DROP_CAPS, read_boots

CAPS = {"sys_admin": 21, "sys_boot": CAP_SYS_BOOT, "sys_module": 16, "sys_rawio": 17}
MARKER = "# opsconsole-lab-power "


def caps(pid: int) -> dict[str, int]:
    status = Path(f"/proc/{pid}/status").read_text()
    return {k: int(v, 16) for k, v in re.findall(r"^(Cap\w+):\s+([0-9a-f]+)$", status, re.M)}


def host_boot() -> tuple[str, float]:
    """This machine's boot id and uptime, read here (outside every lab namespace)."""
    return (Path("/proc/sys/kernel/random/boot_id").read_text().strip(),
            float(Path("/proc/uptime").read_text().split()[0]))


def outside_checks(lab, name: str) -> int:
    """The VM's sshd as this machine sees it; its pid when everything holds."""
    pid = lab.sshd_pid(name)
    assert pid, f"no sshd for {name}"
    c = caps(pid)
    for cap in SSHD_DROP_CAPS:           # gone from the bounding, permitted and effective sets
        bit = 1 << CAPS[cap]
        assert not (c["CapBnd"] & bit or c["CapPrm"] & bit or c["CapEff"] & bit), (name, cap, c)
    assert c["CapInh"] == 0 and c["CapAmb"] == 0
    assert os.stat(f"/proc/{pid}/ns/mnt").st_ino != os.stat("/proc/self/ns/mnt").st_ino
    assert os.stat(f"/proc/{pid}/ns/pid").st_ino != os.stat("/proc/self/ns/pid").st_ino
    mounts = {f[4]: f[3] for f in (l.split() for l in Path(f"/proc/{pid}/mountinfo").read_text()
                                   .splitlines())}
    script = f"{lab.vm(name).sbin}/lab-power"
    targets = {os.path.realpath(f"{d}/{c}") for c in POWER_COMMANDS
               for d in ("/usr/sbin", "/usr/bin", "/sbin", "/bin") if os.path.exists(f"{d}/{c}")}
    assert targets, "no power command on this machine to check"
    for target in targets:
        assert mounts.get(target) == script, (name, target)
    assert mounts.get("/usr/local/sbin") == str(lab.vm(name).sbin)
    assert mounts.get("/proc/sys/kernel/random/boot_id") == str(lab.vm(name).boot_id_file)
    return pid


async def inside_checks(shell, lab, name: str) -> None:
    """What a root session on the VM sees: only the lab's power commands, no way out."""
    lines: list[str] = []
    probe = ("for c in " + " ".join(POWER_COMMANDS) + "; do "
             'p=$(command -v $c) && echo "$c $p $(sed -n 2p "$p")"; done; '
             "grep -E '^Cap(Bnd|Eff)' /proc/self/status; cat /proc/sys/kernel/random/boot_id; "
             "echo lab: $(ls /tmp/ocl); echo run: $(ls -A /run); echo pid1: $(cat /proc/1/comm)")
    assert await shell.run(name, probe, 30, lines.append) == 0
    found = {l.split()[0]: l for l in lines if l.split()[0] in POWER_COMMANDS}
    assert set(found) == set(POWER_COMMANDS), lines
    for line in found.values():
        assert line.endswith(f"{MARKER}{name}"), line
    for line in lines:
        if line.startswith(("CapBnd", "CapEff")):
            assert not int(line.split()[1], 16) & (1 << CAP_SYS_BOOT), line
    assert lab.vm(name).boot_id() in lines
    assert f"lab: {name}" in lines                  # no other VM, no docker socket, no keys
    run = next(l for l in lines if l.startswith("run:")).split()[1:]
    assert "sshd" in run and set(run) <= {"sshd", "mount"}, run   # no D-Bus, systemd,
                                                        # containerd, docker or netns here
    assert "pid1: sshd" in lines                    # this machine's init is out of reach


async def test_vm_sshd_has_no_way_to_reboot_the_machine(lab, console):
    for vm in lab.vms:
        outside_checks(lab, vm.name)
        await inside_checks(console.providers.shell, lab, vm.name)
    # the kernel itself refuses reboot(2) in a session: RB_DISABLE_CAD (0) is the harmless
    # command (and inside a child PID namespace it could only ever fail with EINVAL)
    lines: list[str] = []
    code = await console.providers.shell.run(
        "vm-02", "/usr/bin/python3 -I -c 'import ctypes; libc = ctypes.CDLL(None, use_errno=True);"
        " print(libc.reboot(0), ctypes.get_errno())'", 30, lines.append)
    assert code == 0 and lines == ["-1 1"], lines          # EPERM: no CAP_SYS_BOOT
    # a command of systemctl that is not about power is refused, and changes nothing
    lines = []
    assert await console.providers.shell.run("vm-02", "systemctl status", 30, lines.append) == 1
    assert lines == ["systemctl status: not available in lab VM vm-02 (opsconsole lab)"]


async def test_power_commands_in_a_vm_restart_that_vm_only(lab, console):
    shell = console.providers.shell
    asked = {"vm-04": "reboot", "vm-05": "systemctl reboot", "vm-03": "poweroff"}
    for name in asked:                   # never run them unless every protection holds
        outside_checks(lab, name)
        await inside_checks(shell, lab, name)
    machine_boot, machine_uptime = host_boot()
    before = {vm.name: (vm.boot_id(), Path(vm.pidfile).read_text().strip()) for vm in lab.vms}
    boot_ids = {name: before[name][0] for name in asked}
    started = time.time()

    async def power(name: str, command: str) -> str:
        lines: list[str] = []
        assert await shell.run(name, command, 30, lines.append) == 0, lines
        assert lines == [f"{name}: restarting (the lab restarts this VM's dockerd and sshd)"]
        return await shell.wait_reboot(name, 60, 120, boot_id=boot_ids[name])
    new_ids = await asyncio.gather(*(power(n, c) for n, c in asked.items()))

    # this machine did not reboot: same boot id, uptime still counting, we are still here
    boot, uptime = host_boot()
    assert boot == machine_boot and uptime > machine_uptime
    # each VM that asked restarted once: a new boot id, a new dockerd, its node back
    for (name, command), new_id in zip(asked.items(), new_ids):
        vm = lab.vm(name)
        assert new_id == vm.boot_id() != before[name][0]
        assert Path(vm.pidfile).read_text().strip() != before[name][1]
        events = [e for e in read_boots(vm) if e.get("seen", e.get("start", 0)) > started
                  and (e["event"] == "request" or e.get("reason", "").endswith("in the VM"))]
        assert [e["event"] for e in events] == ["request", "halt", "boot"], events
        assert events[0]["verb"] == command.split()[-1]
    for name in asked:
        await until(lambda n=name: lab.node_states()[n][0] == "ready", f"{name} ready again")
    # every other VM went on as it was
    for vm in lab.vms:
        if vm.name not in asked:
            assert (vm.boot_id(), Path(vm.pidfile).read_text().strip()) == before[vm.name]


@pytest.fixture(autouse=True)
def _machine_still_up():
    """Whatever the test did: this machine's boot id is the one it started with."""
    boot, _ = host_boot()
    yield
    assert host_boot()[0] == boot
