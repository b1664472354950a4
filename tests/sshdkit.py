"""One sshd a test starts and stops itself (the ssh tier's and the lab's SSH tests).

Importable from any tier: tests/ is on sys.path (its conftest.py sits there)."""
from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

import pytest

SSHD = "/usr/sbin/sshd"


def start_sshd(config: Path, port: int, log: Path) -> subprocess.Popen:
    """sshd in the foreground with `config`, returned once it listens and speaks SSH."""
    with open(log, "ab") as out:
        proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config)],
                                stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"sshd exited: {log.read_text()[-800:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                if s.recv(8).startswith(b"SSH-"):
                    return proc
        except OSError:
            time.sleep(0.05)
    proc.kill()
    pytest.fail("sshd did not start listening within 10 s")


def stop_sshd(proc: subprocess.Popen | None) -> None:
    if proc and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
