"""The console's picture from all its real providers at once, against each system.

`open_session(load(lab inventory))` builds the Swarm provider (the lab's
managers), HAProxy (its admin socket), Hyper-V over WinRM (labd's emulators,
one per host, acting on the real VMs) and SSH (each VM's own sshd). Each
part of the snapshot is checked against what that system itself says, read
here without the console: pywinrm running the console's read-host script,
the docker SDK, HAProxy's socket, the lab's own files; then the joins that
make the tree (host > VM > node > task, backend > server > VM).
"""
from __future__ import annotations

import json

import winrm

from opsconsole.cli import snapshot_json
from opsconsole.kinds import parent_id
from opsconsole.model import ROOT_HOSTS, backend_id, host_id
from opsconsole.providers import powershell as ps

from .labkit import swarm_picture, until, whole
from .swarm_lab import BACKEND, WINRM_PASSWORD, WINRM_USER


def winrm_read_host(lab, host: str) -> dict:
    """What the host's WinRM endpoint answers to the console's read-host script."""
    session = winrm.Session(f"http://127.0.0.1:{lab.winrm_ports[host]}/wsman",
                            auth=(WINRM_USER, WINRM_PASSWORD), transport="basic",
                            server_cert_validation="ignore", proxy=None,
                            read_timeout_sec=15, operation_timeout_sec=5)
    r = session.run_cmd(ps.command_line("read-host", {}))
    assert r.status_code == 0, r.std_err
    return json.loads(r.std_out)


async def test_the_tree_joins_what_every_system_reports(lab, console):
    snap = await whole(console)

    # hosts and VMs: WinRM, as the hosts answer it
    assert [h.name for h in snap.hosts] == [h.name for h in lab.hosts]
    for host in lab.hosts:
        answer = winrm_read_host(lab, host.name)
        assert answer["host"]["computer_name"] == host.name.upper()
        assert [v["name"] for v in answer["vms"]] == host.vms
        assert {v["state"] for v in answer["vms"]} == {"Running"}
        got = [v for v in snap.vms if v.host == host.name]
        assert [(v.name, v.state, v.address, v.node_hostname) for v in got] == [
            (n, "running", lab.vm(n).address, n) for n in host.vms]
        assert parent_id(snap, snap.host(host.name)) == ROOT_HOSTS

    # nodes and tasks: the swarm, as a manager reports it
    nodes, services, tasks = swarm_picture(lab)
    assert {n.swarm_id: (n.hostname, n.role, n.state, n.address) for n in snap.nodes} == {
        n["ID"]: (n["Description"]["Hostname"], n["Spec"]["Role"], n["Status"]["State"],
                  n["Status"]["Addr"]) for n in nodes}
    assert {s.name for s in snap.services} == {"web", "pinned", "agent", "portal"}
    running = {(t["NodeID"], t["ID"]) for t in tasks if t["Status"]["State"] == "running"}
    assert {(t.node_id, t.swarm_id) for t in snap.tasks if t.state == "running"} == running

    # proxy servers: HAProxy, as its socket reports them
    haproxy = lab.proxy_servers()
    assert {s.name: (s.status, s.admin) for s in snap.servers if s.backend == BACKEND} == {
        name: (status, admin) for name, (status, admin, _) in haproxy.items()}
    assert [b.name for b in snap.backends] == [BACKEND]

    # the joins: host > VM > node > task; backend > server, each server to its VM
    for vm in lab.vms:
        v = snap.vm(vm.name)
        node = snap.node_of_vm(v)
        assert node is not None and node.hostname == vm.name and node.address == vm.address
        assert parent_id(snap, v) == host_id(vm.host)
        assert parent_id(snap, node) == v.id
        for t in snap.tasks_on_node(node.swarm_id):
            assert parent_id(snap, t) == node.id
        (server,) = snap.servers_of_vm(vm.name)
        assert (server.backend, server.name) == (BACKEND, vm.name)
        assert server.address.split(":")[0] == vm.address
        assert parent_id(snap, server) == backend_id(BACKEND)
    # ... and the console's own JSON says the same
    out = snapshot_json(snap)
    assert {v["name"]: v["host"] for v in out["vms"]} == {vm.name: vm.host for vm in lab.vms}
    assert {s["name"]: s["vm"] for s in out["servers"]} == {vm.name: vm.name for vm in lab.vms}


async def test_a_vm_stopped_over_winrm_is_off_and_its_node_down_under_it(lab, console):
    await whole(console)
    actions = console.engine.actions
    await actions.stop_vm("vm-05", 60)          # Hyper-V (emulated) over WinRM: a guest shutdown
    assert not lab.running("vm-05")              # its dockerd is really gone ...
    assert lab.sshd_pid("vm-05") is None         # ... and its sshd

    async def down():
        snap = await console.cluster.snapshot()
        node = snap.node_named("vm-05")
        return snap if node.state == "down" and snap.get("vm:vm-05").state == "off" else None
    snap = await until(down, "vm-05 off and its node down")
    node, vm = snap.node_named("vm-05"), snap.get("vm:vm-05")
    assert parent_id(snap, node) == vm.id and parent_id(snap, vm) == "host:hv-02"
    assert lab.node_states()["vm-05"][0] == "down"               # as the swarm says
    assert {v["name"]: v["state"] for v in winrm_read_host(lab, "hv-02")["vms"]} == {
        "vm-04": "Running", "vm-05": "Off"}                      # as the host says
    await until(lambda: lab.proxy_servers()["vm-05"][0].startswith("DOWN"),
                "haproxy to see portal/vm-05 down", timeout=30)
    snap = await console.cluster.snapshot()
    assert snap.servers_of_vm("vm-05")[0].status.startswith("DOWN")   # its server too

    await actions.start_vm("vm-05")
    snap = await whole(console)
    assert snap.node_named("vm-05").state == "ready" and lab.running("vm-05")


async def test_asyncssh_runs_a_command_on_a_lab_vm(lab, console):
    shell = console.providers.shell
    lines: list[str] = []
    code = await shell.run("vm-02", "hostname; cat /proc/sys/kernel/random/boot_id; id -un",
                           20, lines.append)
    assert code == 0
    assert lines == ["vm-02", lab.vm("vm-02").boot_id(), "root"]
    assert await shell.boot_id("vm-03") == lab.vm("vm-03").boot_id()
    assert await shell.run("vm-04", "exit 3", 20) == 3
