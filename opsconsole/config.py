"""The inventory file (TOML) turned into a validated, frozen configuration.

Every problem is one ConfigError naming the file, the line where it can be
found, the key, and what is wrong. Secrets never live in the file: it names
environment variables that hold them.
"""
from __future__ import annotations

import math
import os
import re
import tomllib
import typing
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

READ_ONLY_ENV = "OPSCONSOLE_READ_ONLY"
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
HOSTNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,252}$")     # a Swarm node's
PROXY_SERVER = re.compile(r"^[A-Za-z0-9_.:-]+/[A-Za-z0-9_.:-]+$")  # HAProxy backend/server
# Never in a key or a string of the file: C0 controls but tab and newline, DEL, C1, and the
# bidi marks and overrides that make text show other than it reads.
UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")
# Keys naming a certificate or key file: it must exist and be readable when the file is
# loaded; a relative path is taken from the inventory file's folder.
FILE_KEYS = ("tls_ca", "tls_cert", "tls_key", "ca_bundle", "cert_pem", "cert_key_pem",
             "identity_files")


class ConfigError(Exception):
    """A bad inventory: the message says file, line, key and problem."""


# -- the typed configuration: one frozen dataclass per table, each field's default here --
@dataclass(frozen=True)
class SwarmConfig:
    """[swarm]: the managers the console talks to."""
    endpoints: tuple[str, ...] = ()     # unix://, tcp://, ssh://; tried in order
    context: str = ""                   # a docker context name instead
    tls_ca: str = ""                    # CA file for tcp:// (absolute, checked readable)
    tls_cert: str = ""                  # client certificate; goes with tls_key
    tls_key: str = ""                   # its key
    timeout: float = 10.0               # seconds per Docker API call
    # tcp:// without TLS is refused unless allowed: True for every endpoint (and DOCKER_HOST
    # or the context), or the tcp:// endpoints allowed
    allow_plaintext: bool | tuple[str, ...] = False

    @property
    def tls(self) -> dict[str, str]:
        return {k: v for k, v in (("ca", self.tls_ca), ("cert", self.tls_cert),
                                  ("key", self.tls_key)) if v}

    def plaintext(self, endpoint: str) -> bool:
        """Would the Docker API to `endpoint` go unencrypted (tcp:// without TLS settings)?"""
        return endpoint.startswith("tcp://") and not self.tls

    def allows_plaintext(self, endpoint: str) -> bool:
        return self.allow_plaintext is True or (
            not isinstance(self.allow_plaintext, bool) and endpoint in self.allow_plaintext)


@dataclass(frozen=True)
class ProxyConfig:
    """[proxy]: HAProxy's runtime API."""
    socket: str                         # unix:///path or tcp://host:port
    servers: dict[str, str] = field(default_factory=dict)   # "backend/server" -> VM
    timeout: float = 5.0                # seconds per runtime API call


@dataclass(frozen=True)
class Timing:
    """[operations]: how long the waits may take."""
    sessions_timeout: float = 120.0     # for sessions on a draining proxy server to end
    sessions_threshold: int = 0         # sessions still allowed when moving on
    drain_timeout: float = 300.0        # for the node's tasks to move and converge
    settle: float = 3.0                 # a health gate holds this long before it passes
    paused_limit: float = 600.0         # headless: a guard pause longer than this stops the run
    service_timeout: float = 600.0      # for a service action (scale, restart, image) to converge


HOST_STEPS = ("updates", "script", "manual")
# how a VM is told to reboot: detached, so the command returns before the VM goes
REBOOT = "nohup sh -c 'sleep 1; systemctl reboot || reboot' >/dev/null 2>&1 &"


@dataclass(frozen=True)
class WindowOptions:
    """[maintenance]: how a maintenance window or a rolling update runs."""
    host_step: str = "updates"          # updates | script | manual (the operator resumes)
    script: str = ""                    # for host_step = script: a path on the Hyper-V host
    update_command: str = ""            # rolling update: run on each VM over SSH
    reboot: bool = False                # rolling update: reboot each VM after the command
    reboot_command: str = REBOOT        # how a VM is told to reboot (detached: it must return)
    expect_engine_change: bool = False  # rolling update: the Docker engine version must change
    shutdown_timeout: float = 300.0     # graceful VM shutdown before it counts as failed
    update_timeout: float = 3600.0      # host updates, or the VM update command
    boot_timeout: float = 600.0         # host or VM back, node Ready
    # a node still not Ready this long after its VM runs again gets its engine restarted
    # once over SSH (a Swarm agent can stall re-registering with a restarted manager); 0 = never
    engine_stall: float = 60.0
    engine_restart_command: str = "systemctl restart docker"
    failure_budget: int = 0             # VMs allowed to fail in a rolling update
    retries: int = 0                    # per VM
    time_limit: float = 0.0             # whole rolling update; 0 = none


@dataclass(frozen=True)
class WinRMConfig:
    """[winrm] (defaults for every host) merged with a host's own `winrm = {...}`.

    The defaults are those of providers/powershell/remote.WinRMHost (a test keeps them equal).
    """
    transport: str = "ntlm"             # ntlm | kerberos | credssp | certificate | basic
    scheme: str = "https"               # https (5986) or http (5985; ntlm/kerberos encrypt)
    port: int = 0                       # 0: the scheme's WinRM port
    cert_validation: bool = True        # check the host's TLS certificate
    ca_bundle: str = ""                 # CA file for that check; "" = requests' bundle
    user_env: str = ""                  # the environment variable holding the user name
    password_env: str = ""              # the one holding the password (never the file)
    cert_pem: str = ""                  # client certificate, transport "certificate"
    cert_key_pem: str = ""              # its key
    allow_basic: bool = False           # basic sends the password with every request
    computer_name: str = ""             # refuse to act if the endpoint answers as another
    read_timeout: int = 30              # s per HTTP request; more than operation_timeout
    operation_timeout: int = 20         # s WinRM holds a Receive open while output is due
    call_timeout: float = 600.0         # s one script may run before it is terminated


@dataclass(frozen=True)
class SSHConfig:
    """How one VM is reached over SSH: [ssh] merged with the VM's own `ssh = {...}`."""
    user: str = ""                      # "" = the ssh config's User, else the local user
    port: int = 0                       # 0 = the ssh config's Port, else 22
    address: str = ""                   # "" = the VM's address, else its name
    host_keys: tuple[str, ...] = ()     # pinned keys ("ssh-ed25519 AAAA..."); () = known_hosts


@dataclass(frozen=True)
class SSHSiteConfig:
    """[ssh], the settings for every VM at once (a VM's own table may not hold these)."""
    known_hosts: tuple[str, ...] = ()   # files of verified host keys; () = ~/.ssh/known_hosts
    identity_files: tuple[str, ...] = ()    # client keys (readable files); () = agent, ~/.ssh
    config: tuple[str, ...] = ()        # ssh config files; () = ~/.ssh/config
    connect_timeout: float = 10.0       # seconds to connect and authenticate


@dataclass(frozen=True)
class HostConfig:
    """[hosts.NAME]: one physical Hyper-V host."""
    name: str                           # as Hyper-V and the operator know it
    address: str = ""                   # DNS name or IP; "" = the name
    winrm: WinRMConfig = WinRMConfig()  # [winrm] merged with the host's


@dataclass(frozen=True)
class VMConfig:
    """[vms.NAME]: one VM, on one of the hosts."""
    name: str
    host: str                           # a name of [hosts]
    address: str = ""                   # its IP or DNS name (SSH, proxy servers by address)
    node: str = ""                      # Swarm hostname, when it differs from the name
    ssh: SSHConfig = SSHConfig()        # [ssh] merged with the VM's


@dataclass(frozen=True)
class Inventory:
    """The whole file. The [console] table's keys are fields of their own."""
    path: Path | None = None            # the file; None: the simulated cluster
    read_only: bool = False             # [console] read_only
    theme: str = ""                     # [console] theme; "" = the default
    state_dir: Path = field(default_factory=lambda: default_state_dir())   # [console]
    keys: dict[str, str] = field(default_factory=dict)      # [console] binding id -> key(s)
    timing: Timing = Timing()           # [operations]
    swarm: SwarmConfig | None = None    # [swarm]; None: no real site (the simulated one)
    proxy: ProxyConfig | None = None    # [proxy]; None: no session awareness
    hosts: dict[str, HostConfig] = field(default_factory=dict)     # [hosts.NAME] by name
    vms: dict[str, VMConfig] = field(default_factory=dict)         # [vms.NAME] by name
    winrm: bool = False                 # hosts are reached over WinRM ([winrm] present)
    ssh: SSHSiteConfig | None = None    # the [ssh] table, when VMs are reached over SSH
    maintenance: WindowOptions = WindowOptions()    # [maintenance]


# Keys whose value is one of a few words (the same key name in every table that has it).
# The WinRM transports are providers/powershell/remote.TRANSPORTS (a test keeps them equal).
CHOICES: dict[str, tuple[str, ...]] = {
    "host_step": HOST_STEPS, "scheme": ("https", "http"),
    "transport": ("ntlm", "kerberos", "credssp", "certificate", "basic")}


# Keys of a table: its dataclass's fields and their types (a tuple of strings is a list).
def _schema(cls: type) -> dict[str, type]:
    hints = typing.get_type_hints(cls)
    return {f.name: list if typing.get_origin(hints[f.name]) is tuple else hints[f.name]
            for f in fields(cls)}


WINRM_KEYS = _schema(WinRMConfig)
VM_SSH_KEYS = _schema(SSHConfig)
SSH_KEYS = {**VM_SSH_KEYS, **_schema(SSHSiteConfig)}    # [ssh]: every VM's defaults and the site
MAINTENANCE_KEYS = _schema(WindowOptions)


def default_state_dir() -> Path:
    return Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local/state") / "opsconsole"


def read_only_from_env() -> bool:
    return os.environ.get(READ_ONLY_ENV, "").strip().lower() in ("1", "true", "yes", "on")


class _Reader:
    """Typed access to one table, with errors that point into the file."""

    def __init__(self, path: Path, text: str, table: dict[str, Any], where: tuple[str, ...]):
        self.path, self.text, self.table, self.where = path, text, table, where
        self.used: set[str] = set()

    def fail(self, key: str | None, problem: str) -> ConfigError:
        dotted = ".".join(self.where + ((key,) if key else ()))
        return ConfigError(f"{self.path}:{_line_of(self.text, self.where, key)}: "
                           f"{dotted or 'file'}: {problem}")

    def get(self, key: str, kind: type | tuple[type, ...], default: Any = None) -> Any:
        self.used.add(key)
        if key not in self.table:
            return default
        value = self.table[key]
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            try:
                value = float(value)
            except OverflowError:
                raise self.fail(key, f"{value} is too large") from None
        if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
            want = kind.__name__ if isinstance(kind, type) else \
                " or ".join(k.__name__ for k in kind)
            raise self.fail(key, f"expected {_words(want)}, got {_words(type(value).__name__)} "
                                 f"{value!r}")
        return value

    def strings(self, key: str) -> tuple[str, ...]:
        value = self.get(key, list, [])
        if not all(isinstance(v, str) and v for v in value):
            raise self.fail(key, "expected a list of non-empty strings")
        return tuple(value)

    def typed(self, schema: dict[str, type]) -> dict[str, Any]:
        """Every key of this table, checked against a schema of key -> type: numbers finite
        and not negative (timeouts above 0), words among CHOICES, files readable."""
        out = {}
        for key in self.table:
            kind = schema.get(key)
            if kind is None:
                raise self.fail(key, f"unknown key (known here: {', '.join(sorted(schema))})")
            if key in FILE_KEYS:
                out[key] = self.file(key, many=kind is list)
            elif kind is list:
                out[key] = self.strings(key)
            elif kind in (int, float):
                out[key] = self.number(key, kind, None, above=key.endswith("timeout"),
                                       most=65535 if key == "port" else None)
            else:
                out[key] = self.get(key, kind)
            if key in CHOICES and out[key] not in CHOICES[key]:
                raise self.fail(key, f"{out[key]!r} is not one of {' | '.join(CHOICES[key])}")
        return out

    def number(self, key: str, kind: type, default: Any, above: bool = False,
               most: float | None = None) -> Any:
        """A finite number, 0 or more (with `above`, more than 0; at most `most`)."""
        value = self.get(key, kind, default)
        if isinstance(value, float) and not math.isfinite(value):
            raise self.fail(key, f"must be a finite number, got {value}")
        if above and value <= 0:
            raise self.fail(key, f"must be greater than 0, got {value}")
        if value < 0:
            raise self.fail(key, f"must be 0 or more, got {value}")
        if most is not None and value > most:
            raise self.fail(key, f"must be at most {most}, got {value}")
        return value

    def file(self, key: str, many: bool = False) -> Any:
        """A path (with `many`, paths) to files that exist and can be read, made absolute:
        `~` expanded, a relative path taken from the inventory's folder."""
        paths = self.strings(key) if many else (self.get(key, str, ""),)
        out = []
        for value in paths:
            if not value:
                continue
            path = self.path.parent / Path(value).expanduser()
            if path.exists() and not path.is_file():
                raise self.fail(key, f"{str(path)!r} is not a file")
            try:
                with path.open("rb"):
                    pass
            except OSError as e:
                raise self.fail(key, f"cannot read {str(path)!r}: "
                                     f"{e.strerror or type(e).__name__}") from None
            out.append(str(path.absolute()))
        return tuple(out) if many else (out[0] if out else "")

    def sub(self, key: str) -> _Reader:
        return _Reader(self.path, self.text, self.get(key, dict, {}), self.where + (key,))

    def done(self) -> None:
        unknown = sorted(set(self.table) - self.used)
        if unknown:
            known = ", ".join(sorted(self.used))
            raise self.fail(unknown[0], f"unknown key (known here: {known})")


def _words(type_name: str) -> str:
    return {"str": "a string", "int": "an integer", "float": "a number", "bool": "true or false",
            "list": "a list", "dict": "a table"}.get(type_name, type_name)


def _line_of(text: str, where: tuple[str, ...], key: str | None) -> int:
    """Best line for a key: inside its [table] section; for an inline table, its line."""
    lines = text.splitlines()
    start = -1
    if where:
        quoted = r"\.".join(rf'\s*(?:"{re.escape(w)}"|{re.escape(w)})\s*' for w in where)
        header = re.compile(rf"^\s*\[{quoted}\]\s*(#.*)?$")
        start = next((i for i, ln in enumerate(lines) if header.match(ln)), -1)
        if start < 0:                 # no [a.b] header: `b = {...}` inside [a]
            return _line_of(text, where[:-1], where[-1])
    if key:
        pattern = re.compile(rf'^\s*(?:"{re.escape(key)}"|{re.escape(key)})\s*=')
        for i in range(start + 1, len(lines)):
            if lines[i].lstrip().startswith("["):
                break
            if pattern.match(lines[i]):
                return i + 1
    return start + 1 if start >= 0 else 1


def load(path: str | os.PathLike[str], binding_ids: Collection[str] | None = None) -> Inventory:
    """The inventory at `path`, checked. `binding_ids`: the key bindings `[console] keys` may
    remap (the operation registry's; the console passes them, see session.load_inventory);
    None checks only that each names a key."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot read: {e}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        m = re.search(r"\(at line (\d+), column (\d+)\)", str(e))
        where = f"{m.group(1)}:{m.group(2)}" if m else str(max(1, len(text.splitlines())))
        raise ConfigError(f"{path}:{where}: not valid TOML: {str(e).split(' (at')[0]}") from None
    return _parse(path, text, data, binding_ids)


def _parse(path: Path, text: str, data: dict[str, Any],
           binding_ids: Collection[str] | None) -> Inventory:
    top = _Reader(path, text, data, ())
    _check_text(top)
    console = _console(top.sub("console"), binding_ids)
    timing = _operations(top.sub("operations"))
    swarm = _swarm(top.sub("swarm")) if "swarm" in data else None
    proxy = _proxy(top.sub("proxy")) if "proxy" in data else None
    winrm = _winrm(top.sub("winrm"))
    ssh, vm_ssh = _ssh(top.sub("ssh")) if "ssh" in data else (None, SSHConfig())
    maintenance = _maintenance(top.sub("maintenance"))
    hosts = _hosts(top.sub("hosts"), winrm)
    vms = _vms(top.sub("vms"), hosts, vm_ssh)
    top.done()
    if swarm is None:
        raise top.fail(None, "no [swarm] table: the console needs at least one manager")
    over_winrm = "winrm" in data or any(h.get("winrm") for h in data.get("hosts", {}).values())
    return replace(console, path=path, timing=timing, swarm=swarm, proxy=proxy, hosts=hosts,
                   vms=vms, winrm=over_winrm, ssh=ssh, maintenance=maintenance)


RENAMED = {"rolling_update": "rolling-update"}


def _console(c: _Reader, binding_ids: Collection[str] | None) -> Inventory:
    """[console]: an Inventory holding only its fields."""
    read_only = c.get("read_only", bool, False)
    theme = c.get("theme", str, "")
    state_dir = c.get("state_dir", str, "")
    # the id the first versions documented: inventories that use it keep working
    keys = {RENAMED.get(k, k): v for k, v in c.get("keys", dict, {}).items()}
    for binding, key in keys.items():
        if binding_ids is not None and binding not in binding_ids:
            raise c.fail("keys", f"{binding!r} is not a binding id "
                                 f"(known: {', '.join(binding_ids)})")
        if not isinstance(key, str) or not key.strip():
            raise c.fail("keys", f"{binding}: expected a key name such as \"D\"")
    c.done()
    return Inventory(read_only=read_only, theme=theme, keys=dict(keys),
                     state_dir=Path(state_dir).expanduser() if state_dir else default_state_dir())


def _operations(ops: _Reader) -> Timing:
    timing = Timing(sessions_timeout=ops.number("sessions_timeout", float,
                                                Timing.sessions_timeout, above=True),
                    sessions_threshold=ops.number("sessions_threshold", int,
                                                  Timing.sessions_threshold),
                    drain_timeout=ops.number("drain_timeout", float, Timing.drain_timeout,
                                             above=True),
                    settle=ops.number("settle", float, Timing.settle),
                    paused_limit=ops.number("paused_limit", float, Timing.paused_limit,
                                            above=True),
                    service_timeout=ops.number("service_timeout", float,
                                               Timing.service_timeout, above=True))
    ops.done()
    return timing


def _swarm(s: _Reader) -> SwarmConfig:
    endpoints = s.strings("endpoints")
    for e in endpoints:
        if not re.match(r"^(unix|tcp|ssh)://.+", e):
            raise s.fail("endpoints", f"{e!r} is not unix://, tcp:// or ssh://")
    allow: bool | tuple[str, ...] = (s.strings("allow_plaintext")
                                     if isinstance(s.table.get("allow_plaintext"), list)
                                     else s.get("allow_plaintext", bool, False))
    for e in () if isinstance(allow, bool) else allow:
        if e not in endpoints or not e.startswith("tcp://"):
            raise s.fail("allow_plaintext", f"{e!r} is not a tcp:// endpoint of endpoints")
    swarm = SwarmConfig(endpoints=endpoints, context=s.get("context", str, ""),
                        tls_ca=s.file("tls_ca"), tls_cert=s.file("tls_cert"),
                        tls_key=s.file("tls_key"), allow_plaintext=allow,
                        timeout=s.number("timeout", float, SwarmConfig.timeout, above=True))
    if bool(swarm.tls_cert) != bool(swarm.tls_key):
        raise s.fail("tls_cert", "tls_cert and tls_key go together")
    for e in endpoints:
        if swarm.plaintext(e) and not swarm.allows_plaintext(e):
            raise s.fail("endpoints", f"{e!r} would carry the Docker API in plain text: set "
                                      "tls_ca (and tls_cert, tls_key), or allow_plaintext = true")
    s.done()
    return swarm


def _proxy(p: _Reader) -> ProxyConfig:
    sock = p.get("socket", str, "")
    if not re.match(r"^(unix://.+|tcp://[^:]+:\d+)$", sock):
        raise p.fail("socket", "expected unix:///path or tcp://host:port")
    servers = p.get("servers", dict, {})
    for k, v in servers.items():
        if not PROXY_SERVER.match(k) or not isinstance(v, str):
            raise p.fail("servers", f"{k!r}: expected \"backend/server\" = \"vm-name\"")
        if not NAME.match(v):
            raise p.fail("servers", f"{k!r}: {v!r} is not a valid VM name")
    proxy = ProxyConfig(sock, dict(servers),
                        p.number("timeout", float, ProxyConfig.timeout, above=True))
    p.done()
    return proxy


def _winrm(w: _Reader) -> WinRMConfig:
    """[winrm]: every host's defaults."""
    return WinRMConfig(**w.typed(WINRM_KEYS))


def _ssh(s: _Reader) -> tuple[SSHSiteConfig, SSHConfig]:
    """[ssh]: the site's settings, and every VM's defaults."""
    settings = s.typed(SSH_KEYS)
    site = {k: v for k, v in settings.items() if k not in VM_SSH_KEYS}
    return (SSHSiteConfig(**site),
            SSHConfig(**{k: v for k, v in settings.items() if k in VM_SSH_KEYS}))


def _maintenance(m: _Reader) -> WindowOptions:
    options = WindowOptions(**m.typed(MAINTENANCE_KEYS))
    if options.host_step == "script" and not options.script:
        raise m.fail("script", "host_step = \"script\" needs the script's path on the host")
    return options


def _hosts(table: _Reader, winrm: WinRMConfig) -> dict[str, HostConfig]:
    hosts: dict[str, HostConfig] = {}
    for name in table.table:
        h = table.sub(name)
        _check_name(h, name, hosts, "host")
        hosts[name] = HostConfig(name, h.get("address", str, ""),
                                 replace(winrm, **h.sub("winrm").typed(WINRM_KEYS)))
        h.done()
    table.used.update(table.table)
    return hosts


def _vms(table: _Reader, hosts: dict[str, HostConfig], ssh: SSHConfig) -> dict[str, VMConfig]:
    vms: dict[str, VMConfig] = {}
    nodes: dict[str, str] = {}          # Swarm hostname, lower case -> the VM mapped to it
    for name in table.table:
        v = table.sub(name)
        _check_name(v, name, vms, "VM")
        host = v.get("host", str, "")
        if host not in hosts:
            raise v.fail("host", f"{host!r} is not a host of [hosts] "
                                 f"(known: {', '.join(hosts) or 'none'})")
        node = v.get("node", str, "")
        if node and not HOSTNAME.match(node):
            raise v.fail("node", f"{node!r} is not a valid hostname")
        other = nodes.setdefault((node or name).lower(), name)
        if other != name:
            raise v.fail("node" if node else None,
                         f"VMs {other} and {name} are both mapped to Swarm node {node or name}")
        vms[name] = VMConfig(name, host, v.get("address", str, ""), node,
                             replace(ssh, **_vm_ssh(v.sub("ssh"))))
        v.done()
    table.used.update(table.table)
    return vms


def _vm_ssh(own: _Reader) -> dict[str, Any]:
    """A VM's `ssh = {...}`: the keys of [ssh] that may differ per VM."""
    settings = own.typed(SSH_KEYS)
    site_only = [k for k in settings if k not in VM_SSH_KEYS]
    if site_only:
        raise own.fail(site_only[0], "belongs in the [ssh] table, for every VM")
    return settings


def _check_name(reader: _Reader, name: str, seen: dict[str, Any], kind: str) -> None:
    if not NAME.match(name):
        raise reader.fail(None, f"{name!r} is not a valid name "
                                "(letters, digits, '.', '_', '-'; at most 63)")
    same = next((other for other in seen if other.lower() == name.lower()), None)
    if same is not None:
        raise reader.fail(None, f"{kind} {name!r} differs from {kind} {same!r} only by case")


def _check_text(r: _Reader) -> None:
    """No key or string anywhere in the file holds a control or bidi character (text that
    would show other than it reads, or drive the terminal); tab and newline are fine."""
    for key, value in r.table.items():
        if (bad := UNSAFE.search(key)):     # on the first line that writes that character
            c = ord(bad.group())
            forms = (chr(c), f"\\u{c:04x}", f"\\u{c:04X}", f"\\U{c:08x}", f"\\U{c:08X}")
            line = next((i for i, ln in enumerate(r.text.splitlines(), 1)
                         if any(f in ln for f in forms)), 1)
            dotted = ".".join(r.where) or "file"
            raise ConfigError(f"{r.path}:{line}: {dotted}: key {key!r}: control character "
                              f"U+{c:04X}")
        if isinstance(value, dict):
            _check_text(_Reader(r.path, r.text, value, r.where + (key,)))
            continue
        for s in _texts(value):
            if (bad := UNSAFE.search(s)):
                shown = repr(s) if len(s) <= 60 else repr(s[:57]) + "…"
                raise r.fail(key, f"control character U+{ord(bad.group()):04X} in {shown}")


def _texts(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, list):
        for v in value:
            yield from _texts(v)
    elif isinstance(value, dict):
        for k, v in value.items():
            yield k
            yield from _texts(v)
