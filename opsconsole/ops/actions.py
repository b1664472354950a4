"""Every call that changes the cluster, in one place.

Each method is marked @mutating: it refuses unless the console's role may change the
cluster (a monitor, i.e. read-only mode, may not) before any remote system is touched, and
records attempt and outcome (or the refusal) in the audit log. The registry MUTATING lists
them all, so a test can prove every one refuses. What a whole operation needs (admin to
break the lock...) the engine asks through `require` before it calls any of these.
"""
from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from ..config import REBOOT
from ..model import Lock
from ..providers.base import LineSink, ProviderError, Providers
from .records import Audit
from .roles import CHANGE, Access, Role, RoleError

MUTATING: list[str] = []
F = TypeVar("F", bound=Callable[..., Awaitable[None]])
P = TypeVar("P")


def require(access: Access, audit: Audit, needed: Role, verb: str, target: str) -> None:
    """RoleError unless the role of `access` is at least `needed`; the refusal is audited
    (with the role), before anything is touched."""
    try:
        access.require(needed, f"{verb} {target}".strip())
    except RoleError:
        audit.record(verb, target, "refused: read-only" if access.read_only else
                     f"refused: needs {needed}", role=access.role)
        raise


def mutating(verb: str, audited: bool = True, changes: bool = True) -> Callable[[F], F]:
    """`audited=False` only for a write repeated every few seconds whose start and end are
    audited anyway (the lock's heartbeat): it still refuses in read-only mode.
    `changes=False`: the call touches only the console's own bookkeeping in the cluster (the
    operation lock), not what runs where: `generation` stays."""
    def wrap(fn: F) -> F:
        MUTATING.append(fn.__name__)

        @functools.wraps(fn)
        async def guarded(self: Actions, target: str, *args: Any, **kwargs: Any) -> None:
            self.require(CHANGE, verb, target)
            if not audited:
                await fn(self, target, *args, **kwargs)
                return
            detail = [str(a) for a in args] + [f"{k}={v}" for k, v in kwargs.items()
                                               if k != "on_line"]
            self.audit.record(verb, target, "started", args=detail)
            try:
                await fn(self, target, *args, **kwargs)
            except ProviderError as e:
                self.audit.record(verb, target, f"failed: {e}")
                raise
            finally:
                self.generation += changes
            self.audit.record(verb, target, "ok", args=detail)
        return guarded  # type: ignore[return-value]
    return wrap


class Actions:
    def __init__(self, providers: Providers, audit: Audit, access: Access) -> None:
        self.providers, self.audit, self.access = providers, audit, access
        self.generation = 0     # moves on with every change made: tells stale snapshots apart

    @property
    def read_only(self) -> bool:
        return self.access.read_only

    def require(self, needed: Role, verb: str, target: str) -> None:
        require(self.access, self.audit, needed, verb, target)

    def _need(self, what: str, provider: P | None) -> P:
        if provider is None:
            raise ProviderError(f"no {what} is configured in the inventory")
        return provider

    @mutating("set availability")
    async def set_availability(self, node_id: str, availability: str) -> None:
        await self.providers.swarm.set_availability(node_id, availability)

    @mutating("set role")
    async def set_role(self, node_id: str, role: str) -> None:
        await self.providers.swarm.set_role(node_id, role)

    @mutating("rebalance")
    async def rebalance(self, service_id: str) -> None:
        await self.providers.swarm.rebalance(service_id)

    @mutating("restart service")
    async def restart_service(self, service_id: str) -> None:
        await self.providers.swarm.rebalance(service_id)     # the same force update

    @mutating("scale service")
    async def scale_service(self, service_id: str, replicas: int) -> None:
        await self.providers.swarm.scale_service(service_id, replicas)

    @mutating("set service image")
    async def set_image(self, service_id: str, image: str) -> None:
        await self.providers.swarm.set_image(service_id, image)

    @mutating("roll back service")
    async def rollback_service(self, service_id: str) -> None:
        await self.providers.swarm.rollback_service(service_id)

    @mutating("set proxy server state")
    async def set_server_state(self, server: str, state: str) -> None:
        backend, name = server.split("/", 1)
        await self._need("proxy", self.providers.proxy).set_server_state(backend, name, state)

    @mutating("stop VM")
    async def stop_vm(self, vm: str, timeout: float, force: bool = False) -> None:
        await self._need("hypervisor", self.providers.hypervisor).stop_vm(vm, timeout, force)

    @mutating("start VM")
    async def start_vm(self, vm: str) -> None:
        await self._need("hypervisor", self.providers.hypervisor).start_vm(vm)

    @mutating("restart host")
    async def restart_host(self, host: str) -> None:
        await self._need("hypervisor", self.providers.hypervisor).restart_host(host)

    @mutating("install updates")
    async def install_updates(self, host: str, timeout: float, script: str = "") -> None:
        report = await self._need("hypervisor", self.providers.hypervisor).install_updates(
            host, timeout, script)
        self.audit.record("install updates", host, "report", report=str(report))

    @mutating("break the operation lock", changes=False)
    async def break_lock(self, holder: str) -> None:
        await self.providers.swarm.break_lock()

    @mutating("take the operation lock", changes=False)
    async def take_lock(self, op: str, lock: Lock) -> None:
        await self.providers.swarm.take_lock(lock)

    @mutating("release the operation lock", changes=False)
    async def release_lock(self, op: str) -> None:
        await self.providers.swarm.release_lock(op)

    @mutating("renew the operation lock", audited=False)
    async def beat_lock(self, op: str, lock: Lock) -> None:
        """The running operation's heartbeat in its own lock (take and release are audited)."""
        await self.providers.swarm.take_lock(lock)

    @mutating("abandon an unfinished operation", changes=False)
    async def abandon(self, op: str, holds_lock: bool) -> None:
        if holds_lock:
            await self.providers.swarm.release_lock(op)

    @mutating("reboot VM")
    async def reboot_vm(self, vm: str, command: str = REBOOT) -> None:
        """Reboot over SSH, detached so the command returns (wait_reboot sees it back)."""
        await self._need("shell", self.providers.shell).run(vm, command, 30.0)

    @mutating("run command")
    async def run_command(self, vm: str, command: str, timeout: float,
                          on_line: LineSink | None = None) -> None:
        code = await self._need("shell", self.providers.shell).run(vm, command, timeout, on_line)
        if code != 0:
            raise ProviderError(f"{vm}: `{command}` exited with status {code}")
