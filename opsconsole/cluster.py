"""Reads every provider at once and joins the answers into one Snapshot.

A provider that fails does not blank the picture: its part keeps the last
good answer (hosts marked unreachable, VMs unknown) and the failure is named
in `Snapshot.problems`.
"""
from __future__ import annotations

import asyncio
import time
from dataclasses import replace

from .model import HYPERV, LOCK, PROXY, SWARM, VM, Host, Problem, ProxyServer, Snapshot
from .providers.base import ProviderError, Providers


class Cluster:
    def __init__(self, providers: Providers, proxy_map: dict[str, str] | None = None) -> None:
        self.providers = providers
        self.proxy_map = proxy_map or {}     # "backend/server" -> VM name
        self.last = Snapshot()
        # (source, what failed) -> the first failure of this run
        self._failing_since: dict[tuple[str, str], float] = {}

    async def snapshot(self, hypervisor: bool = True) -> Snapshot:
        """`hypervisor=False` keeps the hosts and VMs of the last snapshot: for frequent
        polls that do not look at them (a Hyper-V read runs PowerShell on every host)."""
        p = self.providers
        last = self.last
        keep = not hypervisor and last.taken_at > 0
        parts = await asyncio.gather(
            p.swarm.read(),
            _nothing((last.hosts, last.vms)) if keep else
            p.hypervisor.read() if p.hypervisor else _nothing(([], [])),
            p.proxy.read() if p.proxy else _nothing(([], [], [])),
            p.proxy.read_only_reason() if p.proxy else _nothing(""),
            p.swarm.read_lock(),
            return_exceptions=True)
        problems: list[Problem] = [x for x in last.problems if keep and x.source == HYPERV]
        now = time.time()
        down: set[str] = set()          # sources whose read failed
        seen: set[tuple[str, str]] = set()  # keys of _failing_since still in use
        if keep:
            seen |= {k for k in self._failing_since if k[0] == HYPERV}

        def problem(source: str, text: str, key: str = "", entity: str = "") -> None:
            # since: the first of an unbroken run of reads with this same problem
            seen.add((source, key))
            problems.append(Problem(source, text,
                                    self._failing_since.setdefault((source, key), now), entity))

        def take(result, fallback, source, provider=None):
            if isinstance(result, asyncio.CancelledError):
                raise result
            if isinstance(result, BaseException):
                # any failure of a provider, expected or not, is a problem of its part: the
                # live view goes on with the last good answer, marked as not current
                text = str(result) if isinstance(result, (ProviderError, OSError)) else \
                    f"{type(result).__name__}: {result}"
                problem(source, text or type(result).__name__)
                down.add(source)
                return fallback
            # it answered, but some of what it said was malformed (left out or degraded)
            for text in getattr(provider, "parse_problems", None) or ():
                problem(source, str(text), key=str(text))
            return result

        nodes, services, tasks = take(parts[0], (last.nodes, last.services, last.tasks), SWARM,
                                      p.swarm)
        if SWARM not in down and nodes and not any(n.leader for n in nodes):
            problem(SWARM, "no manager is the Raft leader (an election, or quorum lost): "
                    "the swarm takes no changes", key="leader")
        hosts, vms = (last.hosts, last.vms) if keep else take(
            parts[1], (_unreachable(last.hosts), _unknown(last.vms)), HYPERV, p.hypervisor)
        if not keep and not isinstance(parts[1], BaseException):
            for h in hosts:         # a host that does not answer: its VMs are not known
                if h.state == "unreachable":
                    why = h.message.removeprefix(f"{h.name}: ") or "no answer"
                    problem(HYPERV, f"{h.name} unreachable: {why}", key=h.id, entity=h.id)
        backends, servers, sessions = take(parts[2], (last.backends, last.servers, last.sessions),
                                           PROXY, p.proxy)
        ro = take(parts[3], "proxy state unknown", PROXY) if PROXY not in down else \
            "proxy state unknown"
        # the lock lives in the swarm: one problem when the swarm cannot be read, not two
        lock = take(parts[4], last.lock, LOCK) if SWARM not in down else last.lock
        for key in set(self._failing_since) - seen:
            del self._failing_since[key]        # answered again: the next failure is new
        snap = Snapshot(
            hosts=tuple(hosts), vms=tuple(vms), nodes=tuple(nodes), services=tuple(services),
            tasks=tuple(tasks), backends=tuple(backends),
            servers=tuple(self._map_servers(servers, vms)), sessions=tuple(sessions),
            taken_at=time.time(), endpoint=getattr(p.swarm, "endpoint", ""),
            problems=tuple(problems), proxy_read_only=ro, lock=lock, notices=tuple(
                [n for n in [getattr(p.swarm, "failover", "")] if n] +
                list(getattr(p.proxy, "notices", ()))))
        self.last = snap
        return snap

    def _map_servers(self, servers, vms) -> list[ProxyServer]:
        """Which VM each proxy server fronts: the inventory first, then by address."""
        by_addr = {v.address: v.name for v in vms if v.address}
        out = []
        for s in servers:
            vm = self.proxy_map.get(f"{s.backend}/{s.name}") or s.vm or \
                by_addr.get(s.address.rsplit(":", 1)[0], "")
            out.append(s if vm == s.vm else replace(s, vm=vm))
        return out


async def _nothing(value):
    return value


def _unreachable(hosts) -> list[Host]:
    return [replace(h, state="unreachable") for h in hosts]


def _unknown(vms) -> list[VM]:
    return [replace(v, state="unknown") for v in vms]
