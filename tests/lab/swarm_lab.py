"""A real multi-node Docker Swarm on one machine, for opsconsole's tests.

Each "VM" is a dockerd in its own network namespace (and UTS namespace, for its
hostname), attached by a veth pair to the bridge ``oclbr0`` (10.77.0.1/24) in
the root namespace.  Nothing leaves the lab subnet: the namespaces have no
default route and the images are built offline from busybox-static.

    python -m tests.lab.swarm_lab up [--reference]   # prints the inventory path
    python -m tests.lab.swarm_lab down

Needs root, and the Debian packages docker.io, busybox-static and iproute2.
"""
from __future__ import annotations

import argparse
import concurrent.futures as cf
import contextlib
import ctypes
import glob
import hashlib
import io
import json
import logging
import os
import platform
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import docker

log = logging.getLogger("swarm_lab")

DEFAULT_ROOT = Path("/tmp/ocl")  # short: unix socket paths are limited to 108 bytes
BRIDGE = "oclbr0"
PREFIX = "10.77.0."
GATEWAY = PREFIX + "1"
IMAGE = "opsconsole-lab/busybox:1"
API_VERSION = "1.41"  # Debian's dockerd 20.10
BUSYBOX = "/bin/busybox"  # from busybox-static: no shared libs needed in the image
SECOND = 1_000_000_000  # the swarm API counts in nanoseconds
# iptables rule that lets bridged lab traffic through a FORWARD DROP policy
# (only relevant when br_netfilter sends bridged frames through iptables).
FORWARD_RULE = ["FORWARD", "-i", BRIDGE, "-o", BRIDGE, "-j", "ACCEPT"]


class Client(docker.DockerClient):
    """docker.DockerClient that also works as a context manager (closes its connections)."""

    def __enter__(self) -> "Client":
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
        self.timings: dict[str, float] = {}
        self._procs: dict[str, subprocess.Popen] = {}

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

    def write_inventory(self, path: str | Path | None = None) -> Path:
        path = Path(path or self.inventory_path)
        q = json.dumps  # a JSON string is a valid TOML basic string
        endpoints = ", ".join(q(e) for e in self.manager_endpoints)
        out = ["# written by tests/lab/swarm_lab.py", "[swarm]",
               f"endpoints = [{endpoints}]   # managers, tried in order", ""]
        for h in self.hosts:
            out += [f"[hosts.{h.name}]", f"address = {q(h.address)}", ""]
        for vm in self.vms:
            out += [f"[vms.{vm.name}]", f"host = {q(vm.host)}", f"address = {q(vm.address)}",
                    f"node = {q(vm.name)}", ""]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(out))
        return path

    # -- life cycle
    def __enter__(self) -> "Lab":
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

    def up(self) -> "Lab":
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
            with self._step("start dockerd on every vm"):
                _parallel(lambda vm: (self._boot_vm(vm), self._load_image(vm, image)), self.vms,
                          "vm did not start")
            with self._step("form swarm"):
                self._form_swarm()
            with self._step("create services"):
                self._create_services()
            with self._step("wait for services to converge"):
                self.wait_converged()
            self.write_inventory()
        except BaseException:
            with contextlib.suppress(Exception):
                self.down()
            raise
        self.timings["up"] = round(time.monotonic() - t0, 2)
        return self

    def down(self) -> None:
        t0 = time.monotonic()
        known = {vm.name for vm in self.vms}  # plus VMs of another topology left in the same root
        extra = [VM(d.name, "", "", "", d) for d in sorted(self.root.glob("vm-*")) if d.name not in known]
        _parallel(self._halt_vm, self.vms + extra, "stopping vms")
        self.cleanup(self.root, keep_logs=True)
        self.timings["down"] = round(time.monotonic() - t0, 2)

    def stop_vm(self, name: str, wait: bool = True) -> None:
        """Power the VM off: stop its dockerd (bounded wait, then kill). Waits until its node is Down."""
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

    def add_worker(self, name: str, host: str | None = None) -> VM:
        """A new VM on the running lab: its own namespace and dockerd, joined as a worker."""
        with self._step(f"add {name}"):
            if any(vm.name == name for vm in self.vms):
                raise LabError(f"{name} exists already")
            used = {vm.address for vm in self.vms}
            address = next(f"{PREFIX}{i}" for i in range(11, 250) if f"{PREFIX}{i}" not in used)
            vm = VM(name, host or self.hosts[-1].name, "worker", address, self.root / name)
            self._plug(vm)
            self.vms.append(vm)
            next(h for h in self.hosts if h.name == vm.host).vms.append(name)
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

    # -- the pieces
    def _check_prerequisites(self) -> None:
        if os.geteuid() != 0:
            raise LabError("the swarm lab needs root (network namespaces, dockerd)")
        missing = [b for b in ("dockerd", "containerd", "runc", "docker-init", "ip", "nsenter", "unshare")
                   if not shutil.which(b)]
        if not os.access(BUSYBOX, os.X_OK):
            missing.append(BUSYBOX + " (busybox-static)")
        if missing:
            raise LabError(f"missing: {', '.join(missing)} "
                           "(apt-get install docker.io busybox-static iproute2)")

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

    def _boot_vm(self, vm: VM) -> None:
        """Boot one VM: its dockerd, in its own net + UTS namespace.  Used by up() and start_vm()."""
        for d in ("data", "x"):
            (vm.dir / d).mkdir(parents=True, exist_ok=True)
        cfg = vm.dir / "daemon.json"  # own config: never read the host's /etc/docker/daemon.json
        cfg.write_text(json.dumps({"deprecated-key-path": str(vm.dir / "key.json")}))
        vm.sock.unlink(missing_ok=True)
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
                        return
            if time.monotonic() > deadline:
                raise LabError(f"dockerd on {vm.name} not answering after {self.timeout:.0f}s; "
                               f"{vm.log_file}:\n{_tail(vm.log_file)}")
            time.sleep(0.1)

    def _halt_vm(self, vm: VM) -> None:
        """Power a VM off: SIGTERM dockerd (bounded wait), then kill whatever is left of it."""
        proc = self._procs.pop(vm.name, None)
        pid = proc.pid if proc else _lab_dockerd_pid(vm.pidfile)
        if pid and _alive(pid):
            os.kill(pid, signal.SIGTERM)
            if not _wait_dead([pid], self.stop_timeout):
                log.warning("dockerd on %s ignored SIGTERM for %ss; killing it", vm.name, self.stop_timeout)
        if proc:
            with contextlib.suppress(Exception):
                proc.kill()
            proc.wait()
        # containerd, shims and tasks may survive a killed dockerd; a powered-off VM keeps nothing.
        _kill(set(_pids_in_netns(vm.netns)) | set(_pids_in_cgroups(vm.cgroup)))
        _unmount_all(vm.dir)
        _remove_cgroups(vm.cgroup)

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

    def _create_services(self) -> None:
        common = dict(image=IMAGE, networks=["host"],  # host: the task lives in the VM's namespace
                      init=True,  # PID 1 ignores SIGTERM; docker-init forwards it so stops are quick
                      stop_grace_period=1 * SECOND)
        web = "mkdir -p /www && hostname > /www/index.html && exec httpd -f -p 8080 -h /www"
        with self.manager_client() as c:
            c.services.create(name="web", mode=docker.types.ServiceMode("replicated", len(self.vms) - 1),
                              maxreplicas=1, command=["sh", "-c", web], **common)
            c.services.create(name="pinned", mode=docker.types.ServiceMode("replicated", 1),
                              constraints=["node.hostname==vm-05"], command=["sleep", "1000000"], **common)
            c.services.create(name="agent", mode=docker.types.ServiceMode("global"),
                              command=["sleep", "1000000"], **common)

    # -- waiting
    def _wait(self, what: str, check, timeout: float | None = None):
        """Poll check() -> (done, detail) until done; on timeout raise with the last detail."""
        deadline = time.monotonic() + (timeout or self.timeout)
        detail = ""
        while time.monotonic() < deadline:
            try:
                done, detail = check()
            except Exception as e:  # e.g. a manager restarting mid-election
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
            if keep_logs and (p.name == "dockerd.log" or nonempty_dir):
                continue  # keep the daemons' logs for a post-mortem; the next up() wipes them
            p.rmdir() if p.is_dir() and not p.is_symlink() else p.unlink()


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
                print(f"{vm.name}  {vm.host}  {vm.role:7}  {vm.address}  {vm.socket}")
            print(f"up in {lab.timings['up']}s; inventory: {lab.inventory_path}")
        else:
            lab.down()  # a new process: finds the daemons by pidfile
            print(f"down in {lab.timings['down']}s")
    except LabError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
