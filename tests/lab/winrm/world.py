"""What the emulated host acts on: the interface, and an in-memory world.

A world answers in the scripts' own JSON fields (see the .ps1 files):
  host_info() -> {computer_name, os_build, uptime_s, boot_epoch, pending_reboot}
  list_vms() -> [{name, id, state, uptime_s, cpu_pct, memory_bytes}]  (state:
      Hyper-V's enum text: Running, Off, Saved, Stopping, Starting, ...)
  stop_vm(name, force)   force=False: guest shutdown, may return before it is off
  start_vm(name), save_vm(name), restart()      restart: the host boots again
  stage_updates(), install_updates(script), update_status() -> {task_state,
      last_result, report}
and raises WorldError(message) for what the real script would Fail() with.
Names arrive exactly as the console sent them. The lab can plug in a world
whose stop_vm stops a VM's dockerd and sshd.
"""
from __future__ import annotations

import json
import threading
import time
import uuid

GIB = 1 << 30
TASK_RUNNING = 0x41301


def _later(delay: float, fn, *args) -> None:
    timer = threading.Timer(delay, fn, args)
    timer.daemon = True                 # a test may end before it fires
    timer.start()


class WorldError(Exception):
    """A failure the host's script reports as {"error": ...}."""


class MemoryWorld:
    def __init__(self, computer_name: str = "HV-LAB-01",
                 vms: tuple[str, ...] = ("vm-01", "vm-02", "vm-03"),
                 shutdown_s: float = 0.2, update_s: float = 0.3) -> None:
        self.computer_name, self.shutdown_s, self.update_s = computer_name, shutdown_s, update_s
        self.lock = threading.Lock()
        self.vms: dict[str, dict] = {}
        for name in vms:
            self.add_vm(name)
        self.boot_epoch = int(time.time()) - 12 * 86400
        self.pending_reboot = True
        self.calls: list[tuple] = []            # every change, with the names as received
        self.ignores_shutdown: set[str] = set()  # guests that never shut down
        self.hang_s = 0.0                       # every change first sleeps this long
        self.update_exit_code = 0               # what the operator's script exits with
        self._update: dict = {}

    def add_vm(self, name: str, state: str = "Running") -> None:
        self.vms[name] = {"id": str(uuid.uuid4()), "state": state, "since": time.time()}

    def _vm(self, name: str) -> dict:
        if name not in self.vms:
            raise WorldError(f"no VM named '{name}' on {self.computer_name}")
        return self.vms[name]

    def _change(self, *call) -> None:
        self.calls.append(call)
        if self.hang_s:
            time.sleep(self.hang_s)

    # -- reads --------------------------------------------------------------------------
    def host_info(self) -> dict:
        return {"computer_name": self.computer_name, "os_build": "20348.2849",
                "uptime_s": int(time.time()) - self.boot_epoch, "boot_epoch": self.boot_epoch,
                "pending_reboot": self.pending_reboot}

    def list_vms(self) -> list[dict]:
        with self.lock:
            return [{"name": name, "id": vm["id"], "state": vm["state"],
                     "uptime_s": int(time.time() - vm["since"]) if vm["state"] == "Running" else 0,
                     "cpu_pct": 7 if vm["state"] == "Running" else 0,
                     "memory_bytes": 4 * GIB if vm["state"] == "Running" else 0}
                    for name, vm in self.vms.items()]

    # -- changes ------------------------------------------------------------------------
    def _set(self, name: str, state: str, expect: str | None = None) -> None:
        with self.lock:
            vm = self.vms.get(name)
            if vm is not None and (expect is None or vm["state"] == expect):
                vm["state"], vm["since"] = state, time.time()

    def stop_vm(self, name: str, force: bool) -> None:
        self._change("stop_vm", name, force)
        self._vm(name)
        if force:
            self._set(name, "Off")
        elif name not in self.ignores_shutdown:
            self._set(name, "Stopping")
            _later(self.shutdown_s, self._set, name, "Off", "Stopping")

    def start_vm(self, name: str) -> None:
        self._change("start_vm", name)
        self._vm(name)
        self._set(name, "Running")

    def save_vm(self, name: str) -> None:
        self._change("save_vm", name)
        self._vm(name)
        self._set(name, "Saved")

    def restart(self) -> None:
        self.calls.append(("restart",))
        self.boot_epoch = int(time.time())
        self.pending_reboot = False

    # -- updates --------------------------------------------------------------------------
    def stage_updates(self) -> None:
        if self._update.get("state") == "Running":
            raise WorldError("the opsconsole-updates task is already running")
        self._update = {"state": "Ready", "report": ""}

    def install_updates(self, script: str) -> None:
        self._change("install_updates", script)
        self._update = {"state": "Running", "report": ""}
        _later(self.update_s, self._updates_done, script)

    def _updates_done(self, script: str) -> None:
        if script:
            code = self.update_exit_code
            report = {"ok": code == 0, "exit_code": code, "script": script}
        else:
            report = {"ok": True, "result_code": 2, "installed": 2, "reboot_required": True,
                      "titles": ["2026-01 Cumulative Update", "Defender definitions"]}
        self.pending_reboot = True
        self._update = {"state": "Ready", "report": json.dumps(report)}

    def update_status(self) -> dict:
        if not self._update:
            raise WorldError("no opsconsole-updates task on this host")
        running = self._update["state"] == "Running"
        return {"task_state": self._update["state"], "last_result": TASK_RUNNING if running else 0,
                "report": self._update["report"]}
