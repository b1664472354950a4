"""Virtual users through HAProxy: the lab's load generator (test infrastructure).

    python -m tests.lab.load --url http://127.0.0.1:PORT/ [--users 24] [--duration 60]
                             [--max-users 5000] [--report load.json]

Each virtual user has its own session cookie (SESSIONID) and one keep-alive
connection; it sends GET / every 0.15-0.35 s for 2-4 s, keeping the cookies
HAProxy sets (SRV), then leaves. New users keep arriving so that about
`users` are there at any moment, until `duration` is over or `max_users`
have come (SIGTERM or SIGINT: no more arrivals); the users there finish their
visit, each bounded in time, and it stops by itself.

Every answer names the VM that served it (the portal service's page is its
hostname). The report counts requests sent, requests failed (no answer, an
error, a timeout, anything but 200 with a VM's name; per user, when), and sessions that had to
move: users whose answers came from another VM than their first. A request
that finds its reused keep-alive connection closed before any byte of an
answer is sent again once on a new connection, as browsers do, and counted
as `retried`. Per user it keeps when it came, its first request, when it left
and the VMs that served it, so a test can check who went where, when.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")


class _Stale(Exception):
    """A reused connection closed before any byte of the answer."""


@dataclass
class User:
    uid: int
    arrived: float                  # wall-clock times (time.time())
    first_at: float = 0.0           # when its first request was sent
    left: float = 0.0
    servers: list[str] = field(default_factory=list)   # the VMs that served it, in order
    requests: int = 0
    failed: int = 0
    retried: int = 0
    failed_at: list[float] = field(default_factory=list)    # when each failure happened

    @property
    def first(self) -> str:
        return self.servers[0] if self.servers else ""

    @property
    def moved(self) -> bool:
        return len(set(self.servers)) > 1

    def row(self) -> list:
        return [self.uid, round(self.arrived, 3), round(self.first_at, 3), round(self.left, 3),
                list(dict.fromkeys(self.servers)), self.requests, self.failed, self.retried,
                [round(t, 3) for t in self.failed_at]]


class Load:
    def __init__(self, url: str, users: int = 24, duration: float = 60.0, max_users: int = 5000,
                 lifetime: tuple[float, float] = (2.0, 4.0),
                 think: tuple[float, float] = (0.15, 0.35), timeout: float = 5.0,
                 seed: int = 1) -> None:
        parts = urlsplit(url)
        self.host, self.port, self.path = parts.hostname or "127.0.0.1", parts.port or 80, \
            parts.path or "/"
        self.url, self.users, self.duration, self.max_users = url, users, duration, max_users
        self.lifetime, self.think, self.timeout = lifetime, think, timeout
        self.rng = random.Random(seed)
        self.done: list[User] = []
        self.errors: list[str] = []
        self.stopping = False
        self.started = self.ended = 0.0

    def stop(self) -> None:
        self.stopping = True

    # -- one user -----------------------------------------------------------------------
    async def _request(self, conn, cookies: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        reader, writer = conn
        cookie = "; ".join(f"{k}={v}" for k, v in cookies.items())
        writer.write(f"GET {self.path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
                     f"Cookie: {cookie}\r\nUser-Agent: opsconsole-lab-load\r\n\r\n".encode())
        await writer.drain()
        status_line = await reader.readline()
        if not status_line:
            raise _Stale()
        status = int(status_line.split()[1])
        headers: dict[str, str] = {}
        cookies_set: list[str] = []
        while (line := (await reader.readline()).decode("latin-1").rstrip("\r\n")):
            k, _, v = line.partition(":")
            if k.lower() == "set-cookie":
                cookies_set.append(v.strip())
            headers[k.lower()] = v.strip()
        if "content-length" in headers:
            body = await reader.readexactly(int(headers["content-length"]))
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            body = b""
            while (size := int((await reader.readline()).split(b";")[0], 16)):
                body += await reader.readexactly(size)
                await reader.readline()
            await reader.readline()
        else:
            body = await reader.read()
            headers["connection"] = "close"
        for c in cookies_set:
            k, _, v = c.split(";")[0].partition("=")
            cookies[k.strip()] = v.strip()
        return status, headers, body

    async def _connect(self):
        return await asyncio.wait_for(asyncio.open_connection(self.host, self.port), self.timeout)

    async def _user(self, user: User) -> None:
        rng = random.Random(user.uid)
        cookies = {"SESSIONID": f"u{user.uid}-{rng.getrandbits(48):012x}"}
        end = time.monotonic() + rng.uniform(*self.lifetime)
        conn = None
        reused = False
        try:
            while time.monotonic() < end:
                if conn is None:
                    try:
                        conn, reused = await self._connect(), False
                    except (TimeoutError, OSError) as e:
                        self._fail(user, f"connect: {e!r}")
                        await asyncio.sleep(rng.uniform(*self.think))
                        continue
                user.requests += 1
                if not user.first_at:
                    user.first_at = time.time()
                try:
                    try:
                        status, headers, body = await asyncio.wait_for(
                            self._request(conn, cookies), self.timeout)
                    except (_Stale, ConnectionResetError, BrokenPipeError):
                        if not reused:
                            raise
                        user.retried += 1          # a closed keep-alive connection: once more
                        conn[1].close()
                        conn = await self._connect()
                        status, headers, body = await asyncio.wait_for(
                            self._request(conn, cookies), self.timeout)
                except (TimeoutError, _Stale, OSError, asyncio.IncompleteReadError, ValueError, IndexError) as e:
                    self._fail(user, f"request: {type(e).__name__} {e}".strip())
                    if conn:
                        conn[1].close()
                    conn = None
                    continue
                served = body.decode(errors="replace").strip()
                if status != 200 or not NAME.match(served):
                    self._fail(user, f"HTTP {status}: {served[:60]!r}")
                else:
                    user.servers.append(served)
                if headers.get("connection", "").lower() == "close":
                    conn[1].close()
                    conn = None
                reused = True
                await asyncio.sleep(rng.uniform(*self.think))
        finally:
            if conn:
                conn[1].close()
            user.left = time.time()
            self.done.append(user)

    def _fail(self, user: User, why: str) -> None:
        user.failed += 1
        user.failed_at.append(time.time())
        if len(self.errors) < 50:
            self.errors.append(f"{time.strftime('%H:%M:%S')} user {user.uid}: {why}")

    # -- the run --------------------------------------------------------------------------
    async def run(self) -> dict:
        self.started = time.time()
        t_end = time.monotonic() + self.duration
        gap = (sum(self.lifetime) / 2) / self.users      # arrivals that keep ~users there
        tasks: set[asyncio.Task] = set()
        uid = 0
        while time.monotonic() < t_end and uid < self.max_users and not self.stopping:
            if len(tasks) < self.users:
                uid += 1
                task = asyncio.create_task(self._user(User(uid, time.time())))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            await asyncio.sleep(self.rng.uniform(0.5, 1.5) * gap)
        if tasks:   # every user is bounded: lifetime, plus a timeout per request
            await asyncio.wait(tasks, timeout=self.lifetime[1] + 3 * self.timeout + 5)
        self.ended = time.time()
        return self.report()

    def report(self) -> dict:
        users = sorted(self.done, key=lambda u: u.uid)
        per_server: dict[str, int] = {}
        for u in users:
            for s in u.servers:
                per_server[s] = per_server.get(s, 0) + 1
        return {"url": self.url, "started": self.started, "ended": self.ended,
                "seconds": round(self.ended - self.started, 1), "users": len(users),
                "requests": sum(u.requests for u in users),
                "failed": sum(u.failed for u in users),
                "retried": sum(u.retried for u in users),
                "moved": sum(1 for u in users if u.moved),
                "per_server": dict(sorted(per_server.items())), "errors": self.errors,
                "columns": ["uid", "arrived", "first_at", "left", "servers", "requests",
                            "failed", "retried", "failed_at"],
                "detail": [u.row() for u in users]}


def summary(report: dict) -> str:
    return (f"{report['requests']} requests from {report['users']} users in "
            f"{report['seconds']}s: {report['failed']} failed, {report['moved']} sessions moved, "
            f"{report['retried']} retried; per VM {report['per_server']}")


class LoadRun:
    """The generator as a separate process (its own CPU, no GIL shared with the console).

        with LoadRun(lab.portal_url, tmp_path / "load.json") as load:
            ...                        # the operation under load
        load.report["failed"]          # after the block: stopped and reported
    """

    def __init__(self, url: str, report_path: Path, users: int = 24, duration: float = 600.0,
                 max_users: int = 20000) -> None:
        self.report_path = Path(report_path)
        self.cmd = [sys.executable, "-m", "tests.lab.load", "--url", url, "--users", str(users),
                    "--duration", str(duration), "--max-users", str(max_users),
                    "--report", str(self.report_path)]
        self.duration = duration
        self.proc: subprocess.Popen | None = None
        self.report: dict = {}

    def __enter__(self) -> LoadRun:
        self.report_path.unlink(missing_ok=True)
        self.proc = subprocess.Popen(self.cmd, cwd=Path(__file__).resolve().parents[2],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> dict:
        """No more arrivals; the users there finish; the report (bounded wait)."""
        if self.proc is None:
            return self.report
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            out, _ = self.proc.communicate(timeout=40)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, _ = self.proc.communicate()
        self.proc = None
        if not self.report_path.exists():
            raise RuntimeError(f"the load generator wrote no report: {out[-800:]}")
        self.report = json.loads(self.report_path.read_text())
        return self.report

    def users(self) -> list[dict]:
        cols = self.report["columns"]
        return [dict(zip(cols, row)) for row in self.report["detail"]]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.lab.load", description=__doc__.split("\n\n")[0])
    ap.add_argument("--url", required=True)
    ap.add_argument("--users", type=int, default=24, help="concurrent users (about)")
    ap.add_argument("--duration", type=float, default=60.0, help="seconds of arrivals, at most")
    ap.add_argument("--max-users", type=int, default=5000, help="users in all, at most")
    ap.add_argument("--report", help="write the JSON report here")
    args = ap.parse_args(argv)
    load = Load(args.url, args.users, args.duration, args.max_users)

    async def go() -> dict:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, load.stop)
        return await load.run()
    report = asyncio.run(go())
    if args.report:
        tmp = Path(args.report + ".tmp")
        tmp.write_text(json.dumps(report))
        os.replace(tmp, args.report)
    print(summary(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
