"""The lab itself is real: nodes, HTTP on the VM addresses, node failure, drain."""
import tomllib
import urllib.request
from pathlib import Path

# No proxies, whatever the environment says: lab traffic stays on the lab subnet.
_http = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def http_get(address: str, port: int = 8080) -> str:
    with _http.open(f"http://{address}:{port}/", timeout=5) as r:
        return r.read().decode().strip()


def web_nodes(lab) -> dict[str, str]:
    """hostname -> task id of every running `web` task."""
    with lab.manager_client() as c:
        names = {n.id: n.attrs["Description"]["Hostname"] for n in c.nodes.list()}
        tasks = c.services.get("web").tasks(filters={"desired-state": "running"})
        return {names[t["NodeID"]]: t["ID"] for t in tasks if t["Status"]["State"] == "running"}


def test_nodes_ready_with_roles_and_hostnames(swarm_lab):
    states = swarm_lab.node_states()
    assert states == {vm.name: ("ready", "active", vm.role) for vm in swarm_lab.vms}
    for vm in swarm_lab.vms:  # each daemon is its own "machine"
        with swarm_lab.client(vm.name) as c:
            info = c.info()
        assert info["Name"] == vm.name
        assert info["Swarm"]["NodeAddr"] == vm.address
        assert info["Swarm"]["ControlAvailable"] == (vm.role == "manager")


def test_inventory(swarm_lab, tmp_path):
    inv = tomllib.loads(swarm_lab.write_inventory(tmp_path / "inv.toml").read_text())
    assert inv["swarm"]["endpoints"] == swarm_lab.manager_endpoints
    assert inv["swarm"]["endpoints"][0] == "unix:///tmp/ocl/vm-01/docker.sock"
    assert set(inv["hosts"]) == {"hv-01", "hv-02"}
    assert inv["vms"]["vm-01"] == {"host": "hv-01", "address": "10.77.0.11", "node": "vm-01"}
    assert len(inv["vms"]) == len(swarm_lab.vms)
    # every real system of the lab: HAProxy, the WinRM emulators, each VM's sshd
    assert inv["proxy"]["socket"] == f"unix://{swarm_lab.admin_socket}"
    assert inv["proxy"]["servers"] == {f"portal/{vm.name}": vm.name for vm in swarm_lab.vms}
    assert (inv["winrm"]["transport"], inv["winrm"]["scheme"], inv["winrm"]["allow_basic"]) == \
        ("basic", "http", True)
    assert {h: t["winrm"]["port"] for h, t in inv["hosts"].items()} == swarm_lab.winrm_ports
    assert inv["ssh"]["user"] == "root"
    known = Path(inv["ssh"]["known_hosts"][0]).read_text().split()
    assert [w for w in known if w.startswith("10.77.")] == [vm.address for vm in swarm_lab.vms]
    assert Path(inv["ssh"]["identity_files"][0]).exists()
    assert inv["maintenance"]["reboot_command"] == "reboot"   # the lab's script in each VM


def test_web_answers_on_each_node_address(swarm_lab):
    nodes = web_nodes(swarm_lab)
    assert len(nodes) == len(swarm_lab.vms) - 1
    for name in nodes:
        assert http_get(swarm_lab.vm(name).address) == name


def test_stop_vm_goes_down_and_start_vm_comes_back(swarm_lab):
    swarm_lab.stop_vm("vm-04")
    assert swarm_lab.node_states()["vm-04"][0] == "down"
    swarm_lab.start_vm("vm-04")
    assert swarm_lab.node_states()["vm-04"][0] == "ready"
    swarm_lab.wait_converged()


def test_drain_moves_web_task(swarm_lab):
    worker = next(vm.name for vm in swarm_lab.workers if vm.name in web_nodes(swarm_lab))
    with swarm_lab.manager_client() as c:
        node = next(n for n in c.nodes.list() if n.attrs["Description"]["Hostname"] == worker)
        spec = node.attrs["Spec"]
        node.update({**spec, "Availability": "drain"})
        try:
            def moved():
                nodes = web_nodes(swarm_lab)
                return worker not in nodes and len(nodes) == len(swarm_lab.vms) - 1, f"web on {sorted(nodes)}"
            swarm_lab._wait(f"web to leave {worker}", moved, timeout=60)
            for name in web_nodes(swarm_lab):  # the moved task really serves from its new node
                assert http_get(swarm_lab.vm(name).address) == name
        finally:
            node.reload()
            node.update({**node.attrs["Spec"], "Availability": "active"})
    swarm_lab.wait_converged()
