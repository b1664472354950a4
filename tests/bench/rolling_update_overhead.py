"""Benchmark: the console's own overhead in a rolling update on the lab.

    sudo python tests/bench/rolling_update_overhead.py [--targets cluster|vm-02,vm-03] [--load]

Uses the reference lab if one is up (`python -m tests.lab.swarm_lab up --reference`),
else brings one up for the run and takes it down after. The rolling update
runs through the console's own session and engine, as `opsconsole run
rolling-update` does (drain with the proxy first, the update command over SSH,
the reboot through the VM's own `reboot`, back, health gate), VM by VM.

Per VM, total = from the start of its first step to the end of its last one
(the engine's step times). System time = the time the systems themselves
needed, from their own records, as the union of these intervals:

  sessions   HAProxy: from the drain (its answer to `set server`) until the last
             stick-table entry of the server expired (`show table`, `exp`)
  drain      Swarm: from the node's UpdatedAt at `drain` to the last Status.Timestamp
             of its tasks shutting down and of their replacements running
  command    the VM: the update command's own start and end (it writes them)
  reboot     the VM and the lab: from the VM's reboot request (its power script's
             timestamp) until its sshd listened again (the lab's boot log)
  ready      Swarm: from that boot until the node was Ready (and, for a manager,
             reachable in Raft)
  return     Swarm and HAProxy: from the node's UpdatedAt at `active` until its
             portal task ran (Status.Timestamp), the services converged and HAProxy
             showed the server UP

The replica floor (each replicated service's fewest running tasks against its desired
count, from every snapshot the console read during the run) is printed with the overhead.

Console overhead = total - system time: snapshots before each change and
between polls, journal and audit writes, SSH connections, probes and the
gaps between a system being done and the console noticing. Observers poll
Swarm every 0.2 s and HAProxy every 0.1 s from threads; where a system has no
timestamp of its own (node Ready, Raft reachability, HAProxy UP) the first
observation counts, so overhead is if anything under-counted by <= 0.2 s.
"""
from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import statistics
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run as a file from anywhere

from opsconsole.config import load
from opsconsole.ops import catalog
from opsconsole.ops.engine import DONE
from opsconsole.session import open_session
from tests.lab.load import LoadRun, summary
from tests.lab.swarm_lab import (
    BACKEND,
    WINRM_PASSWORD,
    WINRM_PASSWORD_ENV,
    WINRM_USER,
    WINRM_USER_ENV,
    Lab,
    LabError,
    read_boots,
)

UPDATE = ('t0=$(date +%s.%N); echo "$t0 $(date +%s.%N) update on $(hostname)" >> '
          '"{root}/$(hostname)/disk/bench-updates.log"')
PHASES = ("sessions", "drain", "command", "reboot", "ready", "return")


def ts(text: str) -> float:
    """Swarm's RFC 3339 time with nanoseconds -> epoch seconds."""
    if not text or text.startswith("0001-"):
        return 0.0
    head, _, frac = text.rstrip("Z").partition(".")
    return datetime.fromisoformat(head + "+00:00").timestamp() + float("0." + (frac or "0"))


class Observer:
    """Swarm and HAProxy, polled from threads, keeping what each said and when."""

    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        self.nodes: list[tuple[float, dict]] = []     # (seen at, {host: node dict})
        self.tasks: dict[str, dict] = {}               # task id -> last seen
        # task id -> state -> Swarm's timestamp the first time it was seen in that state
        # (a running task's timestamp may be refreshed later, e.g. after a leader change)
        self.states: dict[str, dict[str, float]] = {}
        self.proxy: list[tuple[float, dict, dict]] = []  # (seen at, servers, {server: last exp})
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._swarm, daemon=True),
                         threading.Thread(target=self._haproxy, daemon=True)]

    def __enter__(self) -> Observer:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(10)

    def _swarm(self) -> None:
        client = None
        while not self._stop.wait(0.2):
            try:
                if client is None:
                    client = self.lab.manager_client()
                nodes = client.api.nodes()
                tasks = client.api.tasks()
            except Exception:      # noqa: BLE001 - a manager rebooting: ask another
                if client is not None:
                    client.close()
                client = None
                continue
            now = time.time()
            self.nodes.append((now, {n["Description"]["Hostname"]: n for n in nodes}))
            for t in tasks:
                self.tasks[t["ID"]] = t
                self.states.setdefault(t["ID"], {}).setdefault(
                    t["Status"]["State"], ts(t["Status"]["Timestamp"]))
        if client is not None:
            client.close()

    def _haproxy(self) -> None:
        while not self._stop.wait(0.1):
            try:
                servers = self.lab.proxy_servers()
                table = self.lab.proxy_command(f"show table {BACKEND}")
            except OSError:
                continue
            now = time.time()
            expiry: dict[str, float] = {}
            for line in table.splitlines()[1:]:
                f = dict(x.split("=", 1) for x in line.split() if "=" in x)
                if f.get("server_key") and f.get("exp", "").isdigit():
                    expiry[f["server_key"]] = max(expiry.get(f["server_key"], 0.0),
                                                  now + int(f["exp"]) / 1000)
            self.proxy.append((now, servers, expiry))

    # -- what the systems said ------------------------------------------------------------
    def sessions_gone(self, server: str, after: float) -> float:
        """When the server's last session expired in HAProxy, after `after` (`after`: none)."""
        last = after
        for t, _, expiry in self.proxy:
            if t >= after:
                if server not in expiry:
                    return last
                last = expiry[server]
        return last

    def node_updated(self, host: str, after: float, key: str, value: str) -> float:
        """Swarm's UpdatedAt of the node when it first showed Spec[key] == value after `after`."""
        for t, nodes in self.nodes:
            n = nodes.get(host)
            if t >= after and n and n["Spec"].get(key) == value:
                return ts(n["UpdatedAt"])
        return 0.0

    def node_ready(self, host: str, after: float) -> float:
        """When the node was Ready again after `after`: Swarm's UpdatedAt for a worker; for a
        manager the first observation reachable in Raft (it has no timestamp of its own)."""
        for t, nodes in self.nodes:
            n = nodes.get(host)
            if t < after or not n or n["Status"]["State"] != "ready":
                continue
            if n["Spec"]["Role"] != "manager":
                return max(after, ts(n["UpdatedAt"]))
            if (n.get("ManagerStatus") or {}).get("Reachability") == "reachable":
                return t
        return 0.0

    def node_id(self, host: str) -> str:
        return next(nodes[host]["ID"] for _, nodes in reversed(self.nodes) if host in nodes)

    def _when(self, task: dict, *states: str) -> float:
        return min((self.states.get(task["ID"], {}).get(s, 0.0) for s in states
                    if s in self.states.get(task["ID"], {})), default=0.0)

    def drained(self, host: str, since: float, until: float) -> float:
        """The last Swarm timestamp of the drain's work: the node's tasks shut down, the
        replicated ones running elsewhere."""
        node = self.node_id(host)
        stopped = [(t, self._when(t, "shutdown", "complete", "failed", "rejected"))
                   for t in self.tasks.values()
                   if t.get("NodeID") == node and t["DesiredState"] in ("shutdown", "remove")]
        stopped = [(t, w) for t, w in stopped if since <= w <= until]
        moved = {t["ServiceID"] for t, _ in stopped if "Slot" in t}    # replicated ones
        started = [self._when(t, "running") for t in self.tasks.values()
                   if t["ServiceID"] in moved and t.get("NodeID") != node
                   and since <= ts(t["CreatedAt"]) <= until]
        return max([w for _, w in stopped] + [w for w in started if since <= w <= until],
                   default=since)

    def returned(self, host: str, since: float, until: float) -> float:
        """The node's portal task running, the services converged, HAProxy showing it UP."""
        running = [self._when(t, "running") for t in self.tasks.values()
                   if since <= ts(t["CreatedAt"]) <= until]
        up = next((t for t, servers, _ in self.proxy if t >= since
                   and servers.get(host, ("",))[0] == "UP"), since)
        return max([up] + [w for w in running if since <= w <= until])


def union(intervals: list[tuple[float, float]], lo: float, hi: float) -> float:
    """Length of the union of intervals, clipped to [lo, hi]."""
    spans = sorted(c for c in ((max(a, lo), min(b, hi)) for a, b in intervals) if c[1] > c[0])
    total, end = 0.0, lo
    for a, b in spans:
        if b <= end:
            continue
        total += b - max(a, end)
        end = b
    return total


def measure(op, lab: Lab, obs: Observer, offset: float) -> list[dict]:
    """Per VM: total, the systems' intervals, console overhead (in all and per step)."""
    steps = op.plan.steps
    rows = []
    for name in op.plan.params["vms"]:
        idx = [i for i, s in enumerate(steps) if s.group == name]
        span = {steps[i].title: (op.times[i][0] + offset, op.times[i][1] + offset) for i in idx}

        def step(prefix: str) -> tuple[float, float]:
            return next(v for k, v in span.items() if k.startswith(prefix))
        lo, hi = span[steps[idx[0]].title][0], span[steps[idx[-1]].title][1]
        vm = lab.vm(name)
        system: dict[str, tuple[float, float]] = {}
        drain_ack = step("set proxy server")[1]
        system["sessions"] = (drain_ack, obs.sessions_gone(name, drain_ack))
        node_drain = obs.node_updated(name, step(f"set {name} availability to drain")[0],
                                      "Availability", "drain")
        system["drain"] = (node_drain, obs.drained(name, node_drain, step("wait until")[1]))
        t0, t1 = next((float(a), float(b)) for a, b, *_ in
                      (line.split() for line in (vm.disk / "bench-updates.log").read_text()
                       .splitlines()) if lo <= float(a) <= hi)
        system["command"] = (t0, t1)
        events = [e for e in read_boots(vm) if e.get("seen", e.get("start", 0)) >= lo]
        request = next(e for e in events if e["event"] == "request")
        boot = next(e for e in events if e["event"] == "boot")
        system["reboot"] = (request["requested"], boot["end"])
        system["ready"] = (boot["end"], obs.node_ready(name, boot["end"]))
        active = obs.node_updated(name, step("wait until node")[1], "Availability", "active")
        system["return"] = (active, obs.returned(name, active, hi))
        intervals = list(system.values())
        total, busy = hi - lo, union(intervals, lo, hi)
        rows.append({
            "vm": name, "total": total, "system": busy, "overhead": total - busy,
            "detail": [(t, a - lo, b - lo) for t, (a, b) in span.items()]
            + [(k, a - lo, b - lo) for k, (a, b) in system.items()],
            "phases": {k: max(0.0, min(b, hi) - max(a, lo)) for k, (a, b) in system.items()},
            "steps": {t: (b - a) - union(intervals, a, b) for t, (a, b) in span.items()},
            "between": total - sum(b - a for a, b in span.values())})
    return rows


async def run(lab: Lab, targets: str, with_load: bool, scratch: Path,
              verbose: bool = False) -> None:
    inventory = dataclasses.replace(load(lab.inventory_path), state_dir=scratch / "state")
    session = open_session(inventory)
    try:
        snap = await session.cluster.snapshot()
        assert not snap.problems, snap.problems
        options = dataclasses.replace(session.window_options,
                                      update_command=UPDATE.format(root=lab.root))
        plan = catalog.build("rolling-update", snap, targets, inventory.timing, options)
        assert not plan.refused, [c.message for c in plan.refused]
        offset = time.time() - time.monotonic()
        load_run = LoadRun(lab.portal_url, scratch / "load.json") if with_load else None
        with Observer(lab) as obs:
            if load_run:
                load_run.__enter__()
                await asyncio.sleep(8)          # users on every server before the first drain
            try:
                op = await session.engine.run(plan)
            finally:
                if load_run:
                    load_run.stop()
            await asyncio.sleep(1.0)            # the observers' last look
        if op.state != DONE:
            raise SystemExit(f"the rolling update {op.state}: {op.error}")
        rows = measure(op, lab, obs, offset)
    finally:
        await session.providers.close()
    report(lab, plan, op, rows, load_run, verbose)


def report(lab: Lab, plan, op, rows: list[dict], load_run, verbose: bool = False) -> None:
    managers = sum(1 for v in lab.vms if v.role == "manager")
    print(f"lab: {'reference' if lab.reference else 'default'} layout, {len(lab.vms)} VMs "
          f"({managers} managers); rolling update of {', '.join(plan.params['vms'])}"
          + (f", stand-in manager {plan.params['promote']}" if plan.params.get("promote") else ""))
    print(f"operation: {op.elapsed:.1f}s in all, {len(plan.steps)} steps; "
          + (f"under load: {summary(load_run.report)}" if load_run else "no load (no sessions)"))
    # the console's own samples (every snapshot it reads): lowest running of desired
    print("replica floor: " + (", ".join(
        f"{name} {low} of {want}" + (" (held)" if low >= want else f" (dipped by {want - low})")
        for name, (low, want) in sorted(op.floor.items())) or "no replicated service"))
    print("seconds per VM; system time = union of the systems' own intervals (see the script)\n")
    head = f"{'VM':6} {'total':>6} " + " ".join(f"{p:>8}" for p in PHASES) + \
        f" {'system':>7} {'console':>8} {'share':>6}"
    print(head)
    for r in rows:
        print(f"{r['vm']:6} {r['total']:6.2f} " + " ".join(f"{r['phases'][p]:8.2f}" for p in PHASES)
              + f" {r['system']:7.2f} {r['overhead']:8.2f} {r['overhead'] / r['total']:6.0%}")
    mean = lambda key: statistics.mean(r[key] for r in rows)   # noqa: E731
    print(f"{'mean':6} {mean('total'):6.2f} "
          + " ".join(f"{statistics.mean(r['phases'][p] for r in rows):8.2f}" for p in PHASES)
          + f" {mean('system'):7.2f} {mean('overhead'):8.2f} "
            f"{mean('overhead') / mean('total'):6.0%}")
    if verbose:
        for r in rows:
            print(f"\n{r['vm']}: seconds from the start of its first step")
            for what, a, b in r["detail"]:
                print(f"  {a:7.2f} {b:7.2f}  {what}")
    print("\nconsole overhead by step, mean over the VMs (step time minus system time in it):")
    titles = list(rows[0]["steps"])
    for i, title in enumerate(titles):
        values = [list(r["steps"].values())[i] for r in rows]
        generic = title.replace(rows[0]["vm"], "<vm>")
        print(f"  {statistics.mean(values):6.2f}  {generic}")
    print(f"  {statistics.mean(r['between'] for r in rows):6.2f}  between steps (journal, records)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--targets", default="cluster", help="cluster, or VM names with commas")
    ap.add_argument("--load", action="store_true", help="run the load generator meanwhile")
    ap.add_argument("--verbose", action="store_true", help="each VM's steps and intervals")
    args = ap.parse_args()
    os.environ.setdefault(WINRM_USER_ENV, WINRM_USER)
    os.environ.setdefault(WINRM_PASSWORD_ENV, WINRM_PASSWORD)
    lab, ours = None, False
    try:
        lab = Lab.attach()
        lab.wait_converged(timeout=10)
        if not lab.reference:
            raise LabError("not the reference layout")
    except (OSError, ValueError, KeyError, LabError):
        print("no reference lab running: bringing one up for this run", flush=True)
        lab, ours = Lab(reference=True), True
        lab.up()
    try:
        lab.restore()
        with tempfile.TemporaryDirectory(prefix="ocl-bench-") as scratch:
            asyncio.run(run(lab, args.targets, args.load, Path(scratch), args.verbose))
    finally:
        if ours:
            lab.down()
    return 0


if __name__ == "__main__":
    sys.exit(main())
