"""Append-only JSON-lines files: the operation journal and the audit log.

Every record is flushed and fsynced before the call returns, so a console
killed right after a step still finds that step on disk.
"""
from __future__ import annotations

import getpass
import json
import os
import socket
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


class JsonLines:
    def __init__(self, path: Path) -> None:
        self.path = path

    def append(self, record: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps({"time": round(time.time(), 3), **record}, sort_keys=True)
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            size = os.fstat(fd).st_size
            if size and os.pread(fd, 1, size - 1) != b"\n":
                line = "\n" + line     # a torn last line must not swallow this record
            os.write(fd, (line + "\n").encode())
            os.fsync(fd)
        finally:
            os.close(fd)

    def read(self) -> Iterator[dict[str, Any]]:
        """Every whole record; a torn last line (killed mid-write) is skipped."""
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return
        for line in text.splitlines():
            try:
                yield json.loads(line)
            except json.JSONDecodeError:
                continue


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
