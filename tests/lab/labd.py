"""labd: the lab's Hyper-V hosts and the VMs' power, as one daemon (test infrastructure).

Started by `Lab.up()` (tests/lab/swarm_lab.py), stopped by `Lab.down()`:

    python -m tests.lab.labd --root /tmp/ocl

It rebuilds the lab from ROOT/lab.json and serves, on 127.0.0.1, one WinRM
emulator (tests/lab/winrm) per simulated Hyper-V host, each acting on a
`LabWorld`: the real lab VMs of that host. Stopping a VM stops its sshd and
dockerd for real (its node goes Down in the real swarm); starting it boots
them again; restarting the host makes its WinRM endpoint unreachable for a
few seconds.

It also carries out what a VM asks for itself: inside a lab VM, reboot,
shutdown, poweroff, halt and systemctl are the lab's script (see vminit.py),
which leaves a request in the VM's power directory; labd then restarts that
VM (a new boot id, its dockerd and sshd started again) and nothing else;
`systemctl restart docker` restarts its dockerd alone.
Everything it does is logged to ROOT/labd/labd.log.
"""
from __future__ import annotations

import argparse
import logging
import signal
import threading
import time
import uuid
from pathlib import Path

from .swarm_lab import DEFAULT_ROOT, WINRM_PASSWORD, WINRM_USER, Lab, _record
from .winrm import MemoryWorld, WinRMEmulator, WorldError

log = logging.getLogger("labd")
GIB = 1 << 30
REBOOT_GRACE_S = 0.5     # like a reboot job: the command that asked gets its answer out first
RESTART_DOWN_S = 3.0     # a restarted host's WinRM refuses connections this long


class LabWorld(MemoryWorld):
    """The world interface (see winrm/world.py) on the real lab VMs of one host.

    A VM's state is what it really is (its dockerd runs or not), except while
    a change is under way: "Stopping" during a guest shutdown, "Running" while
    it boots or reboots (as Hyper-V shows a VM whose guest restarts). Updates
    and the host's own boot time are kept as the in-memory world does.
    """

    def __init__(self, lab: Lab, host: str, update_s: float = 1.0) -> None:
        super().__init__(computer_name=host.upper(), vms=(), update_s=update_s)
        self.lab, self.host = lab, host
        self.boot_epoch = int(time.time()) - 86400      # the host has been up for a day
        self.pending_reboot = True
        self.busy: dict[str, str] = {}                  # VM -> state while a change runs

    def _names(self) -> list[str]:
        return [vm.name for vm in self.lab.vms if vm.host == self.host]

    def _vm(self, name: str):
        if name not in self._names():
            raise WorldError(f"no VM named '{name}' on {self.computer_name}")
        return self.lab.vm(name)

    def list_vms(self) -> list[dict]:
        out = []
        for name in self._names():
            vm = self.lab.vm(name)
            with self.lock:
                state = self.busy.get(name) or ("Running" if self.lab.running(name) else "Off")
            try:
                since = vm.boot_id_file.stat().st_mtime
            except OSError:
                since = time.time()
            on = state == "Running"
            out.append({"name": name, "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"ocl:{name}")),
                        "state": state, "uptime_s": int(time.time() - since) if on else 0,
                        "cpu_pct": 3 if on else 0, "memory_bytes": 2 * GIB if on else 0})
        return out

    def _in_background(self, name: str, state: str, what: str, fn) -> None:
        with self.lock:
            if name in self.busy:
                raise WorldError(f"'{name}' is already {self.busy[name].lower()}")
            self.busy[name] = state

        def run() -> None:
            try:
                log.info("%s: %s %s", self.host, what, name)
                fn()
                log.info("%s: %s %s: done", self.host, what, name)
            except Exception:
                log.exception("%s: %s %s failed", self.host, what, name)
            finally:
                with self.lock:
                    self.busy.pop(name, None)
        threading.Thread(target=run, name=f"{what} {name}", daemon=True).start()

    def stop_vm(self, name: str, force: bool) -> None:
        self.calls.append(("stop_vm", name, force))
        vm = self._vm(name)
        if force:       # pull the plug: at once
            with self.lock:
                self.busy.pop(name, None)
            self.lab._halt_vm(vm, "turned off (hyper-v)")
            return
        # guest shutdown: returns at once, the VM is Off when its sshd and dockerd are gone
        self._in_background(name, "Stopping", "shut down",
                            lambda: self.lab._halt_vm(vm, "shut down (hyper-v)"))

    def start_vm(self, name: str) -> None:
        self.calls.append(("start_vm", name))
        vm = self._vm(name)
        self._in_background(name, "Running", "start", lambda: self.lab._boot_vm(vm, "start (hyper-v)"))

    def save_vm(self, name: str) -> None:
        raise WorldError(f"the lab cannot save '{name}' (no saved state); shut it down instead")

    def restart(self) -> None:
        self.calls.append(("restart",))
        self.boot_epoch = int(time.time())
        self.pending_reboot = False
        log.info("%s: restarted (its VMs stay off until started)", self.host)

    def reboot_guest(self, name: str, requested: float, verb: str) -> None:
        """A reboot (or engine restart) the VM asked for itself (its power script)."""
        vm = self._vm(name)
        _record(vm, event="request", verb=verb, requested=requested, seen=time.time())

        if verb == "restart-docker":      # `systemctl restart docker`: the engine alone
            def restart() -> None:
                self.lab.restart_engine(name)
                (vm.power / "done").touch()     # the VM's systemctl returns now
            self._in_background(name, "Running", "restart docker", restart)
            return

        def run() -> None:
            time.sleep(REBOOT_GRACE_S)
            self.lab.restart_vm(name, reason=f"{verb} in the VM", requested=requested)
        self._in_background(name, "Running", "reboot", run)


def watch_power(lab: Lab, worlds: dict[str, LabWorld], stop: threading.Event) -> None:
    """Carry out the VMs' own power requests (ROOT/<vm>/power/request)."""
    while not stop.wait(0.1):
        for proc in list(lab._procs.values()):   # reap the dockerds and sshds we started
            proc.poll()                            # and someone else stopped
        for vm in lab.vms:
            request = vm.power / "request"
            try:
                text = request.read_text()
                request.unlink()
            except OSError:
                continue
            verb, when, *_ = (text.split() + ["?", "0"])
            log.info("%s asked to %s (%s)", vm.name, verb, text.strip())
            try:
                worlds[vm.host].reboot_guest(vm.name, float(when or 0), verb)
            except (WorldError, ValueError) as e:
                log.warning("%s: %s", vm.name, e)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.lab.labd", description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", default=str(DEFAULT_ROOT))
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    lab = Lab.attach(args.root)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    worlds = {h.name: LabWorld(lab, h.name) for h in lab.hosts}
    emulators = []
    for h in lab.hosts:
        emu = WinRMEmulator(worlds[h.name], username=WINRM_USER, password=WINRM_PASSWORD,
                            restart_down_s=RESTART_DOWN_S)
        emu.port = lab.winrm_ports[h.name]
        emulators.append(emu.start())
        log.info("%s: WinRM on %s (%s)", h.name, emu.url, ", ".join(h.vms))
    watcher = threading.Thread(target=watch_power, args=(lab, worlds, stop), daemon=True)
    watcher.start()
    (Path(args.root) / "labd" / "ready").write_text("ready\n")
    while not stop.wait(0.5):
        pass
    log.info("stopping")
    for emu in emulators:
        emu.stop()
    watcher.join(5)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
