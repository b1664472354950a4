"""The inventory file (TOML) turned into a validated, frozen configuration.

Every problem is one ConfigError naming the file, the line where it can be
found, the key, and what is wrong. Secrets never live in the file: it names
environment variables that hold them.
"""
from __future__ import annotations

import os
import re
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .ops.maintenance import WindowOptions
from .ops.plans import Timing

READ_ONLY_ENV = "OPSCONSOLE_READ_ONLY"
# The TUI's remappable bindings (ids of opsconsole/ui/app.py's BINDINGS).
BINDING_IDS = ("cordon", "drain", "activate", "maintenance", "rolling_update", "pause", "abort",
               "filter", "audit", "help", "theme", "quit")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")


class ConfigError(Exception):
    """A bad inventory: the message says file, line, key and problem."""


@dataclass(frozen=True)
class SwarmConfig:
    endpoints: tuple[str, ...] = ()     # unix://, tcp://, ssh://; tried in order
    context: str = ""                   # a docker context name instead
    tls_ca: str = ""
    tls_cert: str = ""
    tls_key: str = ""
    timeout: float = 10.0


@dataclass(frozen=True)
class ProxyConfig:
    socket: str                         # unix:///path or tcp://host:port
    servers: dict[str, str] = field(default_factory=dict)   # "backend/server" -> VM
    timeout: float = 5.0


# Keys of the [winrm] table (defaults for every host) and of a host's `winrm = {...}`.
WINRM_KEYS: dict[str, type] = {
    "transport": str, "scheme": str, "port": int, "cert_validation": bool, "ca_bundle": str,
    "user_env": str, "password_env": str, "cert_pem": str, "cert_key_pem": str,
    "allow_basic": bool, "computer_name": str, "read_timeout": int, "operation_timeout": int,
    "call_timeout": float}
# Keys of the [ssh] table (defaults) and of a VM's `ssh = {...}`.
SSH_KEYS: dict[str, type] = {
    "user": str, "port": int, "address": str, "host_keys": list, "known_hosts": list,
    "identity_files": list, "config": list, "connect_timeout": float}
SSH_SITE_ONLY = ("known_hosts", "identity_files", "config", "connect_timeout")
# Keys of [maintenance]: the fields of WindowOptions, how windows run.
MAINTENANCE_KEYS: dict[str, type] = typing.get_type_hints(WindowOptions)


@dataclass(frozen=True)
class HostConfig:
    name: str
    address: str = ""
    winrm: dict[str, Any] = field(default_factory=dict)   # [winrm] merged with the host's


@dataclass(frozen=True)
class VMConfig:
    name: str
    host: str
    address: str = ""
    node: str = ""                      # Swarm hostname, when it differs from the name
    ssh: dict[str, Any] = field(default_factory=dict)     # [ssh] merged with the VM's


@dataclass(frozen=True)
class Inventory:
    path: Path | None = None
    read_only: bool = False
    theme: str = ""
    state_dir: Path = field(default_factory=lambda: default_state_dir())
    timing: Timing = Timing()
    keys: dict[str, str] = field(default_factory=dict)      # binding id -> key(s)
    swarm: SwarmConfig | None = None
    proxy: ProxyConfig | None = None
    hosts: dict[str, HostConfig] = field(default_factory=dict)
    vms: dict[str, VMConfig] = field(default_factory=dict)
    winrm: bool = False                 # hosts are reached over WinRM ([winrm] present)
    ssh: dict[str, Any] | None = None   # the [ssh] table, when VMs are reached over SSH
    maintenance: dict[str, Any] = field(default_factory=dict)


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
            value = float(value)
        if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
            want = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
            raise self.fail(key, f"expected {_words(want)}, got {_words(type(value).__name__)} "
                                 f"{value!r}")
        return value

    def strings(self, key: str) -> tuple[str, ...]:
        value = self.get(key, list, [])
        if not all(isinstance(v, str) and v for v in value):
            raise self.fail(key, "expected a list of non-empty strings")
        return tuple(value)

    def typed(self, schema: dict[str, type]) -> dict[str, Any]:
        """Every key of this table, checked against a schema of key -> type."""
        out = {}
        for key in self.table:
            if key not in schema:
                raise self.fail(key, f"unknown key (known here: {', '.join(sorted(schema))})")
            out[key] = self.strings(key) if schema[key] is list else self.get(key, schema[key])
        return out

    def sub(self, key: str) -> "_Reader":
        return _Reader(self.path, self.text, self.get(key, dict, {}), self.where + (key,))

    def positive(self, key: str, default: float) -> float:
        value = self.get(key, float, default)
        if value <= 0:
            raise self.fail(key, f"must be greater than 0, got {value}")
        return value

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


def load(path: str | os.PathLike[str]) -> Inventory:
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
    return _parse(path, text, data)


def _parse(path: Path, text: str, data: dict[str, Any]) -> Inventory:
    top = _Reader(path, text, data, ())
    console = top.sub("console")
    read_only = console.get("read_only", bool, False)
    theme = console.get("theme", str, "")
    state_dir = console.get("state_dir", str, "")
    keys = console.get("keys", dict, {})
    for binding, key in keys.items():
        if binding not in BINDING_IDS:
            raise console.fail("keys", f"{binding!r} is not a binding id "
                                       f"(known: {', '.join(BINDING_IDS)})")
        if not isinstance(key, str) or not key.strip():
            raise console.fail("keys", f"{binding}: expected a key name such as \"D\"")
    console.done()

    ops = top.sub("operations")
    timing = Timing(sessions_timeout=ops.positive("sessions_timeout", Timing.sessions_timeout),
                    sessions_threshold=int(ops.get("sessions_threshold", int,
                                                   Timing.sessions_threshold)),
                    drain_timeout=ops.positive("drain_timeout", Timing.drain_timeout))
    if timing.sessions_threshold < 0:
        raise ops.fail("sessions_threshold", "must be 0 or more")
    ops.done()

    swarm = None
    if "swarm" in data:
        s = top.sub("swarm")
        swarm = SwarmConfig(endpoints=s.strings("endpoints"), context=s.get("context", str, ""),
                            tls_ca=s.get("tls_ca", str, ""), tls_cert=s.get("tls_cert", str, ""),
                            tls_key=s.get("tls_key", str, ""),
                            timeout=s.positive("timeout", SwarmConfig.timeout))
        for e in swarm.endpoints:
            if not re.match(r"^(unix|tcp|ssh)://.+", e):
                raise s.fail("endpoints", f"{e!r} is not unix://, tcp:// or ssh://")
        if bool(swarm.tls_cert) != bool(swarm.tls_key):
            raise s.fail("tls_cert", "tls_cert and tls_key go together")
        s.done()

    proxy = None
    if "proxy" in data:
        p = top.sub("proxy")
        sock = p.get("socket", str, "")
        if not re.match(r"^(unix://.+|tcp://[^:]+:\d+)$", sock):
            raise p.fail("socket", "expected unix:///path or tcp://host:port")
        servers = p.get("servers", dict, {})
        for k, v in servers.items():
            if "/" not in k or not isinstance(v, str):
                raise p.fail("servers", f"{k!r}: expected \"backend/server\" = \"vm-name\"")
        proxy = ProxyConfig(sock, dict(servers), p.positive("timeout", ProxyConfig.timeout))
        p.done()

    winrm = "winrm" in data
    winrm_defaults = top.sub("winrm").typed(WINRM_KEYS)
    ssh = top.sub("ssh").typed(SSH_KEYS) if "ssh" in data else None
    maintenance = top.sub("maintenance").typed(MAINTENANCE_KEYS)

    hosts: dict[str, HostConfig] = {}
    htable = top.sub("hosts")
    for name in htable.table:
        h = htable.sub(name)
        _check_name(h, name)
        own = h.sub("winrm").typed(WINRM_KEYS)
        winrm = winrm or bool(own)
        hosts[name] = HostConfig(name, h.get("address", str, ""), {**winrm_defaults, **own})
        h.done()
    htable.used.update(htable.table)

    vms: dict[str, VMConfig] = {}
    vtable = top.sub("vms")
    for name in vtable.table:
        v = vtable.sub(name)
        _check_name(v, name)
        host = v.get("host", str, "")
        if host not in hosts:
            raise v.fail("host", f"{host!r} is not a host of [hosts] "
                                 f"(known: {', '.join(hosts) or 'none'})")
        own = v.sub("ssh")
        settings = own.typed(SSH_KEYS)
        site_only = [k for k in settings if k in SSH_SITE_ONLY]
        if site_only:
            raise own.fail(site_only[0], "belongs in the [ssh] table, for every VM")
        vms[name] = VMConfig(name, host, v.get("address", str, ""), v.get("node", str, ""),
                             {**(ssh or {}), **settings})
        v.done()
    vtable.used.update(vtable.table)
    top.done()
    if swarm is None:
        raise top.fail(None, "no [swarm] table: the console needs at least one manager")
    return Inventory(path=path, read_only=read_only, theme=theme, keys=dict(keys),
                     winrm=winrm, ssh=ssh, maintenance=maintenance,
                     state_dir=Path(state_dir).expanduser() if state_dir else default_state_dir(),
                     timing=timing, swarm=swarm, proxy=proxy, hosts=hosts, vms=vms)


def _check_name(reader: _Reader, name: str) -> None:
    if not NAME.match(name):
        raise reader.fail(None, f"{name!r} is not a valid name "
                                "(letters, digits, '.', '_', '-'; at most 63)")
