"""Hyper-V hosts over WinRM: one pywinrm Session per host, scripts that answer JSON.

pywinrm blocks, so every call runs in a thread (`asyncio.to_thread`), one at
a time per host (a Session is not safe to share between threads). The
PowerShell lives in `powershell/*.ps1` and reaches the host through
`powershell/remote.py`; this module picks the script and turns the answer,
or the failure, into model entities and ProviderErrors a person can act on.
Long operations (a VM shutting down, a host restarting, updates installing)
are short calls polled from here, so a refresh never waits behind them for
long and the timeouts live in one place.

Credentials come from the caller (read from the environment variables the
inventory names); they are never logged, shown or written anywhere.
"""
from __future__ import annotations

import asyncio
import json
import re
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

import winrm

from ..model import VM, Host
from . import powershell as ps
from .base import Fields, ProviderError, bounded, show
from .powershell.remote import (
    TRANSPORTS,
    Unreachable,
    WinRMHost,
    explain,
    make_session,
    run_command,
)

__all__ = ["HyperV", "TRANSPORTS", "UpdateReport", "Unreachable", "WinRMHost", "explain",
           "make_session", "vm_state"]

BOOT_SLACK = 30          # s: LastBootUpTime wobbles by a second or two between reads
# Task Scheduler's LastTaskResult while a task runs, has not run yet, is queued.
TASK_PENDING = frozenset({0x41301, 0x41303, 0x41325})
# Hyper-V's VM states (enum names) in the model's words; others pass as text.
STATES = {"running": "running", "off": "off", "stopping": "stopping", "starting": "starting",
          "saved": "saved", "saving": "stopping", "fastsaving": "stopping",
          "fastsaved": "saved", "pausing": "stopping", "resuming": "starting",
          "reset": "starting", "paused": "paused"}


@dataclass(frozen=True)
class UpdateReport:
    """What the update task wrote when it finished."""
    host: str
    ok: bool
    installed: int = 0
    reboot_required: bool = False
    result_code: int = 0                # Windows Update's ResultCode (2 = succeeded)
    exit_code: int = 0                  # the operator's script's exit code
    titles: tuple[str, ...] = ()
    script: str = ""
    error: str = ""


def vm_state(text: str) -> str:
    t = text.strip().lower().replace(" ", "")
    t = t[:-len("critical")] if t.endswith("critical") and len(t) > 8 else t
    return STATES.get(t, t or "unknown")


class _HostState:
    """One host: its config, Session, lock and what it last reported."""

    def __init__(self, cfg: WinRMHost, inventory: list[VM]) -> None:
        self.cfg = cfg
        self.inventory = {v.name: v for v in inventory}
        self.lock = threading.Lock()
        self._session: winrm.Session | None = None
        self.last_vms = [replace(v, state="unknown") for v in inventory]
        self.rebooting = ""             # why reads are skipped: "restarting since ..."
        self.identity_problem = ""

    def session(self) -> winrm.Session:
        if self._session is None:
            self._session = make_session(self.cfg)
        return self._session

    def close(self) -> None:
        if self._session is not None:
            self._session.protocol.transport.close_session()


class HyperV:
    """The Hypervisor interface over WinRM, for the hosts given.

    `vms` are the inventory's VMs (name, host, address, node_hostname): they
    lend their address and Swarm hostname to what the hosts report, and stay
    listed (state "unknown") when their host cannot be read.
    """

    def __init__(self, hosts: Iterable[WinRMHost], vms: Iterable[VM] = (), *,
                 poll_interval: float = 2.0, restart_timeout: float = 1800.0) -> None:
        vms = list(vms)
        self._hosts = {h.name: _HostState(h, [v for v in vms if v.host == h.name])
                       for h in hosts}
        self.poll_interval, self.restart_timeout = poll_interval, restart_timeout
        # per read: hosts that answered but could not be read, and malformed entries
        # (a host that does not answer at all is a host in state "unreachable")
        self.parse_problems: list[str] = []

    # -- calls -----------------------------------------------------------------------
    def _host(self, name: str) -> _HostState:
        try:
            return self._hosts[name]
        except KeyError:
            raise ProviderError(f"no such Hyper-V host: {name!r}") from None

    def _call_blocking(self, h: _HostState, script: str, params: dict[str, str]) -> dict:
        line = ps.command_line(script, params)
        with h.lock:
            session = h.session()
            try:
                code, out, err = run_command(session, line, h.cfg.call_timeout)
            except ProviderError as e:
                raise ProviderError(f"{h.cfg.name}: {script}: {e}") from None
            except Exception as e:     # noqa: BLE001 - every pywinrm/requests failure, in words
                raise explain(e, h.cfg, script) from None
        return ps.parse_answer(h.cfg.name, script, code, out, err)

    async def _call(self, h: _HostState, script: str, **params: str) -> dict[str, Any]:
        return await asyncio.to_thread(self._call_blocking, h, script, params)

    # -- reads -------------------------------------------------------------------------
    async def read(self) -> tuple[list[Host], list[VM]]:
        parts = await asyncio.gather(*(self._read_host(h) for h in self._hosts.values()))
        self.parse_problems = bounded([m for p in parts for m in p[2]])
        return [p[0] for p in parts], [v for p in parts for v in p[1]]

    def _unknown(self, h: _HostState) -> list[VM]:
        return [replace(v, state="unknown") for v in h.last_vms]

    async def _read_host(self, h: _HostState) -> tuple[Host, list[VM], list[str]]:
        """The host, its VMs, and what could not be read of them."""
        cfg = h.cfg
        base = Host(cfg.name, address=cfg.address)
        if h.rebooting:
            return replace(base, state="rebooting", message=h.rebooting), self._unknown(h), []
        problems: list[str] = []
        try:
            host, vms = self._parse_read(h, await self._call(h, "read-host"), problems)
        except Unreachable as e:
            return replace(base, state="unreachable", message=str(e)), self._unknown(h), []
        except ProviderError as e:
            return replace(base, state="unknown", message=str(e)), self._unknown(h), [str(e)]
        h.last_vms = vms
        return host, vms, problems

    def _parse_read(self, h: _HostState, answer: dict, problems: list[str]
                    ) -> tuple[Host, list[VM]]:
        """A read-host answer; without its host object it is a ProviderError, other
        malformed fields and VM entries are degraded or left out, and said."""
        where = f"{h.cfg.name}: read-host"
        info = ps.field(answer, "host", dict, where)
        f = Fields(where)
        listed = answer.get("vms")
        listed = [] if listed is None else [listed] if isinstance(listed, dict) else listed
        if not isinstance(listed, list):
            f.issues.append(f"vms is {show(listed)}, not a list")
            listed = []
        name = f.text(info, "computer_name", required=True)
        h.identity_problem = ""
        expect = h.cfg.expect_computer_name
        if expect and name.lower() != expect.lower():
            h.identity_problem = f"endpoint answers as {name!r}, expected {expect!r}"
            problems.append(f"{h.cfg.name}: {h.identity_problem}")
        vms: dict[str, VM] = {}
        for d in listed:
            vm = self._parse_vm(h, d, where, problems)
            if vm is not None and vm.name in vms:
                problems.append(f"{where}: VM {vm.name} is listed twice; the second was left out")
            elif vm is not None:
                vms[vm.name] = vm
        missing = [n for n in h.inventory if n not in vms]
        host = Host(h.cfg.name, address=h.cfg.address,
                    state="unknown" if h.identity_problem else "up",
                    os_build=f.text(info, "os_build", required=True),
                    uptime_s=f.number(info, "uptime_s", clamp=True),
                    pending_reboot=f.flag(info, "pending_reboot"))
        f.number(info, "boot_epoch")    # read by restart_host: said here when malformed
        f.report(problems)
        messages = [h.identity_problem, "; ".join(f.issues),
                    f"not on this host: {', '.join(missing)}" if missing else ""]
        host = replace(host, message="; ".join(filter(None, messages)))
        return host, [*vms.values(), *(replace(h.inventory[n], state="unknown")
                                       for n in missing)]

    def _parse_vm(self, h: _HostState, d: Any, where: str, problems: list[str]) -> VM | None:
        name = d.get("name") if isinstance(d, dict) else None
        if not isinstance(name, str) or not name.strip():
            problems.append(f"{where}: a VM entry without a name was left out: {show(d)}")
            return None
        f = Fields(f"{where}: VM {name}")
        known = h.inventory.get(name)
        vm = VM(name, h.cfg.name, state=vm_state(f.text(d, "state", required=True)),
                address=known.address if known else "",
                node_hostname=known.node_hostname if known else "",
                uptime_s=f.number(d, "uptime_s", clamp=True),
                cpu_pct=f.number(d, "cpu_pct", clamp=True),
                memory_bytes=f.number(d, "memory_bytes", clamp=True))
        f.report(problems)
        return vm

    # -- writes ------------------------------------------------------------------------
    async def _locate(self, vm: str) -> _HostState:
        """The host of a VM: the inventory's word, else where the last read saw it."""
        def where() -> list[_HostState]:
            return [h for h in self._hosts.values()
                    if vm in h.inventory or any(v.name == vm for v in h.last_vms)]
        found = where()
        if not found:
            await self.read()
            found = where()
        if not found:
            raise ProviderError(f"no VM named {vm!r} on any Hyper-V host")
        if len(found) > 1:
            raise ProviderError(f"VM {vm!r} is on several hosts "
                                f"({', '.join(h.cfg.name for h in found)}); name its host "
                                "in the inventory")
        h = found[0]
        if h.identity_problem:
            raise ProviderError(f"{h.cfg.name}: {h.identity_problem}; refusing to act")
        if h.rebooting:
            raise ProviderError(f"{h.cfg.name} is restarting; try again when it is back")
        return h

    async def _vm_call(self, h: _HostState, script: str, vm: str, **params: str) -> str:
        answer = await self._call(h, script, Name=vm, **params)
        return vm_state(ps.field(answer, "state", str, f"{h.cfg.name}: {script}"))

    async def stop_vm(self, vm: str, timeout: float, force: bool = False) -> None:
        """Guest shutdown, polled until off; past `timeout` turn it off only if `force`."""
        h = await self._locate(vm)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        state = await self._vm_call(h, "stop-vm", vm, Mode="shutdown")
        while state not in ("off", "saved") and loop.time() < deadline:
            await asyncio.sleep(max(0.0, min(self.poll_interval, deadline - loop.time())))
            state = await self._vm_call(h, "get-vm", vm)
        if state in ("off", "saved"):
            return
        if not force:
            raise ProviderError(f"{vm} did not shut down within {timeout:g} s (still {state}); "
                                "turning it off needs force")
        state = await self._vm_call(h, "stop-vm", vm, Mode="turnoff")
        if state != "off":
            raise ProviderError(f"{vm}: still {state} after turn-off")

    async def start_vm(self, vm: str) -> None:
        h = await self._locate(vm)
        state = await self._vm_call(h, "start-vm", vm)
        if state not in ("running", "starting"):
            raise ProviderError(f"{vm}: {state} after start")

    async def save_vm(self, vm: str) -> None:
        h = await self._locate(vm)
        state = await self._vm_call(h, "save-vm", vm)
        if state not in ("saved", "off"):
            raise ProviderError(f"{vm}: {state} after save")

    async def restart_host(self, host: str) -> None:
        """Restart, then wait until WinRM answers again from a new boot."""
        h = self._host(host)
        answer = await self._call(h, "restart-host")
        old_boot = ps.field(answer, "boot_epoch", int, f"{host}: restart-host")
        h.rebooting = f"restarting since {time.strftime('%H:%M:%S')}"
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.restart_timeout
        last = "it still answers from the old boot"
        try:
            while True:
                await asyncio.sleep(self.poll_interval)
                try:
                    answer = await self._call(h, "read-host")
                    boot = ps.field(ps.field(answer, "host", dict, f"{host}: read-host"),
                                    "boot_epoch", int, f"{host}: read-host")
                    if boot > old_boot + BOOT_SLACK:
                        _, h.last_vms = self._parse_read(h, answer, [])    # next read says
                        return
                except ProviderError as e:      # down, or on its way up
                    last = str(e)
                if loop.time() > deadline:
                    raise ProviderError(f"{host} did not come back within "
                                        f"{self.restart_timeout:g} s (last: {last})")
        finally:
            h.rebooting = ""

    async def install_updates(self, host: str, timeout: float, script: str = "") -> UpdateReport:
        """Windows Update (or the operator's script on the host) as a SYSTEM task.

        Returns the task's report; a failed report or a task that ends without
        one is a ProviderError. Past `timeout` the task goes on on the host.
        """
        h = self._host(host)
        if script and not re.match(r"^([A-Za-z]:\\|\\\\)[^\"\x00-\x1f]*[^\\]$", script):
            raise ProviderError(f"maintenance script {script!r}: expected an absolute Windows "
                                "path without double quotes")
        await self._call(h, "stage-updates")
        await self._call(h, "install-updates", Script=script)
        loop = asyncio.get_running_loop()
        deadline, ended = loop.time() + timeout, 0
        where = f"{host}: update-status"
        while True:
            await asyncio.sleep(self.poll_interval)
            status = await self._call(h, "update-status")
            report = ps.field(status, "report", str, where)
            if report.strip():
                return self._update_report(host, report)
            state = ps.field(status, "task_state", str, where)
            result = ps.field(status, "last_result", int, where)
            # A task that ended without a report: give it one more poll to write it.
            ended = ended + 1 if state != "Running" and result not in TASK_PENDING else 0
            if ended >= 2:
                raise ProviderError(f"{host}: the update task ended (result 0x{result:08x}) "
                                    "without a report")
            if loop.time() > deadline:
                raise ProviderError(f"{host}: updates still running after {timeout:g} s; "
                                    "the task goes on on the host")

    def _update_report(self, host: str, text: str) -> UpdateReport:
        where = f"{host}: update report"
        try:                            # Set-Content -Encoding UTF8 writes a BOM
            d = json.loads(text.strip().lstrip("\ufeff"))
        except ValueError as e:
            raise ProviderError(f"{where} is not valid JSON ({e})") from None
        if not isinstance(d, dict):
            raise ProviderError(f"{where} is not a JSON object")
        titles = d.get("titles") or []

        def number(key: str) -> int:
            value = d.get(key) or 0
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            if not isinstance(value, int) or isinstance(value, bool):
                raise ProviderError(f"{where}: field {key!r} should be int, got {show(value)}")
            return value
        report = UpdateReport(
            host, ok=ps.field(d, "ok", bool, where),
            installed=number("installed"), reboot_required=bool(d.get("reboot_required")),
            result_code=number("result_code"), exit_code=number("exit_code"),
            titles=tuple(str(t) for t in (titles if isinstance(titles, list) else [titles])),
            script=str(d.get("script") or ""), error=str(d.get("error") or ""))
        if not report.ok:
            why = report.error or (f"maintenance script exited with {report.exit_code}"
                                   if report.script else
                                   f"Windows Update result code {report.result_code}")
            raise ProviderError(f"{host}: updates failed: {why}")
        return report

    async def close(self) -> None:
        for h in self._hosts.values():
            await asyncio.to_thread(h.close)
