"""One console's working set: inventory, providers, cluster view, engine.

The TUI and the CLI both start here, so both drive the same engine with the
same read-only rule.
"""
from __future__ import annotations

import getpass
import os
import sys
from dataclasses import dataclass

from .cluster import Cluster
from .config import Inventory, read_only_from_env
from .model import VM, Host
from .ops.actions import Actions
from .ops.engine import Engine
from .ops.maintenance import WindowOptions
from .ops.records import Audit, Journal
from .providers.base import ProviderError, Providers
from .providers.static import UNMANAGED, StaticHypervisor


@dataclass
class Session:
    inventory: Inventory
    providers: Providers
    cluster: Cluster
    engine: Engine
    read_only: bool
    source: str                     # "simulated cluster" or the inventory path

    @property
    def journal(self) -> Journal:
        return self.engine.journal

    @property
    def window_options(self) -> WindowOptions:
        return WindowOptions(**self.inventory.maintenance)


def connect(inventory: Inventory) -> Providers:
    """Providers for a real site, from its inventory."""
    from .providers.swarm import DockerSwarm   # docker SDK loads only when needed
    assert inventory.swarm is not None
    hosts = [Host(h.name, h.address, state="unknown", message=UNMANAGED)
             for h in inventory.hosts.values()]
    vms = [VM(v.name, v.host, state="unknown", address=v.address, node_hostname=v.node or v.name)
           for v in inventory.vms.values()]
    c = inventory.swarm
    swarm = DockerSwarm(c.endpoints, c.context, timeout=c.timeout, tls={
        k: v for k, v in (("ca", c.tls_ca), ("cert", c.tls_cert), ("key", c.tls_key)) if v})
    proxy = None
    if inventory.proxy:
        from .providers.haproxy import HAProxy
        proxy = HAProxy(inventory.proxy.socket, inventory.proxy.timeout)
    hypervisor = hyperv(inventory, vms) if inventory.winrm else StaticHypervisor(hosts, vms)
    shell = ssh(inventory) if inventory.ssh is not None else None
    closers = [p for p in (swarm, hypervisor, shell) if hasattr(p, "close")]

    async def close() -> None:
        for p in closers:
            await p.close()
    return Providers(swarm, hypervisor, proxy, shell, close=close)


def hyperv(inventory: Inventory, vms: list[VM]):
    """HyperV over WinRM; credentials come from the environment variables the file names."""
    from .providers.hyperv import HyperV
    from .providers.powershell.remote import WinRMHost
    hosts = []
    for h in inventory.hosts.values():
        w = dict(h.winrm)
        user_env, password_env = w.pop("user_env", ""), w.pop("password_env", "")
        username = _secret(user_env, f"WinRM user for {h.name}") if user_env else ""
        password = _secret(password_env, f"WinRM password for {username or h.name}",
                           hidden=True) if password_env else ""
        w["expect_computer_name"] = w.pop("computer_name", "")
        hosts.append(WinRMHost(h.name, h.address, username=username, password=password, **w))
    return HyperV(hosts, vms)


_asked: dict[str, str] = {}


def _secret(env_var: str, what: str, hidden: bool = False) -> str:
    """From the environment variable the inventory names, else asked once on a terminal.

    Kept in memory only: never written, never logged.
    """
    value = os.environ.get(env_var) or _asked.get(env_var)
    if value:
        return value
    if not sys.stdin.isatty():
        raise ProviderError(f"{what}: environment variable {env_var} is not set")
    value = (getpass.getpass if hidden else input)(f"{what} ({env_var} is not set): ")
    _asked[env_var] = value
    return value


def ssh(inventory: Inventory):
    from .providers.ssh import SSH, SSHTarget
    site = inventory.ssh or {}
    targets = [SSHTarget(v.name, v.ssh.get("address") or v.address, v.ssh.get("user", ""),
                         v.ssh.get("port", 0), tuple(v.ssh.get("host_keys", ())))
               for v in inventory.vms.values()]
    return SSH(targets, config=tuple(site.get("config", ())),
               known_hosts=tuple(site.get("known_hosts", ())),
               client_keys=tuple(site.get("identity_files", ())),
               connect_timeout=site.get("connect_timeout", 10.0))


def open_session(inventory: Inventory | None = None, read_only: bool = False,
                 speed: float = 1.0, scale: int = 0, seed: int = 1,
                 providers: Providers | None = None) -> Session:
    """Read-only wins: the flag, the environment or the file can each turn it on."""
    if inventory is None:   # the simulated site updates docker on each VM and reboots it
        inventory = Inventory(maintenance={"update_command": "sudo apt-get -y upgrade docker.io",
                                           "reboot": True})
    # No inventory file and no [swarm]: the simulated cluster (or the providers
    # given, e.g. a test's own SimCluster), with records under state_dir/sim.
    if inventory.path is None and inventory.swarm is None:
        if providers is None:
            from .providers.sim import SimCluster
            providers = SimCluster(seed=seed, speed=speed, scale=scale).providers()
        source = "simulated cluster"
    else:
        source = str(inventory.path)
    providers = providers or connect(inventory)
    read_only = read_only or inventory.read_only or read_only_from_env()
    cluster = Cluster(providers, dict(inventory.proxy.servers) if inventory.proxy else {})
    # the simulated cluster keeps its own records, apart from a real site's
    state = inventory.state_dir / "sim" if source == "simulated cluster" else inventory.state_dir
    actions = Actions(providers, Audit(state / "audit.jsonl"), read_only)
    engine = Engine(cluster, actions, Journal(state / "journal.jsonl"))
    return Session(inventory, providers, cluster, engine, read_only, source)
