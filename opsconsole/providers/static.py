"""Hosts and VMs as the inventory lists them, for sites without WinRM access.

The console still shows the physical layout; it cannot see or change VM
power state, and says so instead of guessing.
"""
from __future__ import annotations

from ..model import VM, Host
from .base import ProviderError

UNMANAGED = "no hypervisor access configured"


class StaticHypervisor:
    def __init__(self, hosts: list[Host], vms: list[VM]) -> None:
        self.hosts, self.vms = hosts, vms

    async def read(self) -> tuple[list[Host], list[VM]]:
        return list(self.hosts), list(self.vms)

    async def stop_vm(self, vm: str, timeout: float, force: bool = False) -> None:
        raise ProviderError(f"cannot stop {vm}: {UNMANAGED}")

    async def start_vm(self, vm: str) -> None:
        raise ProviderError(f"cannot start {vm}: {UNMANAGED}")

    async def restart_host(self, host: str) -> None:
        raise ProviderError(f"cannot restart {host}: {UNMANAGED}")

    async def install_updates(self, host: str, timeout: float, script: str = "") -> object:
        raise ProviderError(f"cannot update {host}: {UNMANAGED}")
