"""The four small interfaces the console needs from the world.

Every method is a coroutine: providers built on blocking libraries (docker
SDK, pywinrm) run those calls in a thread with `asyncio.to_thread`, the
native asyncio ones (asyncssh, the HAProxy socket) just await. Reads return
model entities; writes raise ProviderError with a message a person can act on.
"""
from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Literal, Protocol

from ..model import VM, Backend, Host, Lock, Node, ProxyServer, ProxySession, Service, Task


class ProviderError(Exception):
    """A remote system said no, or did not answer; the text says which and why."""


# Remote answers are read into memory only up to these sizes: a runaway command or a
# broken peer must not take the console's memory with it.
LINE_CAP = 64 * 1024                # bytes of one output line shown
OUTPUT_CAP = 1024 * 1024            # bytes of lines of one command shown
ANSWER_CAP = 16 * 1024 * 1024       # bytes of one HAProxy answer read


def cut_marker(count: int) -> str:
    return f"… {count} bytes cut"


class Capped:
    """At most `cap` bytes of a stream: its head, and with `tail` its end as well
    (where a script prints its answer); what falls between is only counted."""

    def __init__(self, cap: int, tail: bool = False) -> None:
        self.cap, self.tail = cap, tail
        self._head, self._end = bytearray(), bytearray()
        self.cut = 0

    def add(self, chunk: bytes) -> None:
        room = (self.cap // 2 if self.tail else self.cap) - len(self._head)
        if room > 0:
            self._head += chunk[:room]
            chunk = chunk[room:]
        if not chunk:
            return
        if not self.tail:
            self.cut += len(chunk)
            return
        half = self.cap // 2
        if len(chunk) > half:
            self.cut += len(chunk) - half
            chunk = chunk[-half:]
        self._end += chunk
        extra = len(self._end) - half
        if extra > 0:
            del self._end[:extra]
            self.cut += extra

    def value(self) -> bytes:
        if not self.cut:
            return bytes(self._head + self._end)
        return bytes(self._head) + f"\n{cut_marker(self.cut)}\n".encode() + bytes(self._end)


async def read_capped(reader: asyncio.StreamReader, cap: int = ANSWER_CAP) -> tuple[bytes, bool]:
    """Read to EOF but keep at most `cap` bytes; (data, True) when there was more
    (the rest is left unread: the caller closes the connection)."""
    out = bytearray()
    while len(out) <= cap:
        chunk = await reader.read(min(1 << 16, cap + 1 - len(out)))
        if not chunk:
            return bytes(out), False
        out += chunk
    return bytes(out[:cap]), True


class CappedLines:
    """A command's output as lines for a person, never held whole: each line keeps at
    most `line_cap` bytes, all lines together at most `total_cap`; the rest is counted
    and said ("… N bytes cut"). Streams (stdout, stderr) are split separately and
    share the budget; `emit(stream, line)` gets each finished line."""

    def __init__(self, emit: Callable[[Any, str], None], line_cap: int = LINE_CAP,
                 total_cap: int = OUTPUT_CAP) -> None:
        self.emit, self.line_cap, self.total_cap = emit, line_cap, total_cap
        self._partial: dict[Any, list] = {}     # stream -> [kept bytes, bytes cut]
        self.shown = 0
        self.cut = 0                            # bytes of whole lines past total_cap

    def feed(self, stream: Any, data: bytes) -> None:
        part = self._partial.setdefault(stream, [bytearray(), 0])
        start = 0
        while start < len(data):
            nl = data.find(b"\n", start)
            end = len(data) if nl < 0 else nl
            room = max(0, self.line_cap - len(part[0]))
            keep = min(room, end - start)
            part[0] += data[start:start + keep]
            part[1] += end - start - keep
            if nl < 0:
                break
            self._line(stream, part)
            start = nl + 1

    def _line(self, stream: Any, part: list) -> None:
        raw, cut = bytes(part[0]).rstrip(b"\r"), part[1]
        part[0], part[1] = bytearray(), 0
        size = len(raw) + cut + 1
        if self.cut or self.shown + len(raw) > self.total_cap:     # past it, stay past it
            if not self.cut:
                self.emit(stream, f"… more than {self.total_cap} bytes of output: "
                                  "the rest is not shown")
            self.cut += size
            return
        self.shown += len(raw) + 1
        text = raw.decode("utf-8", "replace")
        self.emit(stream, f"{text} {cut_marker(cut)}" if cut else text)

    def close(self) -> None:
        """The last unfinished lines, and what was cut in all."""
        for stream, part in self._partial.items():
            if part[0] or part[1]:
                self._line(stream, part)
        if self.cut:
            self.emit(None, cut_marker(self.cut))
            self.cut = 0


# Escape sequences a remote (a container's log) might send to the admin's terminal: CSI
# (colours, cursor moves, ...), OSC (titles, clipboard, hyperlinks), DCS/APC/PM/SOS strings,
# and any other ESC pair. Removed whole; every other control character is shown as \xNN.
_ESCAPES = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]?|\x9b[0-?]*[ -/]*[@-~]?"
                      r"|(?:\x1b[\]PX^_]|[\x90\x98\x9d\x9e\x9f]).*?(?:\x07|\x1b\\|\x9c|$)"
                      r"|\x1b.?")
_CONTROLS = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def printable(text: str) -> str:
    """A remote line made safe for a terminal: escape sequences removed, other control
    characters (and bidirectional overrides) written as \\xNN / \\uNNNN, tabs as spaces."""
    text = _ESCAPES.sub("", text).replace("\t", "    ")
    return _CONTROLS.sub(lambda m: f"\\x{ord(m[0]):02x}" if ord(m[0]) < 0x100
                         else f"\\u{ord(m[0]):04x}", text)


def capped_lines(lines: list[str], total_cap: int = OUTPUT_CAP) -> CappedLines:
    """CappedLines that append printable lines to `lines` (the caller takes them out)."""
    return CappedLines(lambda _stream, line: lines.append(printable(line)),
                       total_cap=total_cap)


class Fields:
    """Typed reads of one remote object. A field that is missing when required, or of
    the wrong type, is noted and read as the default, so one bad field never costs the
    rest; `report` then adds one line for the whole object to a provider's problems.
    Under a parent object that was itself bad, nothing more is noted."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.issues: list[str] = []

    def _get(self, d: Any, key: str, ok: Callable[[Any], bool], expected: str,
             required: bool = False) -> Any:
        """The value when `ok(value)`, else _MISSING (noted when worth saying)."""
        if d is _GONE:
            return _MISSING
        value = d.get(key, _MISSING) if isinstance(d, dict) else _MISSING
        if value is not _MISSING and ok(value):
            return value
        if value is _MISSING and required:
            self.issues.append(f"{key} is missing")
        elif value is not _MISSING and (value is not None or required):
            self.issues.append(f"{key} is {show(value)}, not {expected}")
        return _MISSING

    def obj(self, d: Any, key: str, required: bool = False) -> dict:
        value = self._get(d, key, lambda v: isinstance(v, dict), "an object", required)
        return _GONE if value is _MISSING else value

    def text(self, d: Any, key: str, default: str = "", required: bool = False) -> str:
        value = self._get(d, key, lambda v: isinstance(v, str), "text", required)
        return default if value is _MISSING else value

    def number(self, d: Any, key: str, default: int = 0, clamp: bool = False) -> int:
        """A count (>= 0); integral floats pass (some serialisers write 3.0). With
        `clamp` a negative number reads as 0 unsaid (a clock a second off, not garbage)."""
        value = self._get(d, key, _is_integer if clamp else _is_count, "a number")
        return default if value is _MISSING else max(0, int(value))

    def flag(self, d: Any, key: str) -> bool:
        return self._get(d, key, lambda v: isinstance(v, bool), "true or false") is True

    def texts(self, d: Any, key: str) -> tuple[str, ...]:
        value = self._get(d, key, lambda v: isinstance(v, list) and all(
            isinstance(x, str) for x in v), "a list of text")
        return () if value is _MISSING else tuple(value)

    def labels(self, d: Any, key: str) -> tuple[tuple[str, str], ...]:
        value = self._get(d, key, lambda v: isinstance(v, dict) and all(
            isinstance(x, str) for x in v.values()), "an object of text values")
        return () if value is _MISSING else tuple(sorted(value.items()))

    def report(self, problems: list[str]) -> None:
        if self.issues:
            problems.append(f"{self.what}: {'; '.join(self.issues)}")


def _is_integer(v: Any) -> bool:
    if isinstance(v, float):
        return v.is_integer()
    return isinstance(v, int) and not isinstance(v, bool)


def _is_count(v: Any) -> bool:
    return _is_integer(v) and v >= 0


class _Gone(dict):
    """Stands for a parent object that was missing or malformed (already noted)."""


_GONE = _Gone()
_MISSING: Any = object()
PROBLEMS_CAP = 20                   # lines of parse problems kept per read


def bounded(problems: list[str], cap: int = PROBLEMS_CAP) -> list[str]:
    """At most `cap` problem lines (a header must stay readable), the rest counted."""
    if len(problems) <= cap:
        return problems
    return problems[:cap - 1] + [f"… and {len(problems) - cap + 1} more malformed objects"]


def show(value: Any) -> str:
    text = "null" if value is None else repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


class QuorumRefused(ProviderError):
    """Swarm refused a change that would cost Raft its quorum (it counts a manager just
    back as active only a while after it is Ready): worth retrying for a while."""


class LockHeld(ProviderError):
    """Another console's operation holds the cluster lock."""

    def __init__(self, lock: Lock) -> None:
        super().__init__(f"the cluster is locked by {lock.holder} for {lock.title!r} "
                         f"(operation {lock.op})")
        self.lock = lock


# Every provider keeps `parse_problems: list[str]`, replaced at each read: one line per
# malformed object it skipped or degraded. The cluster turns them into Problems.

LogSource = Literal["service", "task"]
SwarmKind = Literal["node", "service", "task"]
LOG_TAIL = 200                      # lines of history a log starts with


class SwarmProvider(Protocol):
    endpoint: str                   # the manager currently in use

    def logs(self, kind: LogSource, swarm_id: str, tail: int = LOG_TAIL,
             follow: bool = False) -> AsyncIterator[str]:
        """A service's or task's log lines with their timestamps, the last `tail` first,
        then (`follow`) new ones as they come; printable, each cut at LINE_CAP, at most
        OUTPUT_CAP in all unless following. Closing the iterator closes the stream."""

    async def read(self) -> tuple[list[Node], list[Service], list[Task]]: ...
    async def inspect(self, kind: SwarmKind, swarm_id: str) -> dict[str, Any]:
        """The object as Swarm gives it (`docker inspect`), read-only."""
    async def set_availability(self, node_id: str, availability: str) -> None: ...
    async def set_role(self, node_id: str, role: str) -> None: ...
    async def rebalance(self, service_id: str) -> None:
        """Force update: every task replaced, by the service's update config."""
    # Service actions: each a write of the service's spec at its version (Swarm then
    # rolls it out; UpdateStatus says how far), re-read when another writer raced it.
    async def scale_service(self, service_id: str, replicas: int) -> None: ...
    async def set_image(self, service_id: str, image: str) -> None: ...
    async def rollback_service(self, service_id: str) -> None:
        """Swarm's rollback to the service's previous spec."""
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
