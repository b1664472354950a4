"""Append-only JSON-lines files: the operation journal and the audit log.

Every record is flushed and fsynced before the call returns, so a console
killed right after a step still finds that step on disk.
"""
from __future__ import annotations

import errno
import getpass
import json
import os
import socket
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator


def who() -> str:
    """user@host of the operator, and where they came from over SSH."""
    try:
        user = os.environ.get("SUDO_USER") or getpass.getuser()
    except (KeyError, OSError):   # no passwd entry (containers): the uid still says who
        user = f"uid{os.getuid()}"
    origin = (os.environ.get("SSH_CLIENT") or "").split(" ")[0] or "local"
    return f"{user}@{socket.gethostname()} from {origin}"


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


class Journal(JsonLines):
    """Operations and their steps, before and after each one."""

    def unfinished(self) -> list[dict[str, Any]]:
        """The begin record of every operation that has no end record."""
        open_ops: dict[str, dict[str, Any]] = {}
        for rec in self.read():
            if rec.get("event") == "begin":      # a resumed operation begins again
                before = open_ops.get(rec["op"], {})
                open_ops[rec["op"]] = dict(rec, done_steps=before.get("done_steps", []),
                                           notes=before.get("notes", {}))
            elif rec.get("event") == "note" and rec.get("op") in open_ops:
                open_ops[rec["op"]]["notes"][f"{rec['index']}:{rec['key']}"] = rec.get("value")
            elif rec.get("event") == "step" and rec.get("phase") == "done" and rec["op"] in open_ops:
                open_ops[rec["op"]]["done_steps"].append(rec["index"])
            elif rec.get("event") == "end":
                open_ops.pop(rec.get("op"), None)
        return list(open_ops.values())


class Audit(JsonLines):
    """Who changed what, when, from where, and how it went."""

    def record(self, action: str, target: str, result: str, **detail: Any) -> None:
        self.append({"who": who(), "action": action, "target": target,
                     "result": result, **detail})
