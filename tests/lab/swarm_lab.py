"""A real multi-node Docker Swarm on one machine, for opsconsole's tests.

Each "VM" is a dockerd in its own network namespace (and UTS namespace, for its
hostname), attached by a veth pair to the bridge ``oclbr0`` (10.77.0.1/24) in
the root namespace, plus an sshd on its address (port 22) in that namespace.
Nothing leaves the lab subnet: the namespaces have no default route and the
images are built offline from busybox-static.

Around the VMs: a real HAProxy on 127.0.0.1 in front of the global `portal`
service (one server per VM), and `labd` (tests/lab/labd.py), a daemon that
serves one WinRM emulator per simulated Hyper-V host, acting on these VMs,
and carries out the VMs' own reboot requests.

    python -m tests.lab.swarm_lab up [--reference]   # prints the inventory path
    python -m tests.lab.swarm_lab down

Needs root, and the Debian packages docker.io, haproxy, openssh-server,
busybox-static and iproute2.

Safety: the VMs share this machine's kernel. A VM's sshd runs without
CAP_SYS_BOOT (and CAP_SYS_ADMIN, CAP_SYS_MODULE, CAP_SYS_RAWIO) in its
bounding set, in its own PID, mount and UTS namespaces where reboot,
shutdown, poweroff, halt, telinit, init and systemctl are the lab's script
(which asks labd to restart that VM only), /proc/sysrq-trigger is /dev/null,
/proc/sys and /sys are read-only and /run and the lab's directory are hidden
(see tests/lab/vminit.py). Nothing run over SSH can reboot or power off the
machine.
"""
from __future__ import annotations

import argparse
import concurrent.futures as cf
import contextlib
import ctypes
import fcntl
import glob
import hashlib
import io
import json
import logging
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import asyncssh
import docker

log = logging.getLogger("swarm_lab")
HERE = Path(__file__).resolve().parent

DEFAULT_ROOT = Path("/tmp/ocl")  # short: unix socket paths are limited to 108 bytes
BRIDGE = "oclbr0"
PREFIX = "10.77.0."
GATEWAY = PREFIX + "1"
IMAGE = "opsconsole-lab/busybox:1"
API_VERSION = "1.41"  # Debian's dockerd 20.10
BUSYBOX = "/bin/busybox"  # from busybox-static: no shared libs needed in the image
SECOND = 1_000_000_000  # the swarm API counts in nanoseconds
LOCK_LABEL = "io.opsconsole.lock"  # the console's operation lock, on the swarm's spec
LOGS = ("dockerd.log", "sshd.log", "boots.jsonl", "haproxy.log", "labd.log")  # kept by down()
# iptables rule that lets bridged lab traffic through a FORWARD DROP policy
# (only relevant when br_netfilter sends bridged frames through iptables).
FORWARD_RULE = ["FORWARD", "-i", BRIDGE, "-o", BRIDGE, "-j", "ACCEPT"]
PORTAL_PORT = 8081  # the global `portal` service: busybox httpd on each VM's address
BACKEND = "portal"  # HAProxy backend in front of it; its servers are named after the VMs
SSHD = "/usr/sbin/sshd"
# Taken out of the bounding set of every lab VM's sshd: what could reboot, power off or
# otherwise reach past the VM (reboot(2), kexec, mounts, modules, raw I/O).
SSHD_DROP_CAPS = ("sys_boot", "sys_admin", "sys_module", "sys_rawio")
CAP_SYS_BOOT = 22
# WinRM: the emulators' credentials, passed to the console through these variables.
WINRM_USER_ENV = "OPSCONSOLE_LAB_WINRM_USER"
WINRM_PASSWORD_ENV = "OPSCONSOLE_LAB_WINRM_PASSWORD"
WINRM_USER, WINRM_PASSWORD = "lab-admin", "lab-pass"
# [operations] of the lab inventory, suited to the load generator's users (tests/lab/load.py:
# 2-4 s of requests each) and to the stick table's expiry below.
STICK_EXPIRE_S = 3
OPERATIONS = {"sessions_timeout": 40, "sessions_threshold": 0, "drain_timeout": 120}
# [maintenance] of the lab inventory. The update command proves it ran in the VM's own
# files; `reboot` is the lab's script inside the VM (tests/lab/vminit.py).
UPDATE_COMMAND = ('echo "$(date +%s.%N) update on $(hostname)" >> '
                  '"{root}/$(hostname)/disk/updates.log"')
MAINTENANCE = {"host_step": "updates", "reboot": True, "reboot_command": "reboot",
               "shutdown_timeout": 60, "update_timeout": 120, "boot_timeout": 120}

# HAProxy in front of `portal` (one server per VM), as the reference site: cookie persistence
# plus a stick table on the user's session cookie; health checks every 500 ms. `redispatch`:
# a request whose server went away is sent elsewhere (the load generator counts such moves).
PROXY_CONFIG = """\
global
    stats socket {dir}/admin.sock mode 600 level admin
    stats socket {dir}/operator.sock mode 600 level operator
    stats timeout 30s
defaults
    mode http
    timeout connect 2s
    timeout client 30s
    timeout server 10s
    timeout http-keep-alive 10s
    retries 3
    option redispatch
frontend fe
    bind 127.0.0.1:{port}
    default_backend {backend}
backend {backend}
    balance roundrobin
    cookie SRV insert indirect nocache
    stick-table type string len 64 size 10k expire {expire}s
    stick on req.cook(SESSIONID)
    option httpchk GET /
    default-server check inter 500ms fall 2 rise 2
{servers}
"""

SSHD_CONFIG = """\
# written by tests/lab/swarm_lab.py: the sshd of lab VM {vm.name}
ListenAddress {vm.address}
Port 22
HostKey {vm.host_key}
AuthorizedKeysFile {vm.ssh_dir}/authorized_keys
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
UseDNS no
PrintMotd no
PidFile none
LogLevel VERBOSE
"""

# What could power the machine off or reboot it: inside a lab VM each of these is the script below.
POWER_COMMANDS = ("reboot", "shutdown", "poweroff", "halt", "telinit", "init", "systemctl")
POWER_SCRIPT = """\
#!/bin/sh
# opsconsole-lab-power {vm}
# The power commands of lab VM {vm}: bind-mounted over reboot, shutdown, poweroff, halt,
# telinit, init and systemctl inside that VM's own mount namespace only (tests/lab/vminit.py).
# It asks the lab (labd) to restart this VM, i.e. its dockerd and sshd, or with
# `systemctl restart docker` its dockerd alone; nothing else.
me=${{0##*/}}
verb=$me
case $me in
  systemctl|telinit|init)
    verb=
    for a in "$@"; do case $a in -*) ;; *) verb=$a; break ;; esac; done
    case "$me $*" in "systemctl restart docker"|"systemctl restart docker.service") verb=restart-docker ;; esac ;;
  shutdown)
    case " $* " in *" -c "*) echo "{vm}: no shutdown pending"; exit 0 ;; esac
    verb=reboot ;;
esac
case $verb in
  reboot|poweroff|halt|kexec|soft-reboot|0|6|restart-docker) ;;
  *) echo "$me${{verb:+ $verb}}: not available in lab VM {vm} (opsconsole lab)" >&2; exit 1 ;;
esac
rm -f {power}/done
printf '%s %s %s\\n' "$verb" "$(date +%s.%N)" "$me" > {power}/request.tmp &&
  mv -f {power}/request.tmp {power}/request || exit 1
case $verb in
  restart-docker)   # like systemctl: back once the engine has restarted (labd says `done`)
    echo "{vm}: restarting docker (the lab restarts this VM's dockerd)"
    i=0
    until [ -e {power}/done ]; do
      i=$((i + 1)); [ $i -le 1200 ] || {{ echo "{vm}: docker restart timed out" >&2; exit 1; }}
      sleep 0.1
    done
    rm -f {power}/done ;;
  *) echo "{vm}: restarting (the lab restarts this VM's dockerd and sshd)" ;;
esac
"""


class Client(docker.DockerClient):
    """docker.DockerClient that also works as a context manager (closes its connections)."""

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class LabError(RuntimeError):
    """The lab could not be set up (or torn down); the message names the step."""


@dataclass
class VM:
    name: str  # also the hostname and the swarm node name
    host: str  # simulated Hyper-V host
    role: str  # "manager" | "worker"
    address: str
    dir: Path

    @property
    def netns(self) -> str:
        return "ocl-" + self.name

    @property
    def veth(self) -> str:  # root-namespace end of the VM's cable
        return "oclv" + self.name[3:]

    @property
    def sock(self) -> Path:
        return self.dir / "docker.sock"

    @property
    def socket(self) -> str:
        return f"unix://{self.sock}"

    @property
    def log_file(self) -> Path:
        return self.dir / "dockerd.log"

    @property
    def pidfile(self) -> Path:
        return self.dir / "docker.pid"

    @property
    def cgroup(self) -> str:  # cgroup parent of this VM's containers
        return "ocl-" + self.name

    # -- what the VM's sshd and the lab's power control use (see vminit.py)
    @property
    def ssh_dir(self) -> Path:  # sshd_config, host key, authorized_keys (read-only in the VM)
        return self.dir / "ssh"

    @property
    def host_key(self) -> Path:
        return self.ssh_dir / "ssh_host_ed25519_key"

    @property
    def sbin(self) -> Path:  # the lab's power script, bind-mounted over reboot & co in the VM
        return self.dir / "sbin"

    @property
    def power(self) -> Path:  # the VM's power requests drop box (writable in the VM)
        return self.dir / "power"

    @property
    def disk(self) -> Path:  # the VM's own files (writable in the VM, at the same path)
        return self.dir / "disk"

    @property
    def boot_id_file(self) -> Path:  # the VM's /proc/sys/kernel/random/boot_id
        return self.dir / "boot_id"

    @property
    def boots(self) -> Path:  # one JSON line per boot and per restart, with times
        return self.dir / "boots.jsonl"

    @property
    def sshd_log(self) -> Path:
        return self.dir / "sshd.log"

    def boot_id(self) -> str:
        try:
            return self.boot_id_file.read_text().strip()
        except OSError:
            return ""


@dataclass
class Host:
    name: str
    address: str = "127.0.0.1"
    vms: list[str] = field(default_factory=list)


def topology(reference: bool = False) -> list[tuple[str, str, str]]:
    """(vm, host, role) triples."""
    if reference:  # two Hyper-V hosts, one manager each
        return [(f"vm-0{i}", "hv-01" if i <= 3 else "hv-02", "manager" if i in (1, 4) else "worker")
                for i in range(1, 7)]
    return [(f"vm-0{i}", "hv-01" if i <= 3 else "hv-02", "manager" if i <= 3 else "worker")
            for i in range(1, 6)]


# ---------------------------------------------------------------- small helpers
def _run(*cmd: str, check: bool = True) -> subprocess.CompletedProcess:
    p = subprocess.run(cmd, capture_output=True, text=True)
    if check and p.returncode:
        raise LabError(f"{' '.join(cmd)!r} failed: {p.stderr.strip() or p.stdout.strip()}")
    return p


def _alive(pid: int) -> bool:
    try:  # a zombie counts as dead: it is waiting only to be reaped
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _exe(pid: int) -> str:
    try:
        return os.path.basename(os.readlink(f"/proc/{pid}/exe"))
    except OSError:
        return ""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _record(vm: VM, **fields) -> None:
    """One line of the VM's boot log (boots.jsonl): boots, halts, reboot requests, with times."""
    with open(vm.boots, "a") as f:
        f.write(json.dumps(fields) + "\n")


def read_boots(vm: VM) -> list[dict]:
    try:
        return [json.loads(l) for l in vm.boots.read_text().splitlines() if l.strip()]
    except OSError:
        return []


def _shim_sockets(pids) -> set[str]:
    """Sockets containerd shims listen on: a SIGKILLed shim leaves its file in /run/containerd/s."""
    found = set()
    for pid in pids:
        with contextlib.suppress(OSError):
            inodes = {os.readlink(f"/proc/{pid}/fd/{fd}")[8:-1] for fd in os.listdir(f"/proc/{pid}/fd")}
            for line in Path(f"/proc/{pid}/net/unix").read_text().splitlines()[1:]:
                f = line.split()
                if len(f) >= 8 and f[6] in inodes and f[7].startswith("/run/containerd/s/"):
                    found.add(f[7])
    return found


def _kill(pids, timeout: float = 5.0) -> None:
    sockets = _shim_sockets(pids)
    for pid in pids:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    _wait_dead(pids, timeout)
    for path in sockets:
        Path(path).unlink(missing_ok=True)


def _wait_dead(pids, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while any(_alive(p) for p in pids):
        for p in pids:  # reap our own children
            with contextlib.suppress(ChildProcessError, OSError):
                os.waitpid(p, os.WNOHANG)
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _pids_in_netns(ns: str) -> list[int]:
    try:
        st = os.stat(f"/run/netns/{ns}")
    except OSError:
        return []
    found = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            with contextlib.suppress(OSError):
                s = os.stat(f"/proc/{d}/ns/net")
                if (s.st_dev, s.st_ino) == (st.st_dev, st.st_ino):
                    found.append(int(d))
    return found


def _cgroup_dirs(name: str) -> list[str]:  # cgroup v1 (one per controller) and v2
    return glob.glob(f"/sys/fs/cgroup/*/{name}") + glob.glob(f"/sys/fs/cgroup/{name}")


def _sshd_side(pids: list[int]) -> set[int]:
    """Of `pids`, the VM's sshd and its sessions: everything in the pid namespace sshd runs in."""
    def pidns(pid: int) -> str:
        try:
            return os.readlink(f"/proc/{pid}/ns/pid")
        except OSError:
            return ""
    def exe(pid: int) -> str:
        try:
            return os.readlink(f"/proc/{pid}/exe")
        except OSError:
            return ""
    def parent(pid: int) -> int:
        try:
            return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            return 0
    spaces = {pidns(p) for p in pids if exe(p) == SSHD} - {""}
    side = {p for p in pids if pidns(p) in spaces}
    for p in list(side):    # and what started sshd's namespace (unshare, nsenter): it dies with them
        while (p := parent(p)) in pids:
            side.add(p)
    return side


def _pids_in_cgroups(name: str) -> list[int]:
    pids = set()
    for top in _cgroup_dirs(name):
        for procs in glob.glob(f"{top}/**/cgroup.procs", recursive=True):
            with contextlib.suppress(OSError):
                pids.update(int(x) for x in Path(procs).read_text().split())
    return sorted(pids)


def _remove_cgroups(name: str) -> None:
    for top in _cgroup_dirs(name):
        for d, _, _ in sorted(os.walk(top), key=lambda w: -len(w[0])):  # leaves first
            with contextlib.suppress(OSError):
                os.rmdir(d)


def _mounts_under(path: Path) -> list[str]:
    prefix = str(path).rstrip("/") + "/"
    out = []
    for line in Path("/proc/self/mounts").read_text().splitlines():
        mp = line.split()[1].encode().decode("unicode_escape")  # undo \040 escapes
        if mp.startswith(prefix) or mp == prefix[:-1]:
            out.append(mp)
    return out


_libc = ctypes.CDLL(None, use_errno=True)


def _unmount_all(path: Path) -> None:
    """Detach every mount under path, deepest first (dockerd leaves many behind when killed)."""
    for _ in range(5):  # a detach can uncover mounts stacked beneath
        mps = _mounts_under(path)
        if not mps:
            return
        for mp in sorted(mps, key=len, reverse=True):
            _libc.umount2(mp.encode(), 2)  # MNT_DETACH
    if _mounts_under(path):
        raise LabError(f"cannot unmount {_mounts_under(path)[:3]}")


def _tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _image_tar() -> bytes:
    """A `docker save`-format tarball of busybox-static, built without any daemon or registry."""
    applets = _run(BUSYBOX, "--list").stdout.split()
    layer = io.BytesIO()
    with tarfile.open(fileobj=layer, mode="w") as t:
        for d, mode in (("bin", 0o755), ("etc", 0o755), ("tmp", 0o1777)):
            ti = tarfile.TarInfo(d)
            ti.type, ti.mode = tarfile.DIRTYPE, mode
            t.addfile(ti)
        t.add(BUSYBOX, "bin/busybox")
        for a in applets:
            if a != "busybox":
                ti = tarfile.TarInfo(f"bin/{a}")
                ti.type, ti.linkname = tarfile.SYMTYPE, "busybox"
                t.addfile(ti)
    layer_bytes = layer.getvalue()
    diff_id = hashlib.sha256(layer_bytes).hexdigest()
    arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
    config = json.dumps({
        "architecture": arch, "os": "linux",
        "config": {"Env": ["PATH=/bin"], "Cmd": ["sh"]},
        "rootfs": {"type": "layers", "diff_ids": [f"sha256:{diff_id}"]},
    }).encode()
    config_name = hashlib.sha256(config).hexdigest() + ".json"
    manifest = json.dumps([{"Config": config_name, "RepoTags": [IMAGE],
                            "Layers": [f"{diff_id}/layer.tar"]}]).encode()
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as t:
        for name, data in ((f"{diff_id}/layer.tar", layer_bytes), (config_name, config),
                           ("manifest.json", manifest)):
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            t.addfile(ti, io.BytesIO(data))
    return out.getvalue()


def _parallel(fn, items, what: str) -> list:
    with cf.ThreadPoolExecutor(max_workers=max(1, len(items))) as ex:
        futs = {ex.submit(fn, it): it for it in items}
        errors = []
        for f in cf.as_completed(futs):
            if f.exception():
                errors.append(f"{getattr(futs[f], 'name', futs[f])}: {f.exception()}")
        if errors:
            raise LabError(f"{what}: " + "\n".join(errors))
        return [f.result() for f in futs]


# ---------------------------------------------------------------- the lab
class Lab:
    """The swarm lab.  ``Lab().up()`` ... ``lab.down()``; also a context manager."""

    def __init__(self, root: str | Path = DEFAULT_ROOT, reference: bool = False,
                 timeout: float = 120.0, stop_timeout: float = 20.0):
        self.root = Path(root)
        self.reference = reference
        self.timeout = timeout  # bound for each "wait until converged" step
        self.stop_timeout = stop_timeout  # bound for a graceful dockerd stop
        self.vms = [VM(n, h, r, f"{PREFIX}{10 + i}", self.root / n)
                    for i, (n, h, r) in enumerate(topology(reference), start=1)]
        self.hosts: list[Host] = []
        for vm in self.vms:
            if not any(h.name == vm.host for h in self.hosts):
                self.hosts.append(Host(vm.host))
            next(h for h in self.hosts if h.name == vm.host).vms.append(vm.name)
        self.inventory_path = self.root / "inventory.toml"
        self.state_path = self.root / "lab.json"  # what labd and `down` rebuild the lab from
        self.proxy_dir = self.root / "haproxy"
        self.keys_dir = self.root / "ssh"  # the client key and known_hosts the console uses
        self.labd_dir = self.root / "labd"
        self.proxy_port = 0  # HAProxy's frontend on 127.0.0.1 (chosen at up)
        self.winrm_ports: dict[str, int] = {}  # host -> its WinRM emulator's port (labd)
        self._proxied = [vm.name for vm in self.vms]  # VMs with a server in HAProxy
        self.timings: dict[str, float] = {}
        self._procs: dict[str, subprocess.Popen] = {}

    @classmethod
    def attach(cls, root: str | Path = DEFAULT_ROOT) -> Lab:
        """The lab that `up` left running under root (another process: labd, `down`)."""
        root = Path(root)
        state = json.loads((root / "lab.json").read_text())
        lab = cls(root, reference=state["reference"])
        lab.vms = [VM(v["name"], v["host"], v["role"], v["address"], root / v["name"])
                   for v in state["vms"]]
        lab.hosts = [Host(h, vms=[v.name for v in lab.vms if v.host == h])
                     for h in dict.fromkeys(v.host for v in lab.vms)]
        lab.proxy_port, lab.winrm_ports = state["proxy_port"], state["winrm_ports"]
        lab._proxied = state.get("proxied", lab._proxied)
        return lab

    def save_state(self) -> None:
        self.state_path.write_text(json.dumps({
            "reference": self.reference, "proxy_port": self.proxy_port,
            "winrm_ports": self.winrm_ports, "proxied": self._proxied,
            "vms": [{"name": v.name, "host": v.host, "role": v.role, "address": v.address}
                    for v in self.vms]}, indent=1))

    # -- data
    def vm(self, name: str) -> VM:
        for vm in self.vms:
            if vm.name == name:
                return vm
        raise KeyError(name)

    @property
    def managers(self) -> list[VM]:
        return [vm for vm in self.vms if vm.role == "manager"]

    @property
    def workers(self) -> list[VM]:
        return [vm for vm in self.vms if vm.role == "worker"]

    @property
    def manager_endpoints(self) -> list[str]:
        return [vm.socket for vm in self.managers]

    def client(self, name: str, timeout: int = 30) -> Client:
        return Client(base_url=self.vm(name).socket, version=API_VERSION, timeout=timeout)

    def manager_client(self) -> Client:
        """A client of the first manager that is up and can control the swarm."""
        for vm in self.managers:  # a stopped VM has no socket: that attempt fails at once
            c = self.client(vm.name, timeout=10)
            with contextlib.suppress(Exception):
                if c.info()["Swarm"].get("ControlAvailable"):
                    return c
            c.close()
        raise LabError("no swarm manager is reachable")

    @property
    def admin_socket(self) -> Path:
        return self.proxy_dir / "admin.sock"

    @property
    def operator_socket(self) -> Path:
        return self.proxy_dir / "operator.sock"

    @property
    def client_key(self) -> Path:
        return self.keys_dir / "id_ed25519"

    @property
    def known_hosts(self) -> Path:
        return self.keys_dir / "known_hosts"

    @property
    def portal_url(self) -> str:
        return f"http://127.0.0.1:{self.proxy_port}/"

    def write_inventory(self, path: str | Path | None = None, state_dir: str | Path | None = None,
                        proxy_socket: str | Path | None = None, operations: dict | None = None,
                        maintenance: dict | None = None) -> Path:
        """The console's inventory for this lab: every real system it has.

        `state_dir` adds a [console] table (journal, audit, reports there);
        `proxy_socket` replaces HAProxy's admin socket (e.g. the operator-level one);
        `operations` and `maintenance` override keys of those tables.
        """
        path = Path(path or self.inventory_path)
        q = json.dumps  # a JSON string is a valid TOML basic string
        endpoints = ", ".join(q(e) for e in self.manager_endpoints)
        out = ["# written by tests/lab/swarm_lab.py"]
        if state_dir:
            out += ["[console]", f"state_dir = {q(str(state_dir))}", ""]
        out += ["[operations]"] + [f"{k} = {v}" for k, v in
                                   dict(OPERATIONS, **(operations or {})).items()] + [""]
        out += ["[swarm]", f"endpoints = [{endpoints}]   # managers, tried in order", ""]
        sock = proxy_socket or self.admin_socket
        servers = ", ".join(f'{q(f"{BACKEND}/{vm.name}")} = {q(vm.name)}' for vm in self.vms
                            if vm.name in self._proxied)
        out += ["[proxy]", f"socket = {q(f'unix://{sock}')}", f"servers = {{ {servers} }}", ""]
        out += ["[winrm]   # the lab's WinRM emulators (labd): basic over http, on 127.0.0.1",
                'transport = "basic"', 'scheme = "http"', "allow_basic = true",
                "cert_validation = false", f"user_env = {q(WINRM_USER_ENV)}",
                f"password_env = {q(WINRM_PASSWORD_ENV)}", "read_timeout = 15",
                "operation_timeout = 5", "call_timeout = 120", ""]
        out += ["[ssh]   # each VM's own sshd on its address, port 22", 'user = "root"',
                f"known_hosts = [{q(str(self.known_hosts))}]",
                f"identity_files = [{q(str(self.client_key))}]", "connect_timeout = 5", ""]
        maintenance = {**MAINTENANCE, "update_command": UPDATE_COMMAND.format(root=self.root),
                       **(maintenance or {})}
        out += ["[maintenance]"] + [f"{k} = {q(v)}" for k, v in maintenance.items()] + [""]
        for h in self.hosts:
            out += [f"[hosts.{h.name}]", f"address = {q(h.address)}"]
            if h.name in self.winrm_ports:
                out += [f"winrm = {{ port = {self.winrm_ports[h.name]} }}"]
            out += [""]
        for vm in self.vms:
            out += [f"[vms.{vm.name}]", f"host = {q(vm.host)}", f"address = {q(vm.address)}",
                    f"node = {q(vm.name)}", ""]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(out))
        return path

    # -- life cycle
    def __enter__(self) -> Lab:
        return self.up()

    def __exit__(self, *exc) -> None:
        self.down()

    @contextlib.contextmanager
    def _step(self, what: str):
        t0 = time.monotonic()
        log.info("lab: %s", what)
        try:
            yield
        except LabError as e:
            raise LabError(f"lab step '{what}' failed: {e}") from e
        except Exception as e:
            raise LabError(f"lab step '{what}' failed: {type(e).__name__}: {e}") from e
        finally:
            self.timings[what] = round(time.monotonic() - t0, 2)

    def up(self) -> Lab:
        t0 = time.monotonic()
        try:
            with self._step("check prerequisites"):
                self._check_prerequisites()
            with self._step("clear leftovers of earlier runs"):
                self.cleanup(self.root)
            with self._step("build image"):
                image = _image_tar()
            with self._step("create network"):
                self._create_network()
            with self._step("make ssh keys"):
                self._make_keys()
            with self._step("start dockerd and sshd on every vm"):
                _parallel(lambda vm: (self._boot_vm(vm), self._load_image(vm, image)), self.vms,
                          "vm did not start")
            with self._step("form swarm"):
                self._form_swarm()
            with self._step("create services"):
                self._create_services()
            with self._step("wait for services to converge"):
                self.wait_converged()
            with self._step("start haproxy"):
                self._start_proxy()
                self.wait_proxy_up()
            with self._step("start labd (winrm emulators, vm power)"):
                self._start_labd()
            self.write_inventory()
        except BaseException:
            with contextlib.suppress(Exception):
                self.down()
            raise
        self.timings["up"] = round(time.monotonic() - t0, 2)
        return self

    def down(self) -> None:
        t0 = time.monotonic()
        self._stop_daemon(self.labd_dir / "labd.pid", "tests.lab.labd")  # first: it powers VMs
        self._stop_daemon(self.proxy_dir / "haproxy.pid", "haproxy")
        known = {vm.name for vm in self.vms}  # plus VMs of another topology left in the same root
        extra = [VM(d.name, "", "", "", d) for d in sorted(self.root.glob("vm-*")) if d.name not in known]
        _parallel(self._halt_vm, self.vms + extra, "stopping vms")
        self.cleanup(self.root, keep_logs=True)
        self.timings["down"] = round(time.monotonic() - t0, 2)

    def running(self, name: str) -> bool:
        """Whether the VM is powered on (its dockerd process lives)."""
        return _lab_dockerd_pid(self.vm(name).pidfile) is not None

    def stop_vm(self, name: str, wait: bool = True) -> None:
        """Power the VM off: its sshd, its dockerd (bounded wait, then kill). Waits until its node is Down."""
        with self._step(f"stop {name}"):
            self._halt_vm(self.vm(name))
            if wait:
                self.wait_node(name, "down")

    def start_vm(self, name: str, wait: bool = True) -> None:
        """Boot the VM again on its old data-root; it rejoins the swarm. Waits until its node is Ready."""
        with self._step(f"start {name}"):
            self._boot_vm(self.vm(name))
            if wait:
                self.wait_node(name, "ready")

    def restart_vm(self, name: str, reason: str = "restart", requested: float = 0.0) -> None:
        """What a reboot inside the VM does: halt it, boot it again (a new boot id)."""
        vm = self.vm(name)
        with self._power(vm):
            t0 = time.time()
            self._do_halt(vm)
            _record(vm, event="halt", reason=reason, requested=requested, start=t0, end=time.time())
            self._do_boot(vm, reason)

    def add_worker(self, name: str, host: str | None = None) -> VM:
        """A new VM on the running lab: its own namespace, dockerd and sshd, joined as a worker.

        It gets no HAProxy server and labd does not know it (it is not in the inventory).
        """
        with self._step(f"add {name}"):
            if any(vm.name == name for vm in self.vms):
                raise LabError(f"{name} exists already")
            used = {vm.address for vm in self.vms}
            address = next(f"{PREFIX}{i}" for i in range(11, 250) if f"{PREFIX}{i}" not in used)
            vm = VM(name, host or self.hosts[-1].name, "worker", address, self.root / name)
            self._plug(vm)
            self.vms.append(vm)
            next(h for h in self.hosts if h.name == vm.host).vms.append(name)
            self._make_host_key(vm)
            self._write_known_hosts()
            self._boot_vm(vm)
            self._load_image(vm, _image_tar())
            with self.manager_client() as c:
                token = c.swarm.attrs["JoinTokens"]["Worker"]
                leader = next(n.attrs["ManagerStatus"]["Addr"] for n in c.nodes.list()
                              if (n.attrs.get("ManagerStatus") or {}).get("Leader"))
            with self.client(name) as c:
                c.swarm.join(remote_addrs=[leader], listen_addr=f"{address}:2377",
                             advertise_addr=address, join_token=token)
            self.wait_node(name, "ready")
            return vm

    def remove_vm(self, name: str) -> None:
        """Power the VM off and take it out of the swarm and the lab for good."""
        with self._step(f"remove {name}"):
            vm = self.vm(name)
            self._halt_vm(vm)
            self.wait_node(name, "down")
            with self.manager_client() as c:
                for n in c.nodes.list(filters={"name": name}):
                    if n.attrs["Description"]["Hostname"] == name:
                        n.remove(force=True)
            self.vms.remove(vm)
            next(h for h in self.hosts if h.name == vm.host).vms.remove(name)
            _run("ip", "netns", "delete", vm.netns, check=False)
            _run("ip", "link", "delete", vm.veth, check=False)
            shutil.rmtree(vm.dir, ignore_errors=True)
            self._write_known_hosts()

    def restore(self) -> None:
        """Every VM up, every node active with its own role, every proxy server ready
        and UP, the services converged: what each test starts from and leaves behind."""
        # what a fault test may have killed: HAProxy, labd, a VM's dockerd alone (its sshd lives)
        for pidfile, marker, start in ((self.proxy_dir / "haproxy.pid", "haproxy", self.start_proxy),
                                       (self.labd_dir / "labd.pid", "tests.lab.labd", self.start_labd)):
            with contextlib.suppress(OSError, ValueError):
                pid = int(pidfile.read_text())
                if not (_alive(pid) and marker in _cmdline(pid)):
                    start()
        for vm in list(self.vms):
            if not self.running(vm.name):
                if self.sshd_pid(vm.name):
                    self.restart_engine(vm.name, reason="restore: dockerd had died")
                else:
                    self.start_vm(vm.name, wait=False)
        roles = {vm.name: vm.role for vm in self.vms}

        def fix(node) -> None:
            spec = dict(node.attrs["Spec"])
            name = node.attrs["Description"]["Hostname"]
            if spec.get("Availability") != "active" or spec.get("Role") != roles.get(name, spec["Role"]):
                node.update({**spec, "Availability": "active", "Role": roles.get(name, spec["Role"])})

        def all_fixed():
            with self.manager_client() as c:
                for n in c.nodes.list():
                    fix(n)
                bad = [n.attrs["Description"]["Hostname"] for n in c.nodes.list()
                       if n.attrs["Spec"]["Availability"] != "active"
                       or n.attrs["Spec"]["Role"] != roles.get(n.attrs["Description"]["Hostname"],
                                                               n.attrs["Spec"]["Role"])]
            return not bad, f"not yet active with their roles: {bad}"
        self._wait("nodes active with their own roles", all_fixed)
        with self.manager_client() as c:  # a console killed mid-operation leaves its lock
            swarm = c.api.inspect_swarm()
            labels = dict(swarm["Spec"].get("Labels") or {})
            if labels.pop(LOCK_LABEL, None) is not None:
                c.api.update_swarm(version=swarm["Version"]["Index"],
                                   swarm_spec={**swarm["Spec"], "Labels": labels})
        if self.admin_socket.exists():
            for name, (_, admin, _) in self.proxy_servers().items():
                if admin != "ready":
                    self.proxy_command(f"set server {BACKEND}/{name} state ready")
        with self.manager_client() as c:  # a console killed mid-drain leaves a service scaled
            for svc in c.services.list():
                want = self.replicas.get(svc.name)
                mode = svc.attrs["Spec"]["Mode"]
                if want is not None and mode.get("Replicated", {}).get("Replicas") != want:
                    svc.scale(want)
        for vm in self.vms:
            self.wait_node(vm.name, "ready")
        self.wait_converged()
        if self.admin_socket.exists():
            self.wait_proxy_up()

    # -- the pieces
    def _check_prerequisites(self) -> None:
        if os.geteuid() != 0:
            raise LabError("the swarm lab needs root (network namespaces, dockerd)")
        missing = [b for b in ("dockerd", "containerd", "runc", "docker-init", "ip", "nsenter", "unshare",
                               "setpriv", "mount", "haproxy") if not shutil.which(b)]
        for path, package in ((BUSYBOX, "busybox-static"), (SSHD, "openssh-server")):
            if not os.access(path, os.X_OK):
                missing.append(f"{path} ({package})")
        if missing:
            raise LabError(f"missing: {', '.join(missing)} (tests/host-packages.sh installs "
                           "docker.io haproxy openssh-server busybox-static iproute2)")

    def _create_network(self) -> None:
        _run("ip", "link", "add", BRIDGE, "type", "bridge")
        _run("ip", "addr", "add", f"{GATEWAY}/24", "dev", BRIDGE)
        _run("ip", "link", "set", BRIDGE, "up")
        for vm in self.vms:
            self._plug(vm)
        nf = Path("/proc/sys/net/bridge/bridge-nf-call-iptables")  # exists once br_netfilter is loaded
        if nf.exists() and nf.read_text().strip() == "1" and shutil.which("iptables") \
                and _run("iptables", "-C", *FORWARD_RULE, check=False).returncode:
            _run("iptables", "-I", *FORWARD_RULE)  # removed again by cleanup()

    def _plug(self, vm: VM) -> None:
        """The VM's network namespace, cabled to the lab bridge."""
        _run("ip", "netns", "add", vm.netns)
        _run("ip", "link", "add", vm.veth, "type", "veth", "peer", "name", "eth0", "netns", vm.netns)
        _run("ip", "link", "set", vm.veth, "master", BRIDGE, "up")
        _run("ip", "-n", vm.netns, "addr", "add", f"{vm.address}/24", "dev", "eth0")
        _run("ip", "-n", vm.netns, "link", "set", "eth0", "up")
        _run("ip", "-n", vm.netns, "link", "set", "lo", "up")
        # No default route on purpose: a VM can reach the lab subnet and nothing else.

    @contextlib.contextmanager
    def _power(self, vm: VM):
        """One power change of a VM at a time, across processes (tests, labd)."""
        vm.dir.mkdir(parents=True, exist_ok=True)
        with open(vm.dir / ".power.lock", "a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def _boot_vm(self, vm: VM, reason: str = "start") -> None:
        """Boot one VM (nothing if it runs): used by up(), start_vm() and labd."""
        with self._power(vm):
            if _lab_dockerd_pid(vm.pidfile) is None:
                self._do_boot(vm, reason)

    def _halt_vm(self, vm: VM, reason: str = "power off") -> None:
        with self._power(vm):
            t0 = time.time()
            was_on = _lab_dockerd_pid(vm.pidfile) is not None
            self._do_halt(vm)
            if was_on:
                _record(vm, event="halt", reason=reason, start=t0, end=time.time())

    def _do_boot(self, vm: VM, reason: str) -> None:
        """A new boot id, the VM's dockerd in its own net + UTS namespace, then its sshd."""
        t0 = time.time()
        vm.boot_id_file.write_text(f"{uuid.uuid4()}\n")
        self._start_dockerd(vm)
        t_docker = time.time()
        self._start_sshd(vm)
        _record(vm, event="boot", reason=reason, boot_id=vm.boot_id(), start=t0, docker=t_docker,
                end=time.time())

    def restart_engine(self, name: str, reason: str = "systemctl restart docker") -> None:
        """What `systemctl restart docker` does in a VM: its dockerd only; sshd and boot id stay."""
        vm = self.vm(name)
        with self._power(vm):
            t0 = time.time()
            self._stop_dockerd(vm, spare_sshd=True)
            self._start_dockerd(vm)
            _record(vm, event="engine restart", reason=reason, start=t0, end=time.time())

    def _start_dockerd(self, vm: VM) -> None:
        for d in ("data", "x"):
            (vm.dir / d).mkdir(parents=True, exist_ok=True)
        cfg = vm.dir / "daemon.json"  # own config: never read the host's /etc/docker/daemon.json
        cfg.write_text(json.dumps({"deprecated-key-path": str(vm.dir / "key.json")}))
        vm.sock.unlink(missing_ok=True)
        vm.pidfile.unlink(missing_ok=True)  # stale (no dockerd of it runs): dockerd would refuse
        cmd = ["nsenter", f"--net=/run/netns/{vm.netns}",  # not `ip netns exec`: it remounts /sys
               "unshare", "--uts", "sh", "-c", 'echo "$0" > /proc/sys/kernel/hostname && exec "$@"', vm.name,
               "dockerd", "--config-file", str(cfg), "--data-root", str(vm.dir / "data"),
               "--exec-root", str(vm.dir / "x"), "--pidfile", str(vm.pidfile), "-H", vm.socket,
               "--bridge", "none", "--iptables=false", "--ip6tables=false",
               "--cgroup-parent", "/" + vm.cgroup, "--swarm-default-advertise-addr", vm.address]
        env = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
               "DOCKER_SERVICE_PREFER_OFFLINE_IMAGE": "1"}  # workers must not try to pull
        with open(vm.log_file, "ab") as logf:
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=logf, stderr=logf, env=env,
                                    start_new_session=True)  # survives the CLI that started it
        self._procs[vm.name] = proc
        deadline = time.monotonic() + self.timeout
        while True:
            if proc.poll() is not None:
                raise LabError(f"dockerd on {vm.name} exited with {proc.returncode}; "
                               f"{vm.log_file}:\n{_tail(vm.log_file)}")
            if vm.sock.exists():
                with contextlib.suppress(Exception), self.client(vm.name, timeout=2) as c:
                    if c.ping():
                        break
            if time.monotonic() > deadline:
                raise LabError(f"dockerd on {vm.name} not answering after {self.timeout:.0f}s; "
                               f"{vm.log_file}:\n{_tail(vm.log_file)}")
            time.sleep(0.1)

    def _do_halt(self, vm: VM) -> None:
        """Power a VM off: its sshd (and every session) at once, then its dockerd."""
        self._stop_sshd(vm)
        self._stop_dockerd(vm)

    def _stop_dockerd(self, vm: VM, spare_sshd: bool = False) -> None:
        """SIGTERM dockerd (bounded wait), then kill whatever is left of it (and of sshd's
        side too unless `spare_sshd`: an engine restart keeps the VM's SSH sessions)."""
        # by its pidfile: this process or another (labd) may have started the running one
        pid = _lab_dockerd_pid(vm.pidfile)
        if pid and _alive(pid):
            os.kill(pid, signal.SIGTERM)
            os.kill(pid, signal.SIGCONT)      # as systemd does: a stopped process gets it too
            if not _wait_dead([pid], self.stop_timeout):
                log.warning("dockerd on %s ignored SIGTERM for %ss; killing it", vm.name, self.stop_timeout)
        proc = self._procs.pop(vm.name, None)
        if proc:  # ours (maybe an earlier boot): reap it
            with contextlib.suppress(Exception):
                proc.kill()
            proc.wait()
        # containerd, shims and tasks may survive a killed dockerd; a powered-off VM keeps nothing.
        in_netns = _pids_in_netns(vm.netns)
        spared = _sshd_side(in_netns) if spare_sshd else set()
        _kill((set(in_netns) - spared) | set(_pids_in_cgroups(vm.cgroup)))
        # a killed containerd may linger as a zombie nobody reaps; by its pid file the next
        # dockerd would take it for alive and wait for it in vain
        (vm.dir / "x" / "containerd" / "containerd.pid").unlink(missing_ok=True)
        _unmount_all(vm.dir)
        _remove_cgroups(vm.cgroup)

    # -- ssh
    def _make_keys(self) -> None:
        """The console's client key and every VM's host key; known_hosts names them all."""
        self.keys_dir.mkdir(parents=True, exist_ok=True)
        key = asyncssh.generate_private_key("ssh-ed25519", comment="opsconsole-lab")
        key.write_private_key(str(self.client_key))
        key.write_public_key(str(self.client_key) + ".pub")
        self.client_key.chmod(0o600)
        for vm in self.vms:
            self._make_host_key(vm)
        self._write_known_hosts()

    def _make_host_key(self, vm: VM) -> None:
        vm.ssh_dir.mkdir(parents=True, exist_ok=True)
        key = asyncssh.generate_private_key("ssh-ed25519", comment=vm.name)
        key.write_private_key(str(vm.host_key))
        key.write_public_key(str(vm.host_key) + ".pub")
        vm.host_key.chmod(0o600)
        (vm.ssh_dir / "authorized_keys").write_bytes(Path(str(self.client_key) + ".pub").read_bytes())
        (vm.ssh_dir / "sshd_config").write_text(SSHD_CONFIG.format(vm=vm))
        for d in (vm.sbin, vm.power, vm.disk):
            d.mkdir(parents=True, exist_ok=True)
        script = vm.sbin / "lab-power"
        script.write_text(POWER_SCRIPT.format(vm=vm.name, power=vm.power))
        script.chmod(0o755)
        for name in POWER_COMMANDS:  # for names PATH finds before the real ones
            (vm.sbin / name).unlink(missing_ok=True)
            (vm.sbin / name).symlink_to("lab-power")

    def _write_known_hosts(self) -> None:
        lines = []
        for vm in self.vms:
            algorithm, key = Path(str(vm.host_key) + ".pub").read_text().split()[:2]
            lines.append(f"{vm.address} {algorithm} {key}")
        self.known_hosts.write_text("\n".join(lines) + "\n")

    def _start_sshd(self, vm: VM) -> None:
        """The VM's sshd on its address, port 22, made safe by tests/lab/vminit.py (fails closed)."""
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # privilege separation (also in the VM)
        drop = ",".join(f"-{c}" for c in SSHD_DROP_CAPS)
        cmd = ["nsenter", f"--net=/run/netns/{vm.netns}", "--",
               "unshare", "--uts", "--mount", "--propagation", "private", "--pid", "--fork",
               "--kill-child", "--mount-proc", "--",
               sys.executable, "-I", str(HERE / "vminit.py"), "--vm", vm.name, "--root", str(self.root),
               "--", "setpriv", "--bounding-set", drop, "--inh-caps", "-all", "--",
               SSHD, "-D", "-e", "-f", str(vm.ssh_dir / "sshd_config")]
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}
        with open(vm.sshd_log, "ab") as logf:
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=logf, stderr=logf, env=env,
                                    start_new_session=True)
        self._procs[f"sshd:{vm.name}"] = proc
        deadline = time.monotonic() + 20
        while True:
            if proc.poll() is not None:
                raise LabError(f"sshd on {vm.name} exited with {proc.returncode}; "
                               f"{vm.sshd_log}:\n{_tail(vm.sshd_log)}")
            with contextlib.suppress(OSError), socket.create_connection((vm.address, 22), 1) as s:
                s.settimeout(2)
                if s.recv(8).startswith(b"SSH-"):
                    return
            if time.monotonic() > deadline:
                raise LabError(f"sshd on {vm.name} not answering after 20s; "
                               f"{vm.sshd_log}:\n{_tail(vm.sshd_log)}")
            time.sleep(0.05)

    def _stop_sshd(self, vm: VM) -> None:
        """Kill the VM's sshd namespace: its init (sshd) dies, and every session with it."""
        proc = self._procs.pop(f"sshd:{vm.name}", None)
        pids = [p for p in _pids_in_netns(vm.netns)
                if _exe(p) in ("sshd", "unshare") or "vminit.py" in _cmdline(p)]
        _kill(pids)
        if proc:
            with contextlib.suppress(Exception):
                proc.kill()
            proc.wait()

    def sshd_pid(self, name: str) -> int | None:
        """The VM's listening sshd (init of its PID namespace), as this machine sees it."""
        for pid in _pids_in_netns(self.vm(name).netns):
            if _exe(pid) == "sshd":
                with contextlib.suppress(OSError):
                    status = Path(f"/proc/{pid}/status").read_text()
                    nspid = next(l for l in status.splitlines() if l.startswith("NSpid:")).split()
                    if nspid[-1] == "1":
                        return pid
        return None

    # -- haproxy
    def _start_proxy(self) -> None:
        self.proxy_dir.mkdir(parents=True, exist_ok=True)
        self.proxy_port = _free_port()
        self._proxied = [vm.name for vm in self.vms]
        servers = "\n".join(f"    server {vm.name} {vm.address}:{PORTAL_PORT} cookie {vm.name}"
                             for vm in self.vms)
        cfg = self.proxy_dir / "haproxy.cfg"
        cfg.write_text(PROXY_CONFIG.format(dir=self.proxy_dir, port=self.proxy_port, servers=servers,
                                           backend=BACKEND, expire=STICK_EXPIRE_S))
        _run("haproxy", "-c", "-q", "-f", str(cfg))
        self.start_proxy()

    def start_proxy(self) -> None:
        """HAProxy from the config `up` wrote (same port, same sockets): a restart forgets
        every runtime change (`set server ... state`), as a real one does."""
        cfg = self.proxy_dir / "haproxy.cfg"
        for sock in (self.admin_socket, self.operator_socket):
            sock.unlink(missing_ok=True)     # a killed HAProxy leaves them behind
        with open(self.proxy_dir / "haproxy.log", "ab") as logf:
            proc = subprocess.Popen(["haproxy", "-db", "-f", str(cfg)], stdin=subprocess.DEVNULL,
                                    stdout=logf, stderr=logf, start_new_session=True)
        self._procs["haproxy"] = proc
        (self.proxy_dir / "haproxy.pid").write_text(f"{proc.pid}\n")
        deadline = time.monotonic() + 10
        while not (self.admin_socket.exists() and self.operator_socket.exists()):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise LabError(f"haproxy did not start: {_tail(self.proxy_dir / 'haproxy.log')}")
            time.sleep(0.05)

    def kill_proxy(self) -> int:
        """kill -9 HAProxy (no goodbye: its sockets stay behind, refusing); its pid."""
        return self._kill_daemon(self.proxy_dir / "haproxy.pid", "haproxy")

    def _kill_daemon(self, pidfile: Path, marker: str) -> int:
        pid = int(pidfile.read_text())
        if marker not in _cmdline(pid):
            raise LabError(f"pid {pid} of {pidfile} is not {marker}")
        os.kill(pid, signal.SIGKILL)
        for key, proc in list(self._procs.items()):
            if proc.pid == pid:
                proc.wait()
                del self._procs[key]
        if not _wait_dead([pid], 10):
            raise LabError(f"{marker} (pid {pid}) outlived SIGKILL")
        return pid

    def kill_dockerd(self, name: str) -> int:
        """kill -9 a VM's dockerd, as a crash does: its containers (and sshd) live on until
        `restart_engine(name)` starts it again (which clears what the dead one left)."""
        vm = self.vm(name)
        pid = _lab_dockerd_pid(vm.pidfile)
        if pid is None:
            raise LabError(f"no dockerd runs on {name}")
        os.kill(pid, signal.SIGKILL)
        if not _wait_dead([pid], 10):
            raise LabError(f"dockerd of {name} (pid {pid}) outlived SIGKILL")
        return pid

    def proxy_command(self, command: str, operator: bool = False) -> str:
        """One command on HAProxy's stats socket (admin level, or operator level)."""
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(5)
            s.connect(str(self.operator_socket if operator else self.admin_socket))
            s.sendall(command.encode() + b"\n")
            out = b""
            while chunk := s.recv(65536):
                out += chunk
        return out.decode()

    def proxy_servers(self) -> dict[str, tuple[str, str, int]]:
        """server -> (status, admin state, current sessions) of the portal backend, as HAProxy says."""
        lines = self.proxy_command("show stat").splitlines()
        header = lines[0][2:].split(",")
        stat = {r["svname"]: r for r in (dict(zip(header, l.split(","))) for l in lines[1:] if l)
                if r["pxname"] == BACKEND and r["svname"] not in ("FRONTEND", "BACKEND")}
        state = self.proxy_command("show servers state").splitlines()
        head = state[1][2:].split()
        admin = {}
        for line in state[2:]:
            f = dict(zip(head, line.split()))
            if f and f["be_name"] == BACKEND:
                bits = int(f["srv_admin_state"])
                admin[f["srv_name"]] = "maint" if bits & 0x67 else "drain" if bits & 0x18 else "ready"
        return {name: (r["status"], admin.get(name, "?"), int(r["scur"] or 0))
                for name, r in stat.items()}

    def proxy_sessions(self) -> dict[str, int]:
        """server -> user sessions on it: entries of the portal backend's stick table."""
        counts: dict[str, int] = {}
        for line in self.proxy_command(f"show table {BACKEND}").splitlines()[1:]:
            fields = dict(f.split("=", 1) for f in line.split() if "=" in f)
            if fields.get("server_key"):
                counts[fields["server_key"]] = counts.get(fields["server_key"], 0) + 1
        return counts

    def wait_proxy_up(self, timeout: float | None = None) -> None:
        def check():
            servers = self.proxy_servers()
            bad = {k: v[0] for k, v in servers.items() if v[0] != "UP"}
            return bool(servers) and not bad, f"not UP: {bad}"
        self._wait("every portal server UP in haproxy", check, timeout)

    # -- labd
    def _start_labd(self) -> None:
        self.labd_dir.mkdir(parents=True, exist_ok=True)
        self.winrm_ports = {h.name: _free_port() for h in self.hosts}
        self.save_state()
        self.start_labd()

    def start_labd(self) -> None:
        """labd as `up` started it, on the same WinRM ports (after `kill_labd`)."""
        ready = self.labd_dir / "ready"
        ready.unlink(missing_ok=True)
        with open(self.labd_dir / "labd.log", "ab") as logf:
            proc = subprocess.Popen([sys.executable, "-m", "tests.lab.labd", "--root", str(self.root)],
                                    cwd=HERE.parent.parent, stdin=subprocess.DEVNULL, stdout=logf,
                                    stderr=logf, start_new_session=True)
        self._procs["labd"] = proc
        (self.labd_dir / "labd.pid").write_text(f"{proc.pid}\n")
        deadline = time.monotonic() + 30
        while not ready.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise LabError(f"labd did not start: {_tail(self.labd_dir / 'labd.log')}")
            time.sleep(0.05)

    def restart_labd(self) -> None:
        """labd stopped (SIGTERM, bounded) and started again: every emulated host as `up`
        made it (up for a day, a reboot pending), on the same ports."""
        self._stop_daemon(self.labd_dir / "labd.pid", "tests.lab.labd")
        self.start_labd()

    def kill_labd(self) -> int:
        """kill -9 labd: every WinRM emulator gone at once (connections refused)."""
        return self._kill_daemon(self.labd_dir / "labd.pid", "tests.lab.labd")

    def _stop_daemon(self, pidfile: Path, marker: str, timeout: float = 15.0) -> None:
        """SIGTERM a lab daemon named in pidfile (if it still is that daemon), bounded, then kill."""
        try:
            pid = int(pidfile.read_text())
        except (OSError, ValueError):
            return
        if marker in _cmdline(pid) and _alive(pid):
            os.kill(pid, signal.SIGTERM)
            if not _wait_dead([pid], timeout):
                _kill([pid])
        for key, proc in list(self._procs.items()):
            if proc.pid == pid:
                proc.wait()
                del self._procs[key]
        pidfile.unlink(missing_ok=True)

    def _load_image(self, vm: VM, image: bytes) -> None:
        with self.client(vm.name) as c:
            c.images.load(image)

    def _form_swarm(self) -> None:
        first, *others = self.managers
        with self.client(first.name) as c:
            c.swarm.init(advertise_addr=first.address, listen_addr=f"{first.address}:2377",
                         dispatcher_heartbeat_period=2 * SECOND,  # notice a stopped VM within seconds
                         task_history_retention_limit=2)
            c.swarm.reload()
            tokens = c.swarm.attrs["JoinTokens"]

        def join(vm: VM) -> None:
            with self.client(vm.name) as c:
                c.swarm.join(remote_addrs=[f"{first.address}:2377"], listen_addr=f"{vm.address}:2377",
                             advertise_addr=vm.address,
                             join_token=tokens["Manager" if vm.role == "manager" else "Worker"])

        for vm in others:  # managers one by one: raft adds one member at a time
            join(vm)
        _parallel(join, self.workers, "workers did not join")
        for vm in self.vms:
            self.wait_node(vm.name, "ready")
        if self.reference:  # web spreads over the hosts
            with self.manager_client() as c:
                for vm in self.vms:
                    node = c.nodes.get(vm.name)
                    node.update({**node.attrs["Spec"], "Labels": {"opsconsole.lab.host": vm.host}})

    @property
    def replicas(self) -> dict[str, int]:
        """The replicated services the lab creates, and their replica counts."""
        if self.reference:  # sized to lose a whole host: 3 nodes left, one web task each
            return {"web": 3}
        return {"web": len(self.vms) - 1, "pinned": 1}

    def _create_services(self) -> None:
        common = dict(image=IMAGE, networks=["host"],  # host: the task lives in the VM's namespace
                      init=True,  # PID 1 ignores SIGTERM; docker-init forwards it so stops are quick
                      stop_grace_period=1 * SECOND)
        web = "mkdir -p /www && hostname > /www/index.html && exec httpd -f -p 8080 -h /www"
        portal = f"mkdir -p /www && hostname > /www/index.html && exec httpd -f -p {PORTAL_PORT} -h /www"
        with self.manager_client() as c:
            if self.reference:
                c.services.create(name="web", mode=docker.types.ServiceMode("replicated", self.replicas["web"]),
                                  maxreplicas=1, command=["sh", "-c", web],
                                  preferences=[("spread", "node.labels.opsconsole.lab.host")],
                                  **common)
            else:
                c.services.create(name="web", mode=docker.types.ServiceMode("replicated", self.replicas["web"]),
                                  maxreplicas=1, command=["sh", "-c", web], **common)
                c.services.create(name="pinned", mode=docker.types.ServiceMode("replicated", 1),
                                  constraints=["node.hostname==vm-05"], command=["sleep", "1000000"],
                                  **common)
            c.services.create(name="agent", mode=docker.types.ServiceMode("global"),
                              command=["sleep", "1000000"], **common)
            c.services.create(name="portal", mode=docker.types.ServiceMode("global"),
                              command=["sh", "-c", portal], **common)

    # -- waiting
    def _wait(self, what: str, check, timeout: float | None = None):
        """Poll check() -> (done, detail) until done; on timeout raise with the last detail."""
        deadline = time.monotonic() + (timeout or self.timeout)
        detail = ""
        while time.monotonic() < deadline:
            try:
                done, detail = check()
            except Exception as e:  # noqa: BLE001 - e.g. a manager restarting mid-election
                done, detail = False, f"{type(e).__name__}: {e}"
            if done:
                return detail
            time.sleep(0.3)
        raise LabError(f"timed out after {timeout or self.timeout:.0f}s waiting for {what}: {detail}")

    def node_states(self) -> dict[str, tuple[str, str, str]]:
        """hostname -> (state, availability, role), as a manager sees it."""
        with self.manager_client() as c:
            return {n.attrs["Description"]["Hostname"]: (n.attrs["Status"]["State"],
                                                        n.attrs["Spec"]["Availability"],
                                                        n.attrs["Spec"]["Role"]) for n in c.nodes.list()}

    def wait_node(self, name: str, state: str, timeout: float | None = None) -> None:
        def check():
            got = self.node_states().get(name, ("absent",))[0]
            return got == state, f"node {name} is {got}"
        self._wait(f"node {name} to be {state}", check, timeout)

    def service_status(self) -> dict[str, tuple[int, int, str]]:
        """service -> (running tasks, desired tasks, last task error)."""
        out = {}
        with self.manager_client() as c:
            eligible = sum(1 for n in c.nodes.list()  # where a global service should run
                           if n.attrs["Status"]["State"] == "ready"
                           and n.attrs["Spec"]["Availability"] == "active")
            for s in c.services.list():
                mode = s.attrs["Spec"]["Mode"]
                desired = mode["Replicated"]["Replicas"] if "Replicated" in mode else eligible
                tasks = s.tasks(filters={"desired-state": "running"})
                running = sum(1 for t in tasks if t["Status"]["State"] == "running")
                errs = [t["Status"].get("Err") or t["Status"].get("Message", "") for t in tasks
                        if t["Status"]["State"] != "running"]
                out[s.name] = (running, desired, errs[-1] if errs else "")
        return out

    def wait_converged(self, timeout: float | None = None) -> None:
        def check():
            st = self.service_status()
            bad = {k: v for k, v in st.items() if v[0] != v[1]}
            return not bad, "; ".join(f"{k}: {r}/{d} running{f' ({e})' if e else ''}"
                                      for k, (r, d, e) in sorted(bad.items()))
        self._wait("services to converge", check, timeout)

    # -- hygiene
    @staticmethod
    def cleanup(root: str | Path = DEFAULT_ROOT, keep_logs: bool = False) -> None:
        """Remove every trace of any lab run (this one or an earlier, killed one)."""
        root = Path(root)
        _kill(_lab_daemon_pids(root))  # haproxy and labd of an earlier run
        for pidfile in root.glob("*/docker.pid"):  # dockerds whose namespace may be gone already
            pid = _lab_dockerd_pid(pidfile)
            if pid:
                _kill([pid])
        names = [l.split()[0] for l in _run("ip", "netns", "list").stdout.splitlines()
                 if l.startswith("ocl-")]
        _kill({p for ns in names for p in _pids_in_netns(ns)}
              | {p for ns in names for p in _pids_in_cgroups(ns)})
        for cg in {Path(d).name for d in _cgroup_dirs("ocl-*")}:
            _kill(_pids_in_cgroups(cg))
            _remove_cgroups(cg)
        _unmount_all(root)
        for ns in names:
            _run("ip", "netns", "delete", ns, check=False)
        for line in _run("ip", "-o", "link", "show").stdout.splitlines():
            link = line.split(":")[1].strip().split("@")[0]
            if link == BRIDGE or link.startswith("oclv"):
                _run("ip", "link", "delete", link, check=False)
        while shutil.which("iptables") and not _run("iptables", "-D", *FORWARD_RULE, check=False).returncode:
            pass
        # Safe to delete now: nothing is mounted below root any more (else _unmount_all raised).
        for p in sorted(root.rglob("*"), key=lambda p: -len(p.parts)) if root.exists() else []:
            nonempty_dir = p.is_dir() and not p.is_symlink() and any(p.iterdir())
            if keep_logs and (p.name in LOGS or nonempty_dir):
                continue  # keep the daemons' logs for a post-mortem; the next up() wipes them
            p.rmdir() if p.is_dir() and not p.is_symlink() else p.unlink()


def _lab_daemon_pids(root: Path) -> list[int]:
    """HAProxy and labd processes of a lab under root, found by their command lines."""
    found = []
    for d in os.listdir("/proc"):
        if d.isdigit() and int(d) != os.getpid():
            cmd = _cmdline(int(d))
            if f"{root}/haproxy/haproxy.cfg" in cmd or ("tests.lab.labd" in cmd and str(root) in cmd):
                found.append(int(d))
    return found


def _lab_dockerd_pid(pidfile: Path) -> int | None:
    """The pid in a lab pidfile, only if it still is that lab's dockerd (pids get reused)."""
    try:
        pid = int(pidfile.read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (OSError, ValueError):
        return None
    return pid if cmdline and cmdline[0].endswith(b"dockerd") and str(pidfile).encode() in cmdline else None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.lab.swarm_lab", description=__doc__.split("\n\n")[0])
    ap.add_argument("action", choices=["up", "down"])
    ap.add_argument("--reference", action="store_true", help="6 VMs on two hosts, one manager each")
    ap.add_argument("--root", default=str(DEFAULT_ROOT))
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    lab = Lab(args.root, reference=args.reference)
    try:
        if args.action == "up":
            lab.up()
            for vm in lab.vms:
                print(f"{vm.name}  {vm.host}  {vm.role:7}  {vm.address}  {vm.socket}  ssh root@{vm.address}")
            print(f"portal through haproxy: {lab.portal_url} (stats socket {lab.admin_socket})")
            print("winrm emulators (labd): " + ", ".join(f"{h} 127.0.0.1:{p}"
                                                         for h, p in lab.winrm_ports.items()))
            print(f"up in {lab.timings['up']}s; inventory: {lab.inventory_path}")
            print(f"the console needs: export {WINRM_USER_ENV}={WINRM_USER} "
                  f"{WINRM_PASSWORD_ENV}={WINRM_PASSWORD}")
        else:
            with contextlib.suppress(OSError, ValueError, KeyError):
                lab = Lab.attach(args.root)  # the topology it was brought up with
            lab.down()  # a new process: finds the daemons by pidfile
            print(f"down in {lab.timings['down']}s")
    except LabError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
