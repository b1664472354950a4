"""Benchmark: the console's real Swarm provider and its Textual app at 1,000 / 5,000 nodes.

    python tests/bench/scale.py --nodes 1000 [--json] [--cli-sample 50]

A Docker Engine API stand-in (tests/bench/dockerapi.py) serves a simulated swarm of N
nodes on a unix socket, in its own process: its CPU and memory are not the console's, and
its answers are encoded once (1 % of the tasks change between refreshes, re-encoded alone).
Hyper-V and HAProxy answer from fixed lists of the same simulated world (no sim runs in
this process). Measured, in one run:

- start_s: the app starting (headless, Pilot) to the first tree drawn
- refresh_ms: one refresh with 1 % of the tasks changed: the provider's read and the join
  (read_ms), then the picture applied to the widgets (apply_ms)
- filter_ms: a filter keystroke to its result drawn (median of the keystrokes of a word)
- idle_cpu_pct / churn_cpu_pct: this process's CPU over `--idle-s` seconds, polling at the
  console's 2 s, with no change / 1 % of the tasks changing every second
- rss_mib: this process's resident memory at the end
- console_s: the provider's refresh (median); cli_s: the docker CLI drawing the same
  picture (`node ls`, `service ls`, `node ps <node>` for every node, one process each, as a
  script would); with `--cli-sample K` the `node ps` of K nodes spread over the cluster is
  timed and scaled to all of them (said in the output).
"""
from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import pickle
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))     # run as a file from anywhere

from opsconsole.providers.base import Providers  # noqa: E402
from opsconsole.providers.static import StaticHypervisor  # noqa: E402
from opsconsole.providers.swarm import DockerSwarm  # noqa: E402


class UnixHTTP(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("localhost")
        self.path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(self.path)


class StandIn:
    """The stand-in in its own process, and its bench controls."""

    def __init__(self, sock: Path, nodes: int) -> None:
        self.sock, self.parts = sock, sock.with_name("parts.pickle")
        self.proc = subprocess.Popen(
            [sys.executable, str(ROOT / "tests/bench/dockerapi.py"), "--socket", str(sock),
             "--nodes", str(nodes), "--parts", str(self.parts)], stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": str(ROOT)})
        line = self.proc.stdout.readline() if self.proc.stdout else ""
        if not line.startswith("ready"):
            self.proc.kill()
            raise SystemExit(f"the Docker API stand-in did not start: {line!r}")
        self.ready = line.strip()

    @property
    def endpoint(self) -> str:
        return f"unix://{self.sock}"

    def post(self, path: str) -> dict:
        conn = UnixHTTP(str(self.sock))
        try:
            conn.request("POST", path)
            return json.loads(conn.getresponse().read())
        finally:
            conn.close()

    def churn(self, fraction: float) -> int:
        return int(self.post(f"/_bench/churn?fraction={fraction}")["changed"])

    def rate(self, per_s: float) -> None:
        self.post(f"/_bench/rate?per_s={per_s}")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


class FixedProxy:
    """HAProxy's answers, fixed: the sessions and servers of the simulated world."""

    notices: tuple[str, ...] = ()

    def __init__(self, backends: list, servers: list, sessions: list) -> None:
        self.answer = (backends, servers, sessions)

    async def read(self):
        return tuple(list(x) for x in self.answer)

    async def read_only_reason(self) -> str:
        return ""

    async def set_server_state(self, backend: str, server: str, state: str) -> None:
        raise RuntimeError("the bench changes nothing")


def fixed_parts(stand: StandIn) -> tuple[StaticHypervisor, FixedProxy]:
    """Hosts, VMs and the proxy of the world the stand-in serves (built there: no sim runs
    in this process, and its memory is not counted as the console's)."""
    hosts, vms, backends, servers, sessions = pickle.loads(stand.parts.read_bytes())
    return StaticHypervisor(hosts, vms), FixedProxy(backends, servers, sessions)


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def cpu_pct(seconds: float) -> float:
    """This process's CPU (every thread) over `seconds` of an event loop left alone."""
    async def measure() -> float:
        c0, t0 = time.process_time(), time.perf_counter()
        await asyncio.sleep(seconds)
        return 100 * (time.process_time() - c0) / (time.perf_counter() - t0)
    return measure()        # type: ignore[return-value]


async def provider_figures(stand: StandIn, runs: int) -> dict:
    swarm = DockerSwarm(endpoints=(stand.endpoint,), timeout=60)
    try:
        t0 = time.perf_counter()
        nodes, services, tasks = await swarm.read()
        first = time.perf_counter() - t0
        times = []
        for _ in range(runs):
            stand.churn(0.01)
            t0 = time.perf_counter()
            await swarm.read()
            times.append(time.perf_counter() - t0)
        return {"nodes": len(nodes), "services": len(services), "tasks": len(tasks),
                "hostnames": sorted(n.hostname for n in nodes), "first_read_s": first,
                "console_s": statistics.median(times)}
    finally:
        await swarm.close()


def cli_figures(stand: StandIn, hostnames: list[str], sample: int, scratch: Path) -> dict:
    cli = shutil.which("docker")
    if not cli:
        return {"cli_s": None, "cli_note": "no docker CLI on PATH"}
    env = {**os.environ, "DOCKER_HOST": stand.endpoint, "DOCKER_CONFIG": str(scratch),
           "DOCKER_CLI_HINTS": "false"}
    env.pop("DOCKER_CONTEXT", None)

    def run(*args: str) -> float:
        t0 = time.perf_counter()
        subprocess.run([cli, *args], env=env, check=True, stdout=subprocess.DEVNULL)
        return time.perf_counter() - t0

    run("node", "ls")                                   # warm the page cache
    lists = run("node", "ls") + run("service", "ls")
    picked = hostnames if not sample or sample >= len(hostnames) else \
        hostnames[:: max(1, len(hostnames) // sample)][:sample]
    ps = sum(run("node", "ps", h) for h in picked)
    total = lists + ps * len(hostnames) / len(picked)
    note = "every node" if len(picked) == len(hostnames) else \
        f"node ps timed on {len(picked)} of {len(hostnames)} nodes, scaled"
    return {"cli_s": total, "cli_node_ps_s": ps / len(picked), "cli_note": note}


async def app_figures(stand: StandIn, nodes: int, idle_s: float, scratch: Path) -> dict:
    os.environ["XDG_STATE_HOME"] = str(scratch / "state")    # records of this run only
    from opsconsole.session import open_session
    from opsconsole.ui.app import OpsConsole
    from opsconsole.ui.tree import ClusterTree

    hypervisor, proxy = fixed_parts(stand)
    swarm = DockerSwarm(endpoints=(stand.endpoint,), timeout=60)
    session = open_session(providers=Providers(swarm, hypervisor, proxy, None, close=swarm.close))
    reads: list[float] = []
    applies: list[float] = []
    cluster = session.cluster
    snapshot = cluster.snapshot

    async def timed_snapshot(*a, **kw):
        t0 = time.perf_counter()
        try:
            return await snapshot(*a, **kw)
        finally:
            reads.append(time.perf_counter() - t0)
    cluster.snapshot = timed_snapshot       # type: ignore[method-assign]

    app = OpsConsole(session)               # polls every 2 s, as the console does
    out: dict = {}
    t0 = time.perf_counter()
    async with app.run_test(size=(160, 50)) as pilot:
        while not app.snapshot.nodes:
            await pilot.pause(0.02)
        await pilot.pause()
        out["start_s"] = time.perf_counter() - t0
        tree = app.query_one(ClusterTree)
        show = tree.show

        def timed_show(snap):
            t = time.perf_counter()
            show(snap)
            applies.append(time.perf_counter() - t)
        tree.show = timed_show              # type: ignore[method-assign]

        # a refresh with 1 % of the tasks changed, applied
        for _ in range(3):
            count = len(applies)
            stand.churn(0.01)
            while len(applies) == count:
                await pilot.pause(0.02)
        out["read_ms"] = 1000 * statistics.median(reads[-3:])
        out["apply_ms"] = 1000 * statistics.median(applies[-3:])
        out["refresh_ms"] = out["read_ms"] + out["apply_ms"]

        # filter: each keystroke to its result drawn
        await pilot.press("slash")
        keys = []
        for ch in "vm-0500"[: 7 if nodes >= 1000 else 5]:
            t = time.perf_counter()
            await pilot.press(ch)
            await pilot.pause()
            keys.append(time.perf_counter() - t)
        out["filter_ms"] = 1000 * statistics.median(keys)
        out["filter_max_ms"] = 1000 * max(keys)
        t = time.perf_counter()
        await pilot.press("escape")
        await pilot.pause()
        out["filter_clear_ms"] = 1000 * (time.perf_counter() - t)

        await asyncio.sleep(3)              # settle: the last refresh has landed
        out["idle_cpu_pct"] = await cpu_pct(idle_s)
        stand.rate(0.01)
        out["churn_cpu_pct"] = await cpu_pct(idle_s)
        stand.rate(0)
        out["rss_mib"] = rss_mib()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--nodes", type=int, default=1000)
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--runs", type=int, default=5, help="provider refreshes timed")
    ap.add_argument("--idle-s", type=float, default=10.0, help="seconds per CPU figure")
    ap.add_argument("--cli-sample", type=int, default=50,
                    help="nodes whose `docker node ps` is timed (0: every node)")
    args = ap.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="ocl-scale-"))
    stand = StandIn(scratch / "docker.sock", args.nodes)
    try:
        prov = asyncio.run(provider_figures(stand, args.runs))
        cli = cli_figures(stand, prov["hostnames"], args.cli_sample, scratch / "docker-config")
        ui = asyncio.run(app_figures(stand, args.nodes, args.idle_s, scratch))
    finally:
        stand.stop()
        shutil.rmtree(scratch, ignore_errors=True)
    result = {"nodes": prov["nodes"], "tasks": prov["tasks"], **ui,
              "console_s": prov["console_s"], "first_read_s": prov["first_read_s"], **cli}
    if cli.get("cli_s"):
        result["ratio"] = cli["cli_s"] / prov["console_s"]
    if args.json:
        print(json.dumps({k: round(v, 4) if isinstance(v, float) else v
                          for k, v in result.items()}))
        return
    r = result
    print(f"{r['nodes']} nodes, {r['tasks']} tasks ({stand.ready.split(' ', 1)[1]})")
    print(f"start to a usable tree           {r['start_s']:8.2f} s")
    print(f"refresh, 1 % of tasks changed    {r['refresh_ms']:8.0f} ms  "
          f"(read+join {r['read_ms']:.0f}, applied {r['apply_ms']:.0f})")
    print(f"filter result after a keystroke  {r['filter_ms']:8.0f} ms  "
          f"(max {r['filter_max_ms']:.0f}; esc {r['filter_clear_ms']:.0f})")
    print(f"idle CPU, no changes             {r['idle_cpu_pct']:8.1f} %")
    print(f"idle CPU, 1 %/s changing         {r['churn_cpu_pct']:8.1f} %")
    print(f"RSS                              {r['rss_mib']:8.0f} MiB")
    print(f"provider refresh (console_s)     {r['console_s']:8.3f} s  "
          f"(first read {r['first_read_s']:.3f} s)")
    if r.get("cli_s"):
        print(f"docker CLI, same picture (cli_s) {r['cli_s']:8.2f} s  ({r['cli_note']})")
        print(f"ratio cli/console                {r['ratio']:8.1f} x")
    else:
        print(f"docker CLI: {r.get('cli_note')}")


if __name__ == "__main__":
    main()
