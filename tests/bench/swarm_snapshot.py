"""Benchmark: one console snapshot against the docker CLI drawing the same picture.

    sudo python tests/bench/swarm_snapshot.py [--runs N]

Uses the lab if one is up (`python -m tests.lab.swarm_lab up`), else brings
one up for the run and takes it down after. Both sides talk to the same
manager socket (vm-01). The console: `cluster.snapshot()` of a session opened
on the lab's inventory. The CLI: `docker node ls`, `docker service ls` and
`docker node ps <node>` for every node, one process each, as a script would.

Wall times are medians of N runs, measured straight on the socket. Requests
are counted by running each side once more through a small counting proxy (a
unix socket that forwards to the real one and counts HTTP request lines), so
both counts come from the same, independent method. The console's one-time
API version negotiation (GET /version when it connects) and its event stream
are not part of a refresh and are left out; the CLI pays its negotiation
(HEAD /_ping) in every process, so it is counted.
"""
from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run as a file from anywhere

from opsconsole.config import load
from opsconsole.session import open_session
from tests.lab.swarm_lab import Lab

METHODS = (b"GET ", b"HEAD ", b"POST ", b"PUT ", b"DELETE ")


class CountingProxy:
    """A unix socket that forwards to `upstream` and counts the HTTP requests sent through."""

    def __init__(self, path: Path, upstream: Path) -> None:
        self.path, self.upstream = path, upstream
        self.requests: list[str] = []
        self._lock = threading.Lock()
        self._server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._server.bind(str(path))
        self._server.listen(64)
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def endpoint(self) -> str:
        return f"unix://{self.path}"

    def take(self) -> list[str]:
        """The requests since the last call ("GET /v1.41/nodes"), and start counting afresh."""
        time.sleep(0.05)            # let the pumps finish the last bytes
        with self._lock:
            out, self.requests = self.requests, []
        return out

    def close(self) -> None:
        self._server.close()
        self.path.unlink(missing_ok=True)

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            upstream.connect(str(self.upstream))
            threading.Thread(target=self._requests, args=(client, upstream), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client), daemon=True).start()

    def _requests(self, src: socket.socket, dst: socket.socket) -> None:
        """Client to daemon: forward every byte; count each request by its head."""
        buf = b""
        body_left = 0
        while True:
            data = src.recv(65536)
            if not data:
                break
            dst.sendall(data)
            buf += data
            while True:
                if body_left:               # skip a request body (POST/PUT)
                    skip = min(body_left, len(buf))
                    buf, body_left = buf[skip:], body_left - skip
                    if body_left:
                        break
                head, sep, rest = buf.partition(b"\r\n\r\n")
                if not sep:
                    break
                line = head.split(b"\r\n", 1)[0]
                if line.startswith(METHODS):
                    with self._lock:
                        self.requests.append(line.rsplit(b" ", 1)[0].decode())
                for h in head.split(b"\r\n")[1:]:
                    if h.lower().startswith(b"content-length:"):
                        body_left = int(h.split(b":", 1)[1])
                buf = rest
        _shut(dst)

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        while True:
            try:
                data = src.recv(65536)
            except OSError:
                break
            if not data:
                break
            try:
                dst.sendall(data)
            except OSError:
                break
        _shut(dst)


def _shut(s: socket.socket) -> None:
    try:
        s.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    s.close()


def docker_cli() -> str:
    """Debian's CLI (docker.io, the daemon's own version) when installed, else the one on PATH."""
    debian = "/usr/bin/docker"
    return debian if os.access(debian, os.X_OK) else shutil.which("docker") or ""


def cli_picture(cli: str, endpoint: str, nodes: list[str], config: str) -> None:
    env = {**os.environ, "DOCKER_HOST": endpoint, "DOCKER_CONFIG": config,
           "DOCKER_CLI_HINTS": "false"}
    env.pop("DOCKER_CONTEXT", None)
    for args in (["node", "ls"], ["service", "ls"], *(["node", "ps", n] for n in nodes)):
        subprocess.run([cli, *args], env=env, check=True, stdout=subprocess.DEVNULL)


async def open_console(inventory):
    """A session as the console opens one, connected and with its event stream open."""
    session = open_session(inventory)
    try:
        cluster, swarm = session.cluster, session.providers.swarm
        snap = await cluster.snapshot()               # connects: negotiation + first refresh
        await asyncio.sleep(0.5)                      # the event stream is open by now
        return session, cluster, swarm, snap
    except BaseException:
        await session.providers.close()
        raise


def median_time(fn, runs: int) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


async def bench(lab: Lab, runs: int, scratch: Path) -> None:
    """`scratch`: a private directory for the console's records, the CLI's config, the proxy."""
    # the Swarm side only, as the CLI draws it: no HAProxy, WinRM or SSH in this refresh
    inventory = dataclasses.replace(load(lab.inventory_path), state_dir=scratch / "state",
                                    proxy=None, winrm=False, ssh=None)
    manager = lab.vm("vm-01")
    cli = docker_cli()
    version = subprocess.run([cli, "version", "--format", "{{.Client.Version}}"],
                             capture_output=True, text=True,
                             env={**os.environ, "DOCKER_HOST": manager.socket}).stdout.strip()
    config = str(scratch / "docker-config")

    # -- wall time, straight on the manager's socket
    session, cluster, swarm, snap = await open_console(inventory)
    assert snap.endpoint == manager.socket and not snap.problems, snap.problems
    nodes = sorted(n.hostname for n in snap.nodes)
    for _ in range(3):                                # warm up both paths
        await swarm.read()
        await cluster.snapshot()
    timed: dict[str, tuple[list[float], set[int]]] = {}
    for name, call in (("read", swarm.read), ("snapshot", cluster.snapshot)):
        times, counts = [], set()
        for _ in range(runs):
            before = swarm.requests_sent
            t0 = time.perf_counter()
            await call()
            times.append(time.perf_counter() - t0)
            counts.add(swarm.requests_sent - before)
        timed[name] = (times, counts)
    await session.providers.close()
    read_s, snapshot_s = (statistics.median(timed[k][0]) for k in ("read", "snapshot"))
    cli_picture(cli, manager.socket, nodes, config)   # warm the page cache for the binary
    cli_s = median_time(lambda: cli_picture(cli, manager.socket, nodes, config), runs)

    # -- requests, counted by the proxy for both
    proxy = CountingProxy(scratch / "count.sock", manager.sock)
    try:
        counted = dataclasses.replace(
            inventory, swarm=dataclasses.replace(inventory.swarm, endpoints=(proxy.endpoint,)))
        session, cluster, swarm, _ = await open_console(counted)
        setup = proxy.take()
        await swarm.read()
        read_reqs = proxy.take()
        await cluster.snapshot()
        snapshot_reqs = proxy.take()
        await session.providers.close()
        cli_picture(cli, proxy.endpoint, nodes, config)
        cli_reqs = proxy.take()
    finally:
        proxy.close()

    def kinds(reqs: list[str]) -> str:
        return ", ".join(f"{n} x {k}" if n > 1 else k
                         for k, n in Counter(_shape(r) for r in reqs).most_common())
    print(f"lab: {len(snap.nodes)} nodes, {len(snap.services)} services, {len(snap.tasks)} tasks;"
          f" manager socket {manager.socket}")
    print(f"docker CLI: {cli} (client {version}); {len(nodes) + 2} commands: node ls, service ls,"
          f" node ps <node> x {len(nodes)}")
    print(f"wall time: median of {runs} runs\n")
    print(f"{'':34}{'wall time':>12}{'API requests':>15}")
    for what, secs, reqs in (("console swarm read()", read_s, read_reqs),
                             ("console refresh cluster.snapshot()", snapshot_s, snapshot_reqs),
                             ("docker CLI, same picture", cli_s, cli_reqs)):
        print(f"{what:34}{secs * 1000:9.1f} ms{len(reqs):>15}")
    print(f"{'ratio CLI / console refresh':34}{cli_s / snapshot_s:10.1f} x"
          f"{len(cli_reqs) / len(snapshot_reqs):>14.1f} x")
    print(f"\nconsole swarm read(): {kinds(read_reqs)}")
    print(f"console refresh: {kinds(snapshot_reqs)} (GET /swarm: the operation lock)")
    print(f"  CountingClient agrees: read() {sorted(timed['read'][1])}, "
          f"refresh {sorted(timed['snapshot'][1])} per call")
    setup = [r for r in setup if "/version" in r or "/events" in r]
    print(f"console, once per connection, not in a refresh: {kinds(setup)}"
          " (snapshot client and event stream)")
    print(f"docker CLI: {kinds(cli_reqs)}")


def _shape(request: str) -> str:
    """'GET /v1.41/nodes/abc?x' -> 'GET /nodes/{id}': requests grouped by kind."""
    method, path = request.split(" ", 1)
    parts = path.split("?")[0].split("/")[1:]
    if parts and parts[0].startswith("v1."):
        parts = parts[1:]
    return f"{method} /" + "/".join(p if i == 0 else "{id}" for i, p in enumerate(parts))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=9)
    args = ap.parse_args()
    lab = Lab()
    ours = not _lab_is_up(lab)
    if ours:
        print("no lab running: bringing one up for this run", flush=True)
        lab.up()
    try:
        lab.wait_converged()
        with tempfile.TemporaryDirectory(prefix="ocl-bench-") as scratch:
            asyncio.run(bench(lab, args.runs, Path(scratch)))
    finally:
        if ours:
            lab.down()
    return 0


def _lab_is_up(lab: Lab) -> bool:
    if not lab.inventory_path.exists():
        return False
    try:
        with lab.client("vm-01", timeout=5) as c:
            return bool(c.info()["Swarm"].get("ControlAvailable"))
    except Exception:  # noqa: BLE001 - no lab, or a broken one: bring up a fresh one
        return False


if __name__ == "__main__":
    sys.exit(main())
