"""One console's working set: inventory, providers, cluster view, engine.

The TUI and the CLI both start here, so both drive the same engine with the
same role (read-only is the monitor role) and the same identity in the audit.
"""
from __future__ import annotations

import getpass
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from .cluster import Cluster
from .config import (
    ConfigError,
    Inventory,
    SSHSiteConfig,
    SwarmConfig,
    WindowOptions,
    load,
    read_only_from_env,
)
from .model import VM, Host
from .ops import registry
from .ops.actions import Actions
from .ops.engine import Engine
from .ops.records import Audit, Journal
from .ops.registry import BINDING_IDS
from .ops.roles import ADMIN, MONITOR, Access, Identity, Role, lowest
from .providers.base import ProviderError, Providers
from .providers.static import UNMANAGED, StaticHypervisor


@dataclass
class Session:
    inventory: Inventory
    providers: Providers
    cluster: Cluster
    engine: Engine
    source: str                     # "simulated cluster" or the inventory path
    warnings: list[str] = field(default_factory=list)   # for the header: "plain-text ..."

    @property
    def access(self) -> Access:
        return self.engine.access

    @property
    def read_only(self) -> bool:
        return self.access.read_only

    @property
    def journal(self) -> Journal:
        return self.engine.journal

    @property
    def window_options(self) -> WindowOptions:
        return self.inventory.maintenance


def load_inventory(path: str | os.PathLike[str]) -> Inventory:
    """The inventory at `path`, its `[console] keys` checked against the operation registry."""
    return load(path, BINDING_IDS)


def connect(inventory: Inventory, warnings: list[str] | None = None,
            ask: bool = True) -> Providers:
    """Providers for a real site, from its inventory; what the header should say about
    them (a plain-text Docker API) is added to `warnings`."""
    from .providers.swarm import DockerSwarm  # docker SDK loads only when needed
    assert inventory.swarm is not None
    hosts = [Host(h.name, h.address, state="unknown", message=UNMANAGED)
             for h in inventory.hosts.values()]
    vms = [VM(v.name, v.host, state="unknown", address=v.address, node_hostname=v.node or v.name)
           for v in inventory.vms.values()]
    endpoints, tls = swarm_endpoints(inventory.swarm, inventory.path, warnings)
    swarm = DockerSwarm(endpoints, timeout=inventory.swarm.timeout, tls=tls)
    proxy = None
    if inventory.proxy:
        from .providers.haproxy import HAProxy
        proxy = HAProxy(inventory.proxy.socket, inventory.proxy.timeout)
    hypervisor = hyperv(inventory, vms, ask) if inventory.winrm else \
        StaticHypervisor(hosts, vms)
    shell = ssh(inventory) if inventory.ssh is not None else None
    closers = [c for p in (swarm, hypervisor, shell) if (c := getattr(p, "close", None))]

    async def close() -> None:
        for c in closers:
            await c()
    return Providers(swarm, hypervisor, proxy, shell, close=close)


def swarm_endpoints(c: SwarmConfig, where: Path | None = None,
                    warnings: list[str] | None = None) -> tuple[tuple[str, ...], dict[str, str]]:
    """The managers to try and their TLS files: the inventory's endpoints, else its docker
    context's, else DOCKER_HOST, with DOCKER_TLS_VERIFY (any value) and DOCKER_CERT_PATH
    (default ~/.docker: ca.pem, cert.pem, key.pem) read as the docker CLI reads them.

    tcp:// without TLS is refused (ConfigError) unless [swarm] allows it, and then said in
    `warnings`.
    """
    from .providers.swarm import context_endpoint
    endpoints, tls, source = c.endpoints, c.tls, "[swarm] endpoints"
    if not endpoints and c.context:
        host, tls = context_endpoint(c.context)
        endpoints, source = (host,), f"docker context {c.context!r}"
    elif not endpoints and os.environ.get("DOCKER_HOST"):
        endpoints, source = (os.environ["DOCKER_HOST"],), "DOCKER_HOST"
        if os.environ.get("DOCKER_TLS_VERIFY") and endpoints[0].startswith("tcp://"):
            certs = Path(os.environ.get("DOCKER_CERT_PATH") or Path.home() / ".docker")
            tls = {k: str(certs / f"{k}.pem") for k in ("ca", "cert", "key")
                   if (certs / f"{k}.pem").is_file()}
            # TLS verified against the system's CAs when DOCKER_CERT_PATH has no ca.pem
            endpoints = tuple(e.replace("tcp://", "https://", 1) for e in endpoints)
    for e in endpoints:
        if not (e.startswith("tcp://") and not tls):
            continue
        if not c.allows_plaintext(e):
            raise ConfigError(f"{where or 'inventory'}: {source} {e}: refused: the Docker API "
                              "would go in plain text; use TLS (tls_ca, tls_cert, tls_key, or "
                              "DOCKER_TLS_VERIFY=1 and DOCKER_CERT_PATH) or set "
                              "allow_plaintext = true in [swarm]")
        if warnings is not None:
            warnings.append(f"plain-text Docker API to {e}")
    return endpoints, tls


def hyperv(inventory: Inventory, vms: list[VM], ask: bool = True):
    """HyperV over WinRM; credentials come from the environment variables the file names."""
    from .providers.hyperv import HyperV
    from .providers.powershell.remote import WinRMHost
    hosts = []
    for h in inventory.hosts.values():
        w = h.winrm
        username = _secret(w.user_env, f"WinRM user for {h.name}", ask=ask) \
            if w.user_env else ""
        password = _secret(w.password_env, f"WinRM password for {username or h.name}",
                           ask=ask, hidden=True) if w.password_env else ""
        hosts.append(WinRMHost(
            h.name, h.address, transport=w.transport, scheme=w.scheme, port=w.port,
            cert_validation=w.cert_validation, ca_bundle=w.ca_bundle, username=username,
            password=password, cert_pem=w.cert_pem, cert_key_pem=w.cert_key_pem,
            allow_basic=w.allow_basic, expect_computer_name=w.computer_name,
            read_timeout=w.read_timeout, operation_timeout=w.operation_timeout,
            call_timeout=w.call_timeout))
    return HyperV(hosts, vms)


_asked: dict[str, str] = {}


def _secret(env_var: str, what: str, hidden: bool = False, ask: bool = True) -> str:
    """From the environment variable the inventory names, else asked once on a terminal
    (unless not `ask`: a person who came in through ssh-entry is never asked the service
    account's secrets).

    Kept in memory only: never written, never logged.
    """
    value = os.environ.get(env_var) or _asked.get(env_var)
    if value:
        return value
    if not ask:
        raise ProviderError(f"{what}: environment variable {env_var} is not set for the "
                            "service account (give it in the forced command's environment)")
    if not sys.stdin.isatty():
        raise ProviderError(f"{what}: environment variable {env_var} is not set")
    value = (getpass.getpass if hidden else input)(f"{what} ({env_var} is not set): ")
    _asked[env_var] = value
    return value


def ssh(inventory: Inventory):
    from .providers.ssh import SSH, SSHTarget
    site = inventory.ssh or SSHSiteConfig()
    targets = [SSHTarget(v.name, v.ssh.address or v.address, v.ssh.user, v.ssh.port,
                         v.ssh.host_keys)
               for v in inventory.vms.values()]
    return SSH(targets, config=site.config, known_hosts=site.known_hosts,
               client_keys=site.identity_files, connect_timeout=site.connect_timeout)


def open_session(inventory: Inventory | None = None, read_only: bool = False,
                 speed: float = 1.0, scale: int = 0, seed: int = 1,
                 providers: Providers | None = None, role: Role = ADMIN,
                 identity: Identity | None = None) -> Session:
    """Records and access as `open_records` makes them (checked before anything), then the
    providers: the inventory's, or the simulated cluster's, or those given. Secrets missing
    from the environment are asked on the terminal, except of a person over ssh-entry."""
    inventory = inventory or simulated_site()
    warnings = list[str]()
    if simulated(inventory):
        if providers is None:
            from .providers.sim import SimCluster
            providers = SimCluster(seed=seed, speed=speed, scale=scale).providers()
        else:
            seed, scale = 1, 0      # a test's own SimCluster: the records of the default one
        source = "simulated cluster"
    else:
        source = str(inventory.path)
    records = open_records(inventory, read_only, role, identity, seed, scale)
    providers = providers or connect(inventory, warnings,
                                     ask=not records.access.identity.over_ssh)
    cluster = Cluster(providers, dict(inventory.proxy.servers) if inventory.proxy else {})
    actions = Actions(providers, records.audit, records.access)
    engine = Engine(cluster, actions, records.journal)
    return Session(inventory, providers, cluster, engine, source, warnings)


def simulated_site() -> Inventory:
    """The simulated site's inventory (its state dir as the environment says now): it
    updates docker on each VM and reboots it."""
    return Inventory(maintenance=WindowOptions(
        update_command="sudo apt-get -y upgrade docker.io", reboot=True))


def simulated(inventory: Inventory) -> bool:
    """No inventory file and no [swarm]: the simulated cluster."""
    return inventory.path is None and inventory.swarm is None


@dataclass(frozen=True)
class Records:
    """What a console writes and who it writes as: no remote system needed."""
    journal: Journal
    audit: Audit
    access: Access


def open_records(inventory: Inventory, read_only: bool = False, role: Role = ADMIN,
                 identity: Identity | None = None, seed: int = 1, scale: int = 0) -> Records:
    """The journal and audit of `inventory`'s state dir (checked: ConfigError when it cannot
    be used), and the console's access: the lowest role wins: `role`, and read-only (the
    monitor role) from the flag, the environment or the file, which can each turn it on.
    `identity`: who the audit names (default: the local account).

    The simulated cluster keeps its records apart from a real site's, under state_dir/sim;
    another seed or scale is another world (a --scale 1000 journal names other nodes):
    state_dir/sim-seedS-scaleN."""
    state = inventory.state_dir
    if simulated(inventory):
        state = state / ("sim" if (seed, scale) == (1, 0) else f"sim-seed{seed}-scale{scale}")
    identity = identity or Identity.local()
    journal, audit = Journal(state / "journal.jsonl"), Audit(state / "audit.jsonl", identity)
    try:
        for records in (journal, audit):
            records.check()
    except OSError as e:
        raise ConfigError(f"cannot use the state dir {state}: {e.strerror or e}"
                          + (f" ({e.filename})" if e.filename and e.filename != str(state)
                             else "")) from None
    if read_only or inventory.read_only or read_only_from_env():
        role = lowest(role, MONITOR)
    return Records(journal, audit, Access(role, identity, registry.PERMISSIONS))
