"""The Hyper-V provider, real pywinrm, against the WinRM emulator on 127.0.0.1.

Everything the provider sends goes over HTTP as WS-Management SOAP, is
decoded from -EncodedCommand by the emulator, checked to be one of the
console's scripts with its parameters read back by PowerShell's quoting
rules, and acted out on an in-memory world. Basic auth over plain HTTP is
the lab's choice, explicitly allowed here and nowhere by default.
"""
from __future__ import annotations

import asyncio
import socket
import time

import pytest

from opsconsole.model import VM
from opsconsole.providers.base import ProviderError
from opsconsole.providers.hyperv import HyperV, WinRMHost

from .winrm import MemoryWorld, WinRMEmulator

HOSTILE = ["it's", "‘smart’ ‚low‛", "a'’‘‚‛b", '"; Stop-Computer -Force; "',
           "$(Stop-Computer)", "`$env:x", "$env:USERNAME", "semi;colon", "two\nlines",
           "vm-0*", "VM-01"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def world() -> MemoryWorld:
    return MemoryWorld(vms=("vm-01", "vm-02", "vm-03", "extra"), shutdown_s=0.3)


@pytest.fixture
def emu(world):
    with WinRMEmulator(world, restart_down_s=1.5) as e:
        yield e


def host_cfg(emu: WinRMEmulator, **kw) -> WinRMHost:
    settings = dict(address="127.0.0.1", scheme="http", port=emu.port, transport="basic",
                    allow_basic=True, cert_validation=False, username=emu.username,
                    password=emu.password, read_timeout=5, operation_timeout=2)
    settings.update(kw)
    return WinRMHost("hv-lab", **settings)


INVENTORY = [VM("vm-01", "hv-lab", address="10.1.0.1", node_hostname="node-01"),
             VM("vm-02", "hv-lab", address="10.1.0.2"),
             VM("vm-03", "hv-lab", address="10.1.0.3")]


def hyperv(emu: WinRMEmulator, **kw) -> HyperV:
    return HyperV([host_cfg(emu, **kw)], INVENTORY, poll_interval=0.1, restart_timeout=30)


async def test_read_lists_the_host_and_its_vms(emu, world):
    hosts, vms = await hyperv(emu).read()
    (host,) = hosts
    assert (host.name, host.state, host.address, host.os_build) == \
        ("hv-lab", "up", "127.0.0.1", "20348.2849")
    assert host.pending_reboot and host.uptime_s >= 12 * 86400 and host.message == ""
    by_name = {v.name: v for v in vms}
    assert set(by_name) == {"vm-01", "vm-02", "vm-03", "extra"}
    assert 0 <= by_name["vm-01"].uptime_s < 60          # the world's VM started just now
    assert by_name["vm-01"] == VM("vm-01", "hv-lab", "running", "10.1.0.1", "node-01",
                                  by_name["vm-01"].uptime_s, 7, 4 << 30)
    assert [s for s, _ in emu.scripts] == ["read-host"]
    assert emu.requests == ["Create", "Command", "Receive", "Signal", "Delete"]


async def test_stop_is_a_guest_shutdown(emu, world):
    await hyperv(emu).stop_vm("vm-01", timeout=10)
    assert world.vms["vm-01"]["state"] == "Off"
    assert world.calls == [("stop_vm", "vm-01", False)]


async def test_stop_timeout_without_force_refuses_to_turn_off(emu, world):
    world.ignores_shutdown.add("vm-02")
    with pytest.raises(ProviderError, match=r"vm-02 did not shut down within 0.5 s "
                                            r"\(still running\); turning it off needs force"):
        await hyperv(emu).stop_vm("vm-02", timeout=0.5)
    assert world.vms["vm-02"]["state"] == "Running"
    assert world.calls == [("stop_vm", "vm-02", False)]


async def test_stop_timeout_with_force_turns_off(emu, world):
    world.ignores_shutdown.add("vm-02")
    await hyperv(emu).stop_vm("vm-02", timeout=0.5, force=True)
    assert world.vms["vm-02"]["state"] == "Off"
    assert world.calls == [("stop_vm", "vm-02", False), ("stop_vm", "vm-02", True)]


async def test_start_and_save(emu, world):
    hv = hyperv(emu)
    await hv.save_vm("vm-03")
    assert world.vms["vm-03"]["state"] == "Saved"
    await hv.start_vm("vm-03")
    assert world.vms["vm-03"]["state"] == "Running"
    _, vms = await hv.read()
    assert {v.name: v.state for v in vms}["vm-03"] == "running"


async def test_unknown_vm_is_named(emu):
    with pytest.raises(ProviderError, match="no VM named 'vm-99' on any Hyper-V host"):
        await hyperv(emu).start_vm("vm-99")


async def test_restart_host_waits_until_winrm_answers_again(emu, world):
    hv = hyperv(emu)
    for name in world.vms:
        world.vms[name]["state"] = "Off"
    old_boot = world.boot_epoch
    started = time.monotonic()
    restart = asyncio.create_task(hv.restart_host("hv-lab"))
    for _ in range(50):                            # meanwhile: rebooting, VMs kept, unknown
        hosts, vms = await hv.read()
        if hosts[0].state == "rebooting":
            break
        await asyncio.sleep(0.1)
    assert hosts[0].state == "rebooting" and hosts[0].message.startswith("restarting since")
    assert {v.state for v in vms} == {"unknown"} and len(vms) == 4
    await asyncio.wait_for(restart, 30)
    assert time.monotonic() - started >= emu.restart_down_s
    assert emu.restarts == 1 and world.boot_epoch > old_boot
    hosts, _ = await hv.read()
    assert hosts[0].state == "up" and hosts[0].uptime_s < 60 and not hosts[0].pending_reboot


async def test_restart_refused_while_vms_run(emu, world):
    with pytest.raises(ProviderError, match="hv-lab: restart-host: VMs still running: vm-01"):
        await hyperv(emu).restart_host("hv-lab")
    assert emu.restarts == 0


async def test_soap_fault_is_a_clear_error(emu):
    hv = hyperv(emu)
    emu.inject_fault("Create")
    hosts, _ = await hv.read()
    assert hosts[0].state == "unknown"
    assert hosts[0].message.startswith("hv-lab: read-host: WinRM fault: The WS-Management "
                                       "service cannot process the request")
    assert "(code 2150859174)" in hosts[0].message
    emu.inject_fault("Command", "w:InternalError", 2150858770, "Access is denied.")
    with pytest.raises(ProviderError, match=r"hv-lab: start-vm: WinRM fault: Access is "
                                            r"denied. \(code 2150858770\)"):
        await hv.start_vm("vm-01")


async def test_read_timeout_is_a_clear_error(emu):
    emu.delay_s = 3
    started = time.monotonic()
    hosts, vms = await hyperv(emu, read_timeout=2, operation_timeout=1).read()
    assert hosts[0].state == "unreachable"
    assert hosts[0].message == "hv-lab: read-host: WinRM did not answer within 2 s"
    assert time.monotonic() - started < 6          # no cleanup calls to a silent host
    assert {v.name: v.state for v in vms} == {"vm-01": "unknown", "vm-02": "unknown",
                                              "vm-03": "unknown"}


async def test_script_past_its_deadline_is_terminated(emu, world):
    world.vms["vm-01"]["state"] = "Off"
    world.hang_s = 3                               # Start-VM hangs
    with pytest.raises(ProviderError, match="hv-lab: start-vm: still running after 1 s; "
                                            "terminated"):
        await hyperv(emu, call_timeout=1).start_vm("vm-01")
    assert [code.rsplit("/", 1)[-1] for _, code in emu.signals] == ["terminate"]


async def test_bad_credentials_are_a_clear_error(emu):
    hv = hyperv(emu, password="wrong-password")
    hosts, _ = await hv.read()
    assert hosts[0].state == "unknown"
    assert hosts[0].message == ("hv-lab: WinRM rejected the credentials (HTTP 401, transport "
                                "basic); check the user and password")
    with pytest.raises(ProviderError, match="HTTP 401"):
        await hv.start_vm("vm-01")


async def test_basic_is_refused_unless_allowed(emu):
    hosts, _ = await hyperv(emu, allow_basic=False).read()
    assert "only when explicitly allowed" in hosts[0].message
    assert emu.requests == []                      # nothing was sent


async def test_unreachable_host_keeps_its_vms_as_unknown(emu, world):
    hv = hyperv(emu)
    _, before = await hv.read()
    emu.stop()
    hosts, after = await hv.read()
    assert hosts[0].state == "unreachable"
    assert hosts[0].message == f"hv-lab: cannot reach {emu.url} (connection refused)"
    assert [v.name for v in after] == [v.name for v in before]
    assert {v.state for v in after} == {"unknown"}
    assert {v.address for v in after if v.name == "vm-01"} == {"10.1.0.1"}


async def test_never_reached_host_lists_the_inventory_vms():
    cfg = WinRMHost("hv-gone", address="127.0.0.1", scheme="http", port=free_port(),
                    transport="basic", allow_basic=True, username="u", password="p",
                    read_timeout=3, operation_timeout=1)
    hosts, vms = await HyperV([cfg], [VM("vm-x", "hv-gone")]).read()
    assert hosts[0].state == "unreachable" and "connection refused" in hosts[0].message
    assert vms == [VM("vm-x", "hv-gone", state="unknown")]


async def test_hostile_names_reach_the_world_literally(emu, world):
    for name in HOSTILE:
        world.add_vm(name)
    hv = hyperv(emu)
    _, vms = await hv.read()
    assert set(HOSTILE) <= {v.name for v in vms}
    for name in HOSTILE:
        await hv.save_vm(name)
    assert world.calls == [("save_vm", name) for name in HOSTILE]
    assert [p["Name"] for s, p in emu.scripts if s == "save-vm"] == HOSTILE
    # Exact matching: "vm-0*" is not a wildcard, "VM-01" is not "vm-01".
    assert world.vms["vm-01"]["state"] == "Running"
    assert world.vms["vm-02"]["state"] == "Running"


async def test_install_windows_updates_as_a_task(emu, world):
    report = await hyperv(emu).install_updates("hv-lab", timeout=10)
    assert report.ok and report.installed == 2 and report.reboot_required
    assert report.titles == ("2026-01 Cumulative Update", "Defender definitions")
    assert [s for s, _ in emu.scripts][:2] == ["stage-updates", "install-updates"]
    assert world.calls == [("install_updates", "")]


async def test_install_with_the_operators_script(emu, world):
    path = "C:\\ops\\it's ‘patch’ $(x).ps1"
    report = await hyperv(emu).install_updates("hv-lab", timeout=10, script=path)
    assert report.ok and report.script == path
    assert world.calls == [("install_updates", path)]
    world.update_exit_code = 3
    with pytest.raises(ProviderError, match="hv-lab: updates failed: maintenance script "
                                            "exited with 3"):
        await hyperv(emu).install_updates("hv-lab", timeout=10, script=path)


async def test_updates_still_running_at_the_timeout(emu, world):
    world.update_s = 30
    with pytest.raises(ProviderError, match="updates still running after 0.5 s"):
        await hyperv(emu).install_updates("hv-lab", timeout=0.5)
