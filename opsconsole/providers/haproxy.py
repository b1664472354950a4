"""HAProxy through its runtime API (the stats socket), natively async.

One command per connection, as HAProxy's non-interactive mode expects; the
three reads of a snapshot (`show stat`, `show servers state`, `show sess`)
go out concurrently. The parsers are pure functions, tested on captured
output, and reject broken or truncated answers with a clear error.

A server the console set to drain or maint is remembered: if HAProxy comes
back without that state (a reload without a server-state file), the state is
put back and the snapshot says so.
"""
from __future__ import annotations

import asyncio
import csv
import hashlib
import re
import time
from dataclasses import replace

from ..model import Backend, ProxyServer, ProxySession
from .base import ProviderError

# srv_admin_state bits (HAProxy's SRV_ADMF_*): maintenance of any origin, drain.
ADMIN_MAINT = 0x01 | 0x02 | 0x04 | 0x20 | 0x40
ADMIN_DRAIN = 0x08 | 0x10
STATES = ("ready", "drain", "maint")
NEEDED_STAT = ("pxname", "svname", "scur", "stot", "status", "weight")


def parse_stat(text: str) -> tuple[list[Backend], list[ProxyServer]]:
    """`show stat` CSV: backends and their servers (frontends are left out)."""
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if not lines or not lines[0].startswith("# "):
        raise ProviderError(f"show stat: unexpected answer: {text.strip()[:120]!r}")
    header = lines[0][2:].split(",")
    missing = [c for c in NEEDED_STAT if c not in header]
    if missing:
        raise ProviderError(f"show stat: header lacks {', '.join(missing)}")
    backends, servers = [], []
    for n, row in enumerate(csv.reader(lines[1:]), start=2):
        if len(row) < len(header) - 1:    # HAProxy ends each row with a comma
            raise ProviderError(f"show stat: truncated answer at line {n}")
        rec = dict(zip(header, row))
        name, kind = rec["pxname"], rec["svname"]
        if kind == "FRONTEND":
            continue
        if kind == "BACKEND":
            backends.append(Backend(name, status=rec["status"]))
            continue
        try:
            servers.append(ProxyServer(
                backend=name, name=kind, status=rec["status"], weight=int(rec["weight"] or 0),
                cur_sessions=int(rec["scur"] or 0), total_sessions=int(rec["stot"] or 0),
                address=rec.get("addr", ""), check_status=rec.get("check_status", "")))
        except ValueError as e:
            raise ProviderError(f"show stat: bad number at line {n}: {e}") from None
    return backends, servers


def parse_servers_state(text: str) -> dict[tuple[str, str], str]:
    """`show servers state`: (backend, server) -> ready | drain | maint."""
    lines = text.splitlines()
    if not lines or lines[0].strip() != "1":
        raise ProviderError(f"show servers state: unknown format {text.strip()[:60]!r}")
    header = lines[1][2:].split() if len(lines) > 1 and lines[1].startswith("# ") else []
    try:
        be, srv, admin = (header.index(c) for c in ("be_name", "srv_name", "srv_admin_state"))
    except ValueError:
        raise ProviderError("show servers state: header missing") from None
    out = {}
    for n, line in enumerate(lines[2:], start=3):
        fields = line.split()
        if not fields:
            continue
        if len(fields) <= max(be, srv, admin):
            raise ProviderError(f"show servers state: truncated answer at line {n}")
        try:
            bits = int(fields[admin])
        except ValueError:
            raise ProviderError(f"show servers state: bad admin state at line {n}") from None
        out[(fields[be], fields[srv])] = \
            "maint" if bits & ADMIN_MAINT else "drain" if bits & ADMIN_DRAIN else "ready"
    return out


SESS = re.compile(r"^(0x[0-9a-f]+): (.*)$")


def parse_sess(text: str, now: float) -> list[ProxySession]:
    """`show sess`: the streams bound to a server (the CLI's own are skipped)."""
    out = []
    for line in text.splitlines():
        m = SESS.match(line.strip())
        if not m:
            continue
        fields = dict(f.split("=", 1) for f in m.group(2).split() if "=" in f)
        be, srv = fields.get("be", ""), fields.get("srv", "")
        if not be or be.startswith("<") or not srv or srv.startswith("<"):
            continue
        out.append(ProxySession(m.group(1), be, srv, started_at=now - _seconds(
            fields.get("age", "0s")), client=fields.get("src", "")))
    return out


TABLE = re.compile(r"^# table: ([^,]+), type: ([^,]+), size:(\d+), used:(\d+)")
ENTRY = re.compile(r"^(0x[0-9a-f]+): (.*)$")


def parse_tables(text: str) -> list[str]:
    """`show table`: the names of the stick tables."""
    return [m.group(1) for m in map(TABLE.match, text.splitlines()) if m]


def parse_table(text: str, backend: str, now: float) -> list[ProxySession]:
    """`show table NAME`: one user session per entry that names its server.

    The key is the user's session cookie: it is hashed, never shown.
    """
    lines = text.splitlines()
    if not lines or not TABLE.match(lines[0]):
        raise ProviderError(f"show table {backend}: unexpected answer {text.strip()[:80]!r}")
    out = []
    for line in lines[1:]:
        m = ENTRY.match(line.strip())
        if not m:
            continue
        fields = dict(f.split("=", 1) for f in m.group(2).split() if "=" in f)
        server = fields.get("server_key") or fields.get("server_name")
        if not server or "key" not in fields:
            continue
        digest = hashlib.sha256(fields["key"].encode()).hexdigest()[:12]
        out.append(ProxySession(f"{backend}:{digest}", backend, server, started_at=now,
                                client=f"sticky session {digest}"))
    return out


def _seconds(age: str) -> float:
    """HAProxy ages: 12s, 3m4s, 1h2m, 2d3h ..."""
    units = {"d": 86400, "h": 3600, "m": 60, "s": 1}
    return float(sum(int(n) * units[u] for n, u in re.findall(r"(\d+)([dhms])", age)))


class HAProxy:
    """The Proxy provider for a real HAProxy."""

    def __init__(self, socket: str, timeout: float = 5.0) -> None:
        self.socket, self.timeout = socket, timeout
        self.held: dict[tuple[str, str], str] = {}    # what the console set, until ready
        self.notices: list[str] = []
        self._first_seen: dict[str, float] = {}       # session id -> start (ages jitter)
        self._level: tuple[float, str] | None = None  # (when asked, read-only reason)

    async def command(self, cmd: str) -> str:
        """Send one command, read the whole answer; errors say what went wrong."""
        try:
            if self.socket.startswith("unix://"):
                conn = asyncio.open_unix_connection(self.socket[len("unix://"):])
            else:
                host, port = self.socket[len("tcp://"):].rsplit(":", 1)
                conn = asyncio.open_connection(host, int(port))
            reader, writer = await asyncio.wait_for(conn, self.timeout)
        except FileNotFoundError:
            raise ProviderError(f"{self.socket}: socket does not exist "
                                "(HAProxy down or reloading?)") from None
        except (ConnectionRefusedError, ConnectionResetError):
            raise ProviderError(f"{self.socket}: refuses connections "
                                "(HAProxy down or reloading?)") from None
        except asyncio.TimeoutError:
            raise ProviderError(f"{self.socket}: no answer within {self.timeout:g}s") from None
        except OSError as e:
            raise ProviderError(f"{self.socket}: {e.strerror or e}") from None
        try:
            writer.write(cmd.encode() + b"\n")
            await writer.drain()
            data = await asyncio.wait_for(reader.read(), self.timeout)
        except asyncio.TimeoutError:
            raise ProviderError(f"{self.socket}: `{cmd}` got no answer within "
                                f"{self.timeout:g}s") from None
        except (ConnectionResetError, BrokenPipeError):
            raise ProviderError(f"{self.socket}: connection dropped during `{cmd}`") from None
        finally:
            writer.close()
        return data.decode(errors="replace")

    async def read(self) -> tuple[list[Backend], list[ProxyServer], list[ProxySession]]:
        """Servers with their admin state, and sessions.

        Where a backend keeps a stick table (persistence on a session cookie),
        its sessions are the table's entries: real user sessions, which
        outlive connections. Elsewhere they are HAProxy's live streams.
        """
        stat, state, sess, tables = await asyncio.gather(
            self.command("show stat"), self.command("show servers state"),
            self.command("show sess"), self.command("show table"))
        backends, servers = parse_stat(stat)
        admin = parse_servers_state(state)
        await self._reapply(admin)
        now = time.time()
        sticky = [t for t in parse_tables(tables) if t in {b.name for b in backends}]
        answers = await asyncio.gather(*(self.command(f"show table {t}") for t in sticky))
        sessions = [s for s in parse_sess(sess, now) if s.backend not in sticky]
        for name, text in zip(sticky, answers):
            sessions += parse_table(text, name, now)
        counts: dict[tuple[str, str], int] = {}
        for s in sessions:
            counts[(s.backend, s.server)] = counts.get((s.backend, s.server), 0) + 1
        servers = [replace(s, admin=admin.get((s.backend, s.name), "ready"),
                           cur_sessions=counts.get((s.backend, s.name), 0)
                           if s.backend in sticky else s.cur_sessions) for s in servers]
        return backends, servers, self._stable(sessions)

    def _stable(self, sessions: list[ProxySession]) -> list[ProxySession]:
        """Keep each session's first-seen start, so an unchanged session compares equal."""
        seen = {s.session_id: self._first_seen.get(s.session_id, s.started_at) for s in sessions}
        self._first_seen = seen
        return [ProxySession(s.session_id, s.backend, s.server, started_at=round(seen[
            s.session_id]), client=s.client) for s in sessions]

    async def _reapply(self, admin: dict[tuple[str, str], str]) -> None:
        """A state the console holds but HAProxy lost (a reload) is set again."""
        self.notices = []
        for (backend, server), state in list(self.held.items()):
            if admin.get((backend, server), state) != state:
                await self._set(backend, server, state)
                admin[(backend, server)] = state
                self.notices.append(f"re-applied {state} to {backend}/{server} "
                                    "(HAProxy lost it: reloaded?)")

    async def _set(self, backend: str, server: str, state: str) -> None:
        answer = (await self.command(f"set server {backend}/{server} state {state}")).strip()
        if answer:     # HAProxy answers nothing on success
            raise ProviderError(f"{self.socket}: set {backend}/{server} {state}: {answer}")

    async def set_server_state(self, backend: str, server: str, state: str) -> None:
        if state not in STATES:
            raise ProviderError(f"unknown server state {state!r} (one of {', '.join(STATES)})")
        for name in (backend, server):   # these go into a command line
            if not re.fullmatch(r"[A-Za-z0-9._:-]+", name):
                raise ProviderError(f"refusing proxy name {name!r}: not a plain HAProxy name")
        await self._set(backend, server, state)
        if state == "ready":
            self.held.pop((backend, server), None)
        else:
            self.held[(backend, server)] = state

    async def read_only_reason(self) -> str:
        """Asked once a minute: the socket's level rarely changes."""
        if self._level is None or time.monotonic() - self._level[0] > 60:
            self._level = (time.monotonic(), await self._ask_level())
        return self._level[1]

    async def _ask_level(self) -> str:
        level = (await self.command("show cli level")).strip()
        if level == "admin":
            return ""
        if level in ("operator", "user"):
            return (f"HAProxy socket {self.socket} is at {level} level: the console can watch "
                    "but not change the proxy (needs `level admin`)")
        return ""   # older HAProxy without `show cli level`: writes will say if refused
