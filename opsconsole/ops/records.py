"""Append-only JSON-lines files: the operation journal and the audit log.

Every record is flushed and fsynced before the call returns, so a console
killed right after a step still finds that step on disk.
"""
from __future__ import annotations

import errno
import json
import os
import socket
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .roles import Identity


def private_dir(path: Path) -> Path:
    """`path` as a folder only its owner can enter: it and any missing parent are created
    0700 whatever the umask (an existing one is left as it is). OSError when it cannot be."""
    if path.is_dir():
        return path
    for folder in reversed((path, *path.parents)):
        if folder.is_dir():
            continue
        if folder.exists() or folder.is_symlink():
            raise NotADirectoryError(errno.ENOTDIR, "a file is in the way", str(folder))
        try:
            folder.mkdir(mode=0o700)
        except FileExistsError:       # made meanwhile by another console
            continue
        os.chmod(folder, 0o700)       # mkdir's mode went through the umask
    return path


def open_private(path: Path, flags: int) -> int:
    """os.open of a file only its owner may read and write: created 0600 whatever the umask,
    and an existing one of ours made 0600 again."""
    fd = os.open(path, flags | os.O_CREAT, 0o600)
    try:
        st = os.fstat(fd)
        if st.st_mode & 0o777 != 0o600 and st.st_uid == os.geteuid():
            os.fchmod(fd, 0o600)
    except OSError:
        os.close(fd)
        raise
    return fd


def write_private(path: Path, text: str) -> None:
    """A whole file (a report) readable by its owner only (0600, in a 0700 folder), written
    to a temporary file and renamed over `path`, so a reader never sees half of it."""
    private_dir(path.parent)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = open_private(tmp, os.O_WRONLY | os.O_TRUNC)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


class JsonLines:
    """One record per line. `skipped` counts the damaged lines the last read() passed over."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.skipped = 0

    def check(self) -> None:
        """OSError unless records can be appended here: the folder (0700: created so, or
        made so when it is ours) takes a new file that is written and synced, and the file,
        if any, opens for reading and appending (and is made 0600)."""
        folder = private_dir(self.path.parent)
        st = os.stat(folder)
        if st.st_mode & 0o077 and st.st_uid == os.geteuid():
            os.chmod(folder, 0o700)
        try:
            fd, probe = tempfile.mkstemp(prefix=".probe-", dir=folder)
            try:
                os.write(fd, b"probe")
                os.fsync(fd)
            finally:
                os.close(fd)
                os.unlink(probe)
        except OSError as e:            # name the folder, not the probe
            raise OSError(e.errno, e.strerror, str(folder)) from None
        if self.path.exists():
            os.close(open_private(self.path, os.O_RDWR | os.O_APPEND))

    def append(self, record: dict[str, Any]) -> None:
        private_dir(self.path.parent)
        line = json.dumps({"time": round(time.time(), 3), **record}, sort_keys=True)
        fd = open_private(self.path, os.O_RDWR | os.O_APPEND)
        try:
            size = os.fstat(fd).st_size
            if size and os.pread(fd, 1, size - 1) != b"\n":
                line = "\n" + line     # a torn last line must not swallow this record
            os.write(fd, (line + "\n").encode())
            os.fsync(fd)
        finally:
            os.close(fd)

    def read(self) -> Iterator[dict[str, Any]]:
        """Every whole record, oldest first. A damaged line (not UTF-8, not JSON, JSON that
        is not an object, a torn last line from a console killed mid-write) is skipped and
        counted in `skipped`, which is final once the iteration ends."""
        self.skipped = 0
        try:
            f = self.path.open("rb")
        except FileNotFoundError:
            return
        with f:
            for raw in f:
                if not raw.strip():
                    continue
                try:
                    record = json.loads(raw.decode("utf-8"))
                except (UnicodeDecodeError, ValueError, RecursionError):
                    record = None
                if isinstance(record, dict):
                    yield record
                else:
                    self.skipped += 1

    def skipped_note(self) -> str:
        """After a read that skipped some: '3 damaged lines skipped in PATH'; else empty."""
        n = self.skipped
        return f"{n} damaged line{'s' if n != 1 else ''} skipped in {self.path}" if n else ""


JOURNAL_VERSION = 2     # records of a newer version are shown, never resumed
HEARTBEAT_S = 5.0       # a running operation says it is alive this often
STALE_S = 60.0          # a heartbeat older than this, from another machine: that console is gone


@dataclass
class OpRecord:
    """What the journal knows of one operation that has no end record."""
    op: str
    kind: str
    target: str
    who: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    steps: list[str] = field(default_factory=list)      # titles, for people
    keys: list[str] = field(default_factory=list)       # stable step keys, for resume
    done_steps: list[int] = field(default_factory=list)
    notes: dict[str, Any] = field(default_factory=dict)  # "index:key" -> value
    state: str = "running"      # running | failed | interrupted | aborted (not restored)
    error: str = ""
    host: str = ""              # the console that ran it: machine, pid, last heartbeat
    pid: int = 0
    beat: float = 0.0
    version: int = 1

    @property
    def newer(self) -> bool:
        """Written by a newer opsconsole: shown, but not resumed by this one."""
        return self.version > JOURNAL_VERSION

    def liveness(self, now: float | None = None) -> str:
        """Empty when its console is gone (so it may be resumed); else where it runs."""
        return console_alive(self.host, self.pid, self.beat, now, self.op)


RUNNING_HERE: set[str] = set()      # operations this process runs now (the engine keeps it)


def console_alive(host: str, pid: int, beat: float, now: float | None = None,
                  op: str = "") -> str:
    """Where a console runs, in words, if it still does; "" if it is gone.

    On this machine the pid decides (a heartbeat can lag behind a busy loop);
    elsewhere, a heartbeat under STALE_S old.
    """
    now = time.time() if now is None else now
    seen = f"last seen {max(0.0, now - beat):.0f}s ago" if beat else "no heartbeat yet"
    if host and host == socket.gethostname() and pid:
        if pid == os.getpid():
            return f"running in this console ({seen})" if op in RUNNING_HERE else ""
        if _pid_alive(pid):
            return f"running in pid {pid} on {host}, {seen}"
        return ""
    if beat and now - beat < STALE_S:
        return f"running in pid {pid} on {host or '?'}, {seen}"
    return ""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:          # exists, owned by someone else
        return True
    return True


class Journal(JsonLines):
    """Operations and their steps, before and after each one: typed records, versioned.

    Records: begin, step (start | done | failed), note, heartbeat, failed (the
    operation stopped but stays unfinished), interrupted (its console was
    stopped), end (finished: done, failed, aborted, rolled back, abandoned).
    """

    def _write(self, event: str, op: str, **fields: Any) -> None:
        self.append({"v": JOURNAL_VERSION, "event": event, "op": op, **fields})

    def begin(self, op: str, kind: str, target: str, params: dict[str, Any],
              steps: list[tuple[str, str]], by: str) -> None:
        self._write("begin", op, kind=kind, target=target, params=params, who=by,
                    steps=[title for _, title in steps], keys=[key for key, _ in steps],
                    host=socket.gethostname(), pid=os.getpid())

    def step(self, op: str, index: int, key: str, phase: str, title: str = "",
             **detail: Any) -> None:
        self._write("step", op, index=index, key=key, phase=phase, title=title, **detail)

    def note(self, op: str, index: int, key: str, value: Any) -> None:
        self._write("note", op, index=index, key=key, value=value)

    def heartbeat(self, op: str) -> None:
        self._write("heartbeat", op, host=socket.gethostname(), pid=os.getpid())

    def stopped(self, op: str, state: str, error: str = "", **detail: Any) -> None:
        """The operation stopped unfinished (failed, interrupted): resume or roll back."""
        self._write(state, op, error=error, **detail)

    def end(self, op: str, state: str, error: str = "", failed: list[str] | None = None) -> None:
        self._write("end", op, state=state, error=error, failed=failed or [])

    def unfinished(self) -> list[OpRecord]:
        """Every operation that has a begin and no end, oldest first."""
        open_ops: dict[str, OpRecord] = {}
        for rec in self.read():
            op = rec.get("op") if isinstance(rec, dict) else None
            if not isinstance(op, str):
                continue
            event = rec.get("event")
            if event == "end":
                open_ops.pop(op, None)
                continue
            if event == "begin":        # a resumed operation begins again
                before = open_ops.get(op)
                r = _begin(rec, before)
                if r is not None:
                    open_ops[op] = r
                continue
            r = open_ops.get(op)
            if r is None:
                continue
            r.beat = max(r.beat, _number(rec.get("time")))
            if event == "note" and isinstance(rec.get("index"), int):
                r.notes[f"{rec['index']}:{rec.get('key')}"] = rec.get("value")
            elif event == "step" and rec.get("phase") == "done" and \
                    isinstance(rec.get("index"), int):
                r.done_steps.append(rec["index"])
            elif event in ("failed", "interrupted", "aborted"):
                r.state, r.error = str(event), str(rec.get("error", ""))
            elif event == "heartbeat":
                r.host, r.pid = str(rec.get("host", r.host)), _int(rec.get("pid"), r.pid)
        return list(open_ops.values())


def _begin(rec: dict[str, Any], before: OpRecord | None) -> OpRecord | None:
    """An OpRecord from a begin record; None when it lacks what a resume needs."""
    kind, target = rec.get("kind"), rec.get("target")
    if not isinstance(kind, str) or not isinstance(target, str):
        return None
    steps, keys = rec.get("steps"), rec.get("keys")
    steps = steps if isinstance(steps, list) else []
    keys = keys if isinstance(keys, list) else []
    return OpRecord(
        op=rec["op"], kind=kind, target=target, who=str(rec.get("who", "")),
        params=rec["params"] if isinstance(rec.get("params"), dict) else {},
        steps=[str(s) for s in steps], keys=[str(k) for k in keys],
        done_steps=before.done_steps if before else [],
        notes=before.notes if before else {},
        host=str(rec.get("host", "")), pid=_int(rec.get("pid"), 0),
        beat=_number(rec.get("time")), version=_int(rec.get("v"), 1))


def _number(value: Any) -> float:
    return float(value) if isinstance(value, (int, float)) and value == value else 0.0


def _int(value: Any, default: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


class Audit(JsonLines):
    """Who changed what (or was refused), when, how they are known, and how it went."""

    def __init__(self, path: Path, identity: Identity | None = None) -> None:
        super().__init__(path)
        self.identity = identity or Identity.local()

    def record(self, action: str, target: str, result: str, **detail: Any) -> None:
        self.append({**self.identity.fields(), "action": action, "target": target,
                     "result": result, **detail})
