"""Helpers the lab tests share: polling with a deadline, what the systems say, watchers."""
from __future__ import annotations

import asyncio
import inspect
import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

WAIT = 120.0                    # the most any one condition may take


async def until(cond: Callable[[], object], what: str, timeout: float = WAIT, step: float = 0.2):
    """Poll `cond()` (awaited if it is a coroutine) until it is truthy and return that;
    fail naming `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        got = cond()
        if inspect.isawaitable(got):
            got = await got
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        await asyncio.sleep(step)


def swarm_picture(lab) -> tuple[list[dict], list[dict], list[dict]]:
    """Nodes, services and tasks meant to run, straight from a lab manager."""
    with lab.manager_client() as c:
        return c.api.nodes(), c.api.services(), c.api.tasks(filters={"desired-state": "running"})


def running_on(lab, service: str) -> dict[str, str]:
    """hostname -> task id of every running task of `service`."""
    nodes, services, tasks = swarm_picture(lab)
    names = {n["ID"]: n["Description"]["Hostname"] for n in nodes}
    sid = next(s["ID"] for s in services if s["Spec"]["Name"] == service)
    return {names[t["NodeID"]]: t["ID"] for t in tasks
            if t["ServiceID"] == sid and t["Status"]["State"] == "running"}


def wall(monotonic: float) -> float:
    """A time.monotonic() reading (the engine's step times) as wall-clock time."""
    return monotonic + (time.time() - time.monotonic())


def step_times(op, prefix: str) -> tuple[float, float]:
    """Wall-clock start and end of the operation's first step whose title starts so."""
    i = next(i for i, s in enumerate(op.plan.steps) if s.title.startswith(prefix))
    start, *end = op.times[i]
    return wall(start), wall(end[0]) if end else 0.0


class Sampler:
    """`fn()` every `period` seconds from a thread, as a timeline [(wall time, value)];
    failures of the kinds in `errors` (a manager mid-election, a VM rebooting) are skipped."""

    def __init__(self, fn: Callable[[], object], period: float = 0.5,
                 errors: tuple[type[BaseException], ...] = (Exception,)) -> None:
        self.fn, self.period, self.errors = fn, period, errors
        self.timeline: list[tuple[float, object]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.period):
            try:
                value = self.fn()
            except self.errors:
                continue            # a sample missed, the next one counts
            self.timeline.append((time.time(), value))     # when the value was known

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(10)

    def between(self, start: float, end: float) -> list:
        return [v for t, v in self.timeline if start <= t <= end]


class ProxyWatch(Sampler):
    """HAProxy's portal servers every 0.1 s, as a timeline, from a thread:
    [(wall time, {server: (status, admin, sessions)})]."""

    def __init__(self, lab, period: float = 0.1) -> None:
        def read() -> dict[str, tuple[str, str, int]]:
            servers, sessions = lab.proxy_servers(), lab.proxy_sessions()
            return {k: (v[0], v[1], sessions.get(k, 0)) for k, v in servers.items()}
        super().__init__(read, period, errors=(OSError,))

    def of(self, server: str) -> list[tuple[float, str, str, int]]:
        return [(t, *s[server]) for t, s in self.timeline if server in s]


def node_roles(lab) -> dict[str, tuple[str, str, str]]:
    """hostname -> (role, state, availability), from the first manager that answers."""
    return {k: (v[2], v[0], v[1]) for k, v in lab.node_states().items()}


async def whole(console, servers_up: bool = True):
    """A snapshot with every provider answering and the cluster at rest."""
    async def ready():
        snap = await console.cluster.snapshot()
        return snap if (not snap.problems and all(h.state == "up" for h in snap.hosts)
                        and all(v.state == "running" for v in snap.vms)
                        and all(n.state == "ready" for n in snap.nodes)
                        and all(snap.converged(s) for s in snap.services)
                        and (not servers_up or all(s.status == "UP" for s in snap.servers))) \
            else None
    return await until(ready, "a whole snapshot from every provider")


class ReplicaWatch:
    """Swarm's replicated tasks every `period` seconds from a process of its own
    (tests/lab/replicawatch.py), read back as samples once it stops."""

    def __init__(self, lab, path, period: float = 0.1) -> None:
        self.lab, self.path, self.period = lab, path, period
        self.samples: list[dict] = []
        self._proc: subprocess.Popen | None = None

    def __enter__(self) -> ReplicaWatch:
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "tests.lab.replicawatch", "--out", str(self.path),
             "--period", str(self.period), *[vm.socket for vm in self.lab.managers]],
            stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while not (Path(self.path).exists() and Path(self.path).stat().st_size):
            assert time.monotonic() < deadline, "the replica watch wrote nothing"
            time.sleep(0.05)
        return self

    def __exit__(self, *exc) -> None:
        assert self._proc is not None
        self._proc.terminate()
        self._proc.wait(10)
        self.samples = [json.loads(line) for line in Path(self.path).read_text().splitlines()
                        if line.strip()]

    def floor(self, want: dict[str, int]) -> dict[str, int]:
        """Per service of `want`, the fewest tasks seen running."""
        return {name: min(len(s["services"].get(name, {}).get("running", []))
                          for s in self.samples) for name in want}

    def gaps(self) -> float:
        """The longest time between two samples (a sample missed while a manager was away)."""
        times = [s["t"] for s in self.samples]
        return max((b - a for a, b in zip(times, times[1:])), default=0.0)

    def stopped(self) -> list[tuple[str, str, str, str]]:
        """Every task that ran at the first sample and stopped running between two samples:
        (service, task id, its node, the node's availability in the last sample that showed
        it). Tasks started meanwhile (a drain's extra ones, say) are not counted."""
        first = {tid for svc in self.samples[0]["services"].values() for tid, _ in svc["running"]}
        out = []
        for before, after in zip(self.samples, self.samples[1:]):
            for name, svc in before["services"].items():
                now = {tid for tid, _ in after["services"].get(name, {}).get("running", [])}
                out += [(name, tid, host, before["nodes"].get(host, "?"))
                        for tid, host in svc["running"] if tid not in now and tid in first]
        return out


def service_specs(lab) -> dict[str, dict]:
    """Each service's spec, as Swarm keeps it (its version history aside)."""
    with lab.manager_client() as c:
        return {s["Spec"]["Name"]: s["Spec"] for s in c.api.services()}
