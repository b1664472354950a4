"""The four small interfaces the console needs from the world.

Every method is a coroutine: providers built on blocking libraries (docker
SDK, pywinrm) run those calls in a thread with `asyncio.to_thread`, the
native asyncio ones (asyncssh, the HAProxy socket) just await. Reads return
model entities; writes raise ProviderError with a message a person can act on.
"""
from __future__ import annotations

from typing import Awaitable, Callable, Protocol

from ..model import VM, Backend, Host, Lock, Node, ProxyServer, ProxySession, Service, Task


class ProviderError(Exception):
    """A remote system said no, or did not answer; the text says which and why."""


class LockHeld(ProviderError):
    """Another console's operation holds the cluster lock."""

    def __init__(self, lock: Lock) -> None:
        super().__init__(f"the cluster is locked by {lock.holder} for {lock.title!r} "
                         f"(operation {lock.op})")
        self.lock = lock


class SwarmProvider(Protocol):
    endpoint: str                   # the manager currently in use

    async def read(self) -> tuple[list[Node], list[Service], list[Task]]: ...
    async def set_availability(self, node_id: str, availability: str) -> None: ...
    async def set_role(self, node_id: str, role: str) -> None: ...
    async def rebalance(self, service_id: str) -> None: ...
    async def wait_for_change(self, timeout: float) -> None:
        """Return early when the cluster reports an event, else after timeout."""

    # The operation lock lives in the cluster, so every console sees it. Taking
    # it is a compare-and-set on the cluster's version: of two racing consoles
    # exactly one wins; the other gets LockHeld.
    async def read_lock(self) -> Lock | None: ...
    async def take_lock(self, lock: Lock) -> None: ...
    async def release_lock(self, op: str) -> None: ...
    async def break_lock(self) -> None: ...


class Hypervisor(Protocol):
    async def read(self) -> tuple[list[Host], list[VM]]: ...
    async def stop_vm(self, vm: str, timeout: float, force: bool = False) -> None: ...
    async def start_vm(self, vm: str) -> None: ...
    async def restart_host(self, host: str) -> None:
        """Restart and return once the host answers again."""
    async def install_updates(self, host: str, timeout: float, script: str = "") -> object:
        """Windows updates (or the operator's script) on the host; returns a report."""


class Proxy(Protocol):
    async def read(self) -> tuple[list[Backend], list[ProxyServer], list[ProxySession]]: ...
    async def set_server_state(self, backend: str, server: str, state: str) -> None: ...
    async def read_only_reason(self) -> str:
        """Empty when the console may change the proxy; else why not."""


LineSink = Callable[[str], None]


class Shell(Protocol):
    async def run(self, vm: str, command: str, timeout: float,
                  on_line: LineSink | None = None) -> int: ...
    async def boot_id(self, vm: str) -> str: ...
    async def wait_reboot(self, vm: str, down_timeout: float, up_timeout: float,
                          boot_id: str = "") -> str:
        """Wait for the VM to go away and answer again; its new boot id."""


class Providers:
    """The set a console runs on; any of them may be absent (None)."""

    def __init__(self, swarm: SwarmProvider, hypervisor: Hypervisor | None = None,
                 proxy: Proxy | None = None, shell: Shell | None = None,
                 close: Callable[[], Awaitable[None]] | None = None) -> None:
        self.swarm, self.hypervisor, self.proxy, self.shell = swarm, hypervisor, proxy, shell
        self._close = close

    async def close(self) -> None:
        if self._close:
            await self._close()
