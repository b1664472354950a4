"""HAProxy through its runtime API (the stats socket), natively async.

One command per connection, as HAProxy's non-interactive mode expects; the
reads of a snapshot (`show info`, `show stat`, `show servers state`, `show
sess`, `show table`) go out concurrently, each answer read up to a cap. The
parsers are pure functions, tested on captured output. An answer that is not
what was asked for at all (an error message, no header) is a ProviderError; a
malformed line in a good answer is left out or degraded and reported in
`parse_problems`.

The provider never changes states by itself. It notices when HAProxy was
restarted or reloaded (which forgets runtime `set server state`): `show info`
gives the process id and start time; a new one sets `restarted_at` and a
notice, and whoever set those states (the operation, audited) sets them again.
"""
from __future__ import annotations

import asyncio
import csv
import hashlib
import re
import time
from dataclasses import replace

from ..model import Backend, ProxyServer, ProxySession
from .base import ANSWER_CAP, ProviderError, bounded, read_capped, show

# srv_admin_state bits (HAProxy's SRV_ADMF_*): maintenance of any origin, drain.
ADMIN_MAINT = 0x01 | 0x02 | 0x04 | 0x20 | 0x40
ADMIN_DRAIN = 0x08 | 0x10
STATES = ("ready", "drain", "maint")
NEEDED_STAT = ("pxname", "svname", "scur", "stot", "status", "weight")
RESTART_SLACK = 2.0     # s: a start time computed from Uptime_sec wobbles by a second


def _digits(text: str) -> bool:
    """A plain decimal count of sane size (str.isdigit also takes '²')."""
    return re.fullmatch(r"[0-9]{1,18}", text) is not None


def _bad(problems: list[str] | None, message: str) -> None:
    """A malformed line: collected by the provider; strict callers (no list) get it raised."""
    if problems is None:
        raise ProviderError(message)
    problems.append(message)


def _count(rec: dict[str, str], key: str, problems: list[str] | None, where: str) -> int:
    value = rec.get(key, "")
    if value == "":
        return 0
    if _digits(value):
        return int(value)
    _bad(problems, f"{where}: {key} is {show(value)}, not a number")
    return 0


def parse_stat(text: str, problems: list[str] | None = None
               ) -> tuple[list[Backend], list[ProxyServer]]:
    """`show stat` CSV: backends and their servers (frontends are left out)."""
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if not lines or not lines[0].startswith("# "):
        raise ProviderError(f"show stat: unexpected answer: {text.strip()[:120]!r}")
    header = lines[0][2:].split(",")
    missing = [c for c in NEEDED_STAT if c not in header]
    if missing:
        raise ProviderError(f"show stat: header lacks {', '.join(missing)}")
    backends: dict[str, Backend] = {}
    servers: dict[tuple[str, str], ProxyServer] = {}
    for n, line in enumerate(lines[1:], start=2):
        try:
            row = next(csv.reader([line]))
        except csv.Error as e:
            _bad(problems, f"show stat: line {n} unreadable ({e})")
            continue
        # HAProxy ends the header and each row with a comma: one field more or less is fine
        if not len(header) - 1 <= len(row) <= len(header):
            _bad(problems, f"show stat: truncated answer at line {n}" if len(row) < len(header)
                 else f"show stat: line {n} has {len(row)} fields, the header {len(header)}")
            continue
        rec = dict(zip(header, row, strict=False))   # one field short is fine (above)
        name, kind = rec["pxname"], rec["svname"]
        if not name or not kind:
            _bad(problems, f"show stat: line {n} names no proxy or server")
            continue
        if kind == "FRONTEND":
            continue
        key = name if kind == "BACKEND" else (name, kind)
        if key in backends or key in servers:
            _bad(problems, f"show stat: {name}/{kind} is listed twice (line {n})")
            continue
        if kind == "BACKEND":
            backends[name] = Backend(name, status=rec["status"])
            continue
        where = f"show stat: bad number at line {n}"
        servers[(name, kind)] = ProxyServer(
            backend=name, name=kind, status=rec["status"],
            weight=_count(rec, "weight", problems, where),
            cur_sessions=_count(rec, "scur", problems, where),
            total_sessions=_count(rec, "stot", problems, where),
            address=rec.get("addr", ""), check_status=rec.get("check_status", ""))
    return list(backends.values()), list(servers.values())


def parse_servers_state(text: str, problems: list[str] | None = None
                        ) -> dict[tuple[str, str], str]:
    """`show servers state`: (backend, server) -> ready | drain | maint ("unknown" when
    its line is unreadable)."""
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
            _bad(problems, f"show servers state: truncated answer at line {n}")
            continue
        bits = fields[admin]
        if not _digits(bits):
            _bad(problems, f"show servers state: bad admin state at line {n}: {show(bits)}")
            out[(fields[be], fields[srv])] = "unknown"
            continue
        out[(fields[be], fields[srv])] = "maint" if int(bits) & ADMIN_MAINT else \
            "drain" if int(bits) & ADMIN_DRAIN else "ready"
    return out


SESS = re.compile(r"^(0x[0-9a-f]+): (.*)$")


def _not_understood(what: str, lines: list[str], problems: list[str] | None) -> None:
    """One problem for all the lines of an answer that were not understood."""
    if lines:
        _bad(problems, f"{what}: {len(lines)} line(s) not understood, e.g. {show(lines[0])}")


def parse_sess(text: str, now: float, problems: list[str] | None = None) -> list[ProxySession]:
    """`show sess`: the streams bound to a server (the CLI's own are skipped)."""
    out, odd = [], []
    for line in text.splitlines():
        m = SESS.match(line.strip())
        if not m:
            if line.strip():
                odd.append(line.strip())
            continue
        fields = dict(f.split("=", 1) for f in m.group(2).split() if "=" in f)
        be, srv = fields.get("be", ""), fields.get("srv", "")
        if not be or be.startswith("<") or not srv or srv.startswith("<"):
            continue
        out.append(ProxySession(m.group(1), be, srv, started_at=max(0.0, now - _seconds(
            fields.get("age", "0s"))), client=fields.get("src", "")))
    _not_understood("show sess", odd, problems)
    return out


TABLE = re.compile(r"^# table: ([^,]+), type: ([^,]+), size:(\d+), used:(\d+)")
ENTRY = re.compile(r"^(0x[0-9a-f]+): (.*)$")


def parse_tables(text: str) -> list[str]:
    """`show table`: the names of the stick tables."""
    return [m.group(1) for m in map(TABLE.match, text.splitlines()) if m]


def parse_table(text: str, backend: str, now: float, problems: list[str] | None = None
                ) -> list[ProxySession]:
    """`show table NAME`: one user session per entry that names its server.

    The key is the user's session cookie: it is hashed, never shown.
    """
    lines = text.splitlines()
    if not lines or not TABLE.match(lines[0]):
        raise ProviderError(f"show table {backend}: unexpected answer {text.strip()[:80]!r}")
    out, odd = [], []
    for line in lines[1:]:
        m = ENTRY.match(line.strip())
        if not m:
            if line.strip():
                odd.append(line.strip())
            continue
        fields = dict(f.split("=", 1) for f in m.group(2).split() if "=" in f)
        server = fields.get("server_key") or fields.get("server_name")
        if not server or "key" not in fields:
            continue
        digest = hashlib.sha256(fields["key"].encode(errors="replace")).hexdigest()[:12]
        out.append(ProxySession(f"{backend}:{digest}", backend, server, started_at=now,
                                client=f"sticky session {digest}"))
    _not_understood(f"show table {backend}", odd, problems)
    return out


def parse_info(text: str, now: float, problems: list[str] | None = None
               ) -> tuple[int, float] | None:
    """`show info`: (process id, start time in epoch seconds), None when it says neither."""
    info = dict(ln.split(":", 1) for ln in text.splitlines() if ":" in ln)
    info = {k.strip(): v.strip() for k, v in info.items()}
    pid, start, uptime = (info.get(k, "") for k in ("Pid", "Start_time_sec", "Uptime_sec"))
    if _digits(pid) and (_digits(start) or _digits(uptime)):
        return int(pid), float(start) if _digits(start) else now - int(uptime)
    _bad(problems, f"show info: no Pid and start time ({text.strip()[:60]!r}): "
                   "a restart of HAProxy cannot be noticed")
    return None


def _seconds(age: str) -> float:
    """HAProxy ages: 12s, 3m4s, 1h2m, 2d3h ... (at most 9 digits a unit: garbage stays small)"""
    units = {"d": 86400, "h": 3600, "m": 60, "s": 1}
    return float(sum(int(n) * units[u] for n, u in re.findall(r"(\d{1,9})([dhms])", age)))


class HAProxy:
    """The Proxy provider for a real HAProxy."""

    def __init__(self, socket: str, timeout: float = 5.0, answer_cap: int = ANSWER_CAP) -> None:
        self.socket, self.timeout, self.answer_cap = socket, timeout, answer_cap
        self.notices: list[str] = []        # what the last read noticed (a restart)
        self.parse_problems: list[str] = []  # malformed lines of the last read
        self.started_at = 0.0               # when the HAProxy process now answering started
        self.restarted_at = 0.0             # start time of the last restart seen, 0: none
        self._pid = 0                       # its process id (0: not read yet)
        self._first_seen: dict[str, float] = {}       # session id -> start (ages jitter)
        self._level: tuple[float, str] | None = None  # (when asked, read-only reason)

    async def command(self, cmd: str) -> str:
        """Send one command, read the answer (up to `answer_cap`); errors say what went wrong."""
        return (await self._ask(cmd))[0]

    async def _ask(self, cmd: str) -> tuple[str, bool]:
        """The answer, and whether it was cut at `answer_cap` (then at its last full line)."""
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
        except TimeoutError:
            raise ProviderError(f"{self.socket}: no answer within {self.timeout:g}s") from None
        except (OSError, ValueError) as e:
            raise ProviderError(f"{self.socket}: {getattr(e, 'strerror', '') or e}") from None
        try:
            writer.write(cmd.encode() + b"\n")
            await writer.drain()
            data, cut = await asyncio.wait_for(read_capped(reader, self.answer_cap),
                                               self.timeout)
        except TimeoutError:
            raise ProviderError(f"{self.socket}: `{cmd}` got no answer within "
                                f"{self.timeout:g}s") from None
        except OSError as e:        # reset, broken pipe: HAProxy went away mid-answer
            raise ProviderError(f"{self.socket}: connection dropped during `{cmd}` "
                                f"({e.strerror or type(e).__name__})") from None
        finally:
            writer.close()
        if cut:
            data = data[:data.rfind(b"\n") + 1]
            if not data:
                raise ProviderError(f"{self.socket}: `{cmd}`: answer without a line end "
                                    f"in its first {self.answer_cap} bytes")
        return data.decode(errors="replace"), cut

    async def read(self) -> tuple[list[Backend], list[ProxyServer], list[ProxySession]]:
        """Servers with their admin state, and sessions.

        Where a backend keeps a stick table (persistence on a session cookie),
        its sessions are the table's entries: real user sessions, which
        outlive connections. Elsewhere they are HAProxy's live streams.
        """
        problems: list[str] = []
        self.notices = []

        async def ask(cmd: str) -> str:
            text, cut = await self._ask(cmd)
            if cut:
                problems.append(f"`{cmd}`: answer longer than {self.answer_cap} bytes; "
                                "the rest was not read")
            return text
        info, stat, state, sess, tables = await asyncio.gather(
            ask("show info"), ask("show stat"), ask("show servers state"),
            ask("show sess"), ask("show table"))
        now = time.time()
        self._saw(parse_info(info, now, problems))
        backends, servers = parse_stat(stat, problems)
        admin = parse_servers_state(state, problems)
        names = {b.name for b in backends}
        tables_named = [t for t in parse_tables(tables) if t in names]
        answers = await asyncio.gather(*(ask(f"show table {t}") for t in tables_named))
        entries, sticky = [], set()
        for name, text in zip(tables_named, answers, strict=True):
            try:
                entries += parse_table(text, name, now, problems)
                sticky.add(name)
            except ProviderError as e:  # its streams and scur then, not a count of zero
                problems.append(str(e))
        sessions = [s for s in parse_sess(sess, now, problems) if s.backend not in sticky]
        sessions += entries
        unique = {s.session_id: s for s in reversed(sessions)}     # the first of each id
        if len(unique) < len(sessions):
            problems.append(f"{len(sessions) - len(unique)} session(s) listed twice; "
                            "counted once")
            sessions = [s for s in sessions if unique.get(s.session_id) is s]
        counts: dict[tuple[str, str], int] = {}
        for s in sessions:
            counts[(s.backend, s.server)] = counts.get((s.backend, s.server), 0) + 1
        servers = [replace(s, admin=admin.get((s.backend, s.name), "ready"),
                           cur_sessions=counts.get((s.backend, s.name), 0)
                           if s.backend in sticky else s.cur_sessions) for s in servers]
        self.parse_problems = bounded(problems)
        return backends, servers, self._stable(sessions)

    def _saw(self, process: tuple[int, float] | None) -> None:
        """Compare the process that answered with the last one: a restart (or a reload, a
        new process) forgot every runtime `set server state`."""
        if process is None:
            return
        pid, started = process
        if self._pid and (pid != self._pid or started > self.started_at + RESTART_SLACK):
            self.restarted_at = started
            self.notices.append(f"HAProxy restarted (pid {self._pid} -> {pid})")
        if not self._pid or pid != self._pid or abs(started - self.started_at) > RESTART_SLACK:
            self.started_at = started       # kept steady against Uptime_sec's wobble
        self._pid = pid

    def _stable(self, sessions: list[ProxySession]) -> list[ProxySession]:
        """Keep each session's first-seen start, so an unchanged session compares equal."""
        seen = {s.session_id: self._first_seen.get(s.session_id, s.started_at) for s in sessions}
        self._first_seen = seen
        return [ProxySession(s.session_id, s.backend, s.server, started_at=float(round(seen[
            s.session_id])), client=s.client) for s in sessions]

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
