"""One console's working set: inventory, providers, cluster view, engine.

The TUI and the CLI both start here, so both drive the same engine with the
same read-only rule.
"""
from __future__ import annotations

from dataclasses import dataclass

from .cluster import Cluster
from .config import Inventory, read_only_from_env
from .model import VM, Host
from .ops.actions import Actions
from .ops.engine import Engine
from .ops.records import Audit, Journal
from .providers.base import Providers
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
    return Providers(swarm, StaticHypervisor(hosts, vms), proxy, None, close=swarm.close)


def open_session(inventory: Inventory | None = None, read_only: bool = False,
                 speed: float = 1.0, scale: int = 0, seed: int = 1,
                 providers: Providers | None = None) -> Session:
    """Read-only wins: the flag, the environment or the file can each turn it on."""
    if inventory is None:
        inventory = Inventory()
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
