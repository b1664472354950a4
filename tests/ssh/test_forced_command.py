"""Roles over a real OpenSSH: sshd on 127.0.0.1, a real `ssh` client, three people.

The test starts its own sshd (a free port, its own host key and config, under tmp, with
the README recipe's `Match User` block) whose service account is the user running the
tests: AuthorizedKeysFile points into tmp and
`opsconsole access add` writes it, one key each for alice (monitor), bob (oncall) and
carol (admin). The forced command runs this checkout's console on the built-in simulated
cluster (no inventory) with its state dir under tmp and --demo speed. The simulated
cluster is rebuilt in each process, so "nothing changed" is read where it is recorded: the
journal has no operation and the audit no change, only the refusal.
"""
from __future__ import annotations

import getpass
import json
import os
import pty
import select
import shlex
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sshdkit import SSHD, start_sshd, stop_sshd

ROOT = Path(__file__).resolve().parents[2]
SSH, KEYGEN = shutil.which("ssh"), shutil.which("ssh-keygen")
PEOPLE = {"alice": "monitor", "bob": "oncall", "carol": "admin"}


def readme_match_block(user: str) -> str:
    """The README recipe's sshd_config block, for `user` as the service account."""
    text = (ROOT / "README.md").read_text()
    start = text.index("```\nMatch User opsconsole\n") + 4
    block = text[start:text.index("```", start)]
    return block.replace("Match User opsconsole", f"Match User {user}", 1)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def keygen(path: Path) -> str:
    """A new ed25519 key pair; its SHA256 fingerprint."""
    subprocess.run([KEYGEN, "-q", "-t", "ed25519", "-N", "", "-C", path.name, "-f", str(path)],
                   check=True)
    out = subprocess.run([KEYGEN, "-l", "-f", f"{path}.pub"], check=True, capture_output=True,
                         text=True).stdout
    return out.split()[1]


class Site:
    """The service account's sshd, the people's keys, and the console's records."""

    def __init__(self, root: Path) -> None:
        self.root, self.port, self.user = root, free_port(), getpass.getuser()
        self.state = root / "state/opsconsole/sim"
        self.authorized = root / "authorized_keys"
        self.fingerprints = {name: keygen(root / name) for name in PEOPLE}
        keygen(root / "host")
        host_key = (root / "host.pub").read_text().split()
        (root / "known_hosts").write_text(f"[127.0.0.1]:{self.port} {host_key[0]} "
                                          f"{host_key[1]}\n")
        self.env = {k: v for k, v in os.environ.items()
                    if not k.startswith(("OPSCONSOLE_", "XDG_", "SSH_"))}
        self.env.update(XDG_STATE_HOME=str(root / "state"), PYTHONPATH=str(ROOT))
        (root / "sshd_config").write_text("\n".join([
            f"Port {self.port}", "ListenAddress 127.0.0.1", f"HostKey {root}/host",
            f"PidFile {root}/sshd.pid", f"AuthorizedKeysFile {self.authorized}",
            f"AllowUsers {self.user}",
            "PermitRootLogin forced-commands-only",     # root only with a forced command
            "UsePAM no", "PasswordAuthentication no", "KbdInteractiveAuthentication no",
            "StrictModes no",       # the keys file lives under /tmp (world-writable parent)
            "AcceptEnv LANG LC_*",  # as Debian's default: a client may send only these
            "PermitUserEnvironment no", "LogLevel VERBOSE",
            "Subsystem sftp /usr/lib/openssh/sftp-server",     # as Debian ships it
            readme_match_block(self.user)]))     # last: a Match block runs to the end
        self.proc: subprocess.Popen | None = None

    def console(self, *args: str) -> subprocess.CompletedProcess:
        """This checkout's console, locally (as the service account's admin runs it)."""
        return subprocess.run([sys.executable, "-m", "opsconsole", *args], env=self.env,
                              capture_output=True, text=True, timeout=60, check=False)

    def grant(self) -> None:
        entry = shlex.join(["env", f"XDG_STATE_HOME={self.root}/state", f"PYTHONPATH={ROOT}",
                            sys.executable, "-m", "opsconsole", "--demo"])
        for name, role in PEOPLE.items():
            r = self.console("access", "--file", str(self.authorized), "add", name,
                             "--role", role, "--key", str(self.root / f"{name}.pub"),
                             "--entry", entry)
            assert r.returncode == 0, r.stderr

    def start(self) -> None:
        self.proc = start_sshd(self.root / "sshd_config", self.port, self.root / "sshd.log")

    def stop(self) -> None:
        stop_sshd(self.proc)

    def ssh_argv(self, person: str, *options: str) -> list[str]:
        return [SSH, "-F", "/dev/null", "-i", str(self.root / person), "-o", "IdentitiesOnly=yes",
                "-o", f"UserKnownHostsFile={self.root}/known_hosts",
                "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes",
                "-o", "ConnectTimeout=10", "-p", str(self.port), *options,
                f"{self.user}@127.0.0.1"]

    def ssh(self, person: str, command: str = "", *options: str,
            timeout: float = 90) -> subprocess.CompletedProcess:
        argv = self.ssh_argv(person, "-T", *options) + ([command] if command else [])
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL, check=False, env=self.env)

    def records(self, name: str) -> list[dict]:
        path = self.state / name
        return [json.loads(line) for line in path.read_text().splitlines()] \
            if path.exists() else []


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    if not (Path(SSHD).exists() and SSH and KEYGEN):
        pytest.fail("this tier needs OpenSSH's sshd, ssh and ssh-keygen "
                    "(tests/host-packages.sh installs openssh-server)")
    if os.geteuid() == 0:
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)   # sshd's privilege separation
    s = Site(tmp_path_factory.mktemp("ssh-site"))
    s.grant()
    s.start()
    yield s
    s.stop()


@pytest.fixture
def fresh(site):
    """Each test reads only its own records."""
    shutil.rmtree(site.root / "state", ignore_errors=True)
    return site


def test_access_list_names_the_three(site):
    r = site.console("access", "--file", str(site.authorized), "list")
    assert r.returncode == 0, r.stderr
    for name, role in PEOPLE.items():
        assert f"{name}  {role}  ssh-ed25519 {site.fingerprints[name]}" in r.stdout
    assert site.authorized.stat().st_mode & 0o777 == 0o600


def test_a_monitor_cannot_drain_and_nothing_changes(fresh):
    r = fresh.ssh("alice", "opsconsole run drain vm-05 --yes")
    assert r.returncode == 3, (r.stdout, r.stderr)
    assert "read-only mode (role monitor): refused to drain vm-05" in r.stderr
    assert fresh.records("journal.jsonl") == []                    # no operation began
    [refusal] = fresh.records("audit.jsonl")                       # and nothing was changed
    assert (refusal["who"], refusal["key"], refusal["role"]) == (
        "alice", fresh.fingerprints["alice"], "monitor")
    assert refusal["result"] == "refused: read-only" and refusal["target"] == "vm-05"
    assert refusal["via"].startswith(f"ssh-entry as {fresh.user}@")


def test_a_monitor_may_watch(fresh):
    r = fresh.ssh("alice", "opsconsole status --json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["summary"]["nodes"] == 6


@pytest.mark.parametrize(("person", "command", "says"), [
    ("alice", "bash", "'bash' is not an opsconsole command"),
    ("alice", "opsconsole status; id", "';' refused: nothing is run through a shell"),
    ("alice", "opsconsole status $(id)", "argument refused: '$'"),
    ("alice", "opsconsole status `id`", "argument refused: '`id`'"),
    ("bob", "opsconsole run unlock --role admin", "option refused: '--role'"),
    ("bob", "opsconsole --role admin unlock --yes", "'--role' is not an opsconsole command"),
    ("bob", "opsconsole run drain vm-05 --yes --role=admin", "option refused: '--role=admin'"),
    ("alice", "opsconsole -i /etc/passwd status", "'-i' is not an opsconsole command"),
    ("alice", "opsconsole access add mallory --role admin --key k.pub",
     "'access' is not an opsconsole command"),
    ("alice", "opsconsole ssh-entry --role admin --user carol",
     "'ssh-entry' is not an opsconsole command"),
    ("bob", "unlock --yes", "role oncall may not break the operation lock (needs admin)"),
])
def test_what_does_not_pass(fresh, person, command, says):
    r = fresh.ssh(person, command)
    assert r.returncode == 3, (r.stdout, r.stderr)
    assert says in r.stderr
    assert "uid=" not in r.stdout + r.stderr
    assert fresh.records("journal.jsonl") == []
    assert all(rec["result"].startswith("refused") and rec["who"] == person
               for rec in fresh.records("audit.jsonl"))


def test_file_copy_is_refused(fresh):
    """scp and sftp are commands (or a subsystem) too: the forced command refuses them."""
    sftp, scp = shutil.which("sftp"), shutil.which("scp")
    assert sftp and scp, "sftp and scp come with ssh"
    options = [o.replace("-p", "-P") if o == "-p" else o for o in fresh.ssh_argv("carol")[1:-1]]
    r = subprocess.run([sftp, "-b", "-", *options, f"{fresh.user}@127.0.0.1"], input="ls\n",
                       capture_output=True, text=True, timeout=60, check=False)
    assert r.returncode != 0, r.stdout
    r = subprocess.run([scp, "-O", *options, f"{fresh.user}@127.0.0.1:/etc/hostname",
                        str(fresh.root / "copied")],
                       capture_output=True, text=True, timeout=60, check=False)
    assert r.returncode != 0 and not (fresh.root / "copied").exists()
    refused = [(a["target"], a["result"]) for a in fresh.records("audit.jsonl")]
    assert any("sftp" in t and "refused" in r for t, r in refused), refused
    assert any(t.startswith("scp ") and "refused" in r for t, r in refused), refused


def test_variables_the_client_sends_do_not_reach_the_console(fresh):
    """SendEnv/SetEnv: sshd takes only LANG and LC_*; an inventory from the environment
    would be refused by ssh-entry itself (exit 2), so exit 0 proves it never arrived."""
    r = fresh.ssh("alice", "status --json", "-o", "SetEnv=OPSCONSOLE_INVENTORY=/nonexistent "
                  "PYTHONPATH=/nonexistent", "-o", "SendEnv=OPSCONSOLE_*")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["summary"]["nodes"] == 6


def test_port_forwarding_is_refused(fresh):
    # stdio forwarding (-W) opens the same direct-tcpip channel as -L: refused
    r = fresh.ssh("carol", "", "-W", f"127.0.0.1:{fresh.port}", timeout=30)
    assert r.returncode == 255 and "prohibited" in r.stderr, r.stderr
    # -L: the client listens, but every connection through it is refused by sshd
    local = free_port()
    tunnel = subprocess.Popen(fresh.ssh_argv("carol", "-N", "-L",
                                             f"127.0.0.1:{local}:127.0.0.1:{fresh.port}"),
                              stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE)
    try:
        got = None
        deadline = time.monotonic() + 15
        while got is None and time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", local), timeout=5) as s:
                    got = s.recv(64)
            except OSError:
                time.sleep(0.1)
        assert got == b"", got      # closed without a byte from the far side (no SSH banner)
    finally:
        tunnel.terminate()
        try:
            _, err = tunnel.communicate(timeout=10)
        except subprocess.TimeoutExpired:    # a loaded machine: what it wrote is all we need
            tunnel.kill()
            _, err = tunnel.communicate(timeout=10)
    assert b"prohibited" in err, err
    # -R: sshd refuses to listen for the client
    r = fresh.ssh("carol", "", "-N", "-o", "ExitOnForwardFailure=yes", "-R", "0:127.0.0.1:22",
                  timeout=30)
    assert r.returncode == 255 and "forwarding failed" in r.stderr, r.stderr


def test_oncall_drains_admin_unlocks_and_the_audit_names_each(fresh):
    r = fresh.ssh("bob", "opsconsole run drain vm-05 --yes")
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert "✔ set vm-05 availability to drain" in r.stdout
    [begin] = [j for j in fresh.records("journal.jsonl") if j["event"] == "begin"]
    assert begin["who"] == "bob" and begin["kind"] == "drain"
    r = fresh.ssh("carol", "unlock --yes")
    assert r.returncode == 0 and "the cluster is not locked" in r.stdout, r.stderr
    r = fresh.ssh("alice", "run cordon vm-04 --yes")
    assert r.returncode == 3
    audit = fresh.records("audit.jsonl")
    changes = [a for a in audit if a["action"] == "set availability" and a["result"] == "ok"]
    assert changes and {(a["who"], a["key"]) for a in changes} == {
        ("bob", fresh.fingerprints["bob"])}
    assert ("alice", fresh.fingerprints["alice"], "refused: read-only") in {
        (a["who"], a["key"], a["result"]) for a in audit}


def test_the_monitor_console_over_a_terminal(fresh):
    """No command: the TUI in the person's role, through a pseudo-terminal end to end."""
    pid, fd = pty.fork()
    if pid == 0:    # the child: a real ssh client on a terminal
        os.execvpe(SSH, [*fresh.ssh_argv("alice", "-tt")], {**fresh.env, "TERM": "xterm-256color"})
    seen = bytearray()

    def read_until(text: bytes, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while text not in seen and time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.5)
            if ready:
                try:
                    seen.extend(os.read(fd, 65536))
                except OSError:
                    return False
        return text in seen
    try:
        assert read_until("READ-ONLY · alice".encode(), 60), seen[-2000:]
        assert read_until(b"vm-05", 30), seen[-2000:]
        os.write(fd, b"d")              # drain: no such key for a monitor
        time.sleep(1)
        os.write(fd, b"q")
        read_until(b"\x00never", 10)    # read until the session ends
    finally:
        try:
            os.kill(pid, 9)
        except ProcessLookupError:
            pass
        _, status = os.waitpid(pid, 0)
        os.close(fd)
    assert os.waitstatus_to_exitcode(status) == 0, seen[-2000:]
    assert b"Drain" not in seen and b"Type vm-05" not in seen
    assert fresh.records("journal.jsonl") == []
