"""The SSH provider against a real OpenSSH sshd on 127.0.0.1.

The test makes the host keys and the client key, starts sshd (-D -e, as
root, its own config and authorized_keys) on a free port and stops it at
the end. The remote commands run on this machine, so the test can check
from outside that a timed-out command's processes are really gone.
"""
from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import time
from pathlib import Path

import asyncssh
import pytest
from sshdkit import SSHD, start_sshd, stop_sshd

from opsconsole.providers.base import ProviderError
from opsconsole.providers.ssh import SSH, SSHTarget, shell_command


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_key(path: Path) -> asyncssh.SSHKey:
    key = asyncssh.generate_private_key("ssh-ed25519")
    key.write_private_key(str(path))
    key.write_public_key(str(path) + ".pub")
    path.chmod(0o600)
    return key


class Sshd:
    """One sshd we start and stop ourselves (by pid)."""

    def __init__(self, root: Path, host_key: Path, authorized: Path) -> None:
        self.root, self.port = root, free_port()
        self.config = root / "sshd_config"
        self.config.write_text(
            f"Port {self.port}\nListenAddress 127.0.0.1\nHostKey {host_key}\n"
            f"PidFile {root}/sshd.pid\nPermitRootLogin prohibit-password\n"
            f"AuthorizedKeysFile {authorized}\nUsePAM no\nPasswordAuthentication no\n"
            "KbdInteractiveAuthentication no\nStrictModes no\nLogLevel VERBOSE\n")
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = start_sshd(self.config, self.port, self.root / "sshd.log")

    def stop(self) -> None:
        stop_sshd(self.proc)
        self.proc = None


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    if os.geteuid() != 0 or not Path(SSHD).exists():
        pytest.fail("the SSH lab needs root and openssh-server (tests/host-packages.sh)")
    os.makedirs("/run/sshd", mode=0o755, exist_ok=True)   # sshd's privilege separation dir
    root = tmp_path_factory.mktemp("sshd")
    host = write_key(root / "host_ed25519")
    client = write_key(root / "client_ed25519")
    other = write_key(root / "other_ed25519")
    (root / "authorized_keys").write_text(client.export_public_key().decode())
    return root, host, other


@pytest.fixture(scope="module")
def sshd(keys):
    root, _, _ = keys
    server = Sshd(root, root / "host_ed25519", root / "authorized_keys")
    server.start()
    yield server
    server.stop()


def public(key: asyncssh.SSHKey) -> str:
    return key.export_public_key().decode().strip()


def provider(keys, port: int, **target) -> SSH:
    root, host, _ = keys
    target.setdefault("host_keys", (public(host),))
    return SSH([SSHTarget("vm-a", address="127.0.0.1", port=port, user="root", **target)],
               config=None, client_keys=[str(root / "client_ed25519")], agent_path=None,
               connect_timeout=5, poll=0.1)


def gone(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/status").read_text().split("State:")[1].split()[0] in "ZX"
    except (FileNotFoundError, IndexError):
        return True


async def test_lines_stream_as_they_come(keys, sshd):
    seen: list[tuple[float, str]] = []
    code = await provider(keys, sshd.port).run(
        "vm-a", "echo one; sleep 0.6; echo two >&2; sleep 0.6; echo three", timeout=20,
        on_line=lambda line: seen.append((time.monotonic(), line)))
    assert code == 0
    assert [line for _, line in seen] == ["one", "two", "three"]
    assert seen[2][0] - seen[0][0] > 0.9          # "one" arrived long before the end


async def test_non_zero_exit_is_returned(keys, sshd):
    lines: list[str] = []
    assert await provider(keys, sshd.port).run("vm-a", "echo failing >&2; exit 7", 20,
                                               lines.append) == 7
    assert lines == ["failing"]


async def test_console_arguments_are_quoted(keys, sshd):
    hostile = "it's; $(touch /tmp/pwned) `id` \"q\" *\nnext"
    lines: list[str] = []
    assert await provider(keys, sshd.port).run("vm-a", shell_command("printf", "%s", hostile),
                                               20, lines.append) == 0
    assert "\n".join(lines) == hostile


async def test_timeout_kills_the_remote_command(keys, sshd, tmp_path):
    pids = tmp_path / "pids"
    command = f"echo $$ > {pids}; sleep 300 & echo $! >> {pids}; wait"
    started = time.monotonic()
    with pytest.raises(ProviderError, match=r"vm-a: .* timed out after 1 s; killed it"):
        await provider(keys, sshd.port).run("vm-a", command, timeout=1)
    assert time.monotonic() - started < 15
    shell_pid, sleep_pid = (int(p) for p in pids.read_text().split())
    deadline = time.monotonic() + 5
    while not (gone(shell_pid) and gone(sleep_pid)) and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    assert gone(shell_pid) and gone(sleep_pid)


async def test_wrong_pinned_key_is_refused(keys, sshd):
    _, _, other = keys
    with pytest.raises(ProviderError, match="does not match the key pinned") as e:
        await provider(keys, sshd.port, host_keys=(public(other),)).run("vm-a", "true", 10)
    assert "SHA256:" in str(e.value)               # the offered key, for a person to check


async def test_changed_known_hosts_key_is_refused(keys, sshd, tmp_path):
    _, _, other = keys
    known = tmp_path / "known_hosts"
    known.write_text(f"[127.0.0.1]:{sshd.port} {public(other)}\n")
    ssh = provider(keys, sshd.port, host_keys=())
    ssh.known_hosts = [str(known)]
    with pytest.raises(ProviderError, match="has CHANGED"):
        await ssh.run("vm-a", "true", 10)


async def test_unknown_host_is_refused(keys, sshd, tmp_path):
    known = tmp_path / "known_hosts"
    known.write_text("")
    ssh = provider(keys, sshd.port, host_keys=())
    ssh.known_hosts = [str(known)]
    with pytest.raises(ProviderError, match="is unknown .* refusing to connect"):
        await ssh.run("vm-a", "true", 10)


def ssh_config(keys, sshd, tmp_path, known_hosts: str) -> Path:
    root, _, _ = keys
    config = tmp_path / "config"
    config.write_text(f"Host labvm\n  HostName 127.0.0.1\n  Port {sshd.port}\n  User root\n"
                      f"  IdentityFile {root / 'client_ed25519'}\n  IdentitiesOnly yes\n"
                      f"  UserKnownHostsFile {known_hosts}\n")
    return config


async def test_ssh_config_and_known_hosts_are_used(keys, sshd, tmp_path):
    _, host, _ = keys
    known = tmp_path / "known_hosts"
    known.write_text(f"[127.0.0.1]:{sshd.port} {public(host)}\n")
    ssh = SSH([SSHTarget("labvm")], config=[str(ssh_config(keys, sshd, tmp_path, str(known)))],
              agent_path=None, connect_timeout=5)
    lines: list[str] = []
    assert await ssh.run("labvm", "id -un", 20, lines.append) == 0
    assert lines == ["root"]


async def test_config_that_disables_host_key_checks_is_refused(keys, sshd, tmp_path):
    ssh = SSH([SSHTarget("labvm")], config=[str(ssh_config(keys, sshd, tmp_path, "none"))],
              agent_path=None, connect_timeout=5)
    with pytest.raises(ProviderError, match="disables host key checking"):
        await ssh.run("labvm", "true", 10)


async def test_connection_refused_is_clear(keys):
    with pytest.raises(ProviderError, match="no ssh connection .*connection refused"):
        await provider(keys, free_port()).run("vm-a", "true", 10)


async def test_wait_reboot_sees_it_go_and_come_back(keys, tmp_path):
    root, _, _ = keys
    server = Sshd(tmp_path, root / "host_ed25519", root / "authorized_keys")
    server.start()
    try:
        ssh = provider(keys, server.port)
        boot = await ssh.boot_id("vm-a")
        waiting = asyncio.create_task(ssh.wait_reboot("vm-a", down_timeout=15, up_timeout=20))
        await asyncio.sleep(0.5)
        assert not waiting.done()                  # still up: it waits for it to go
        server.stop()
        await asyncio.sleep(1.5)
        assert not waiting.done()                  # down: it waits for it to come back
        server.start()
        back = time.monotonic()
        assert await asyncio.wait_for(waiting, 20) == boot
        assert time.monotonic() - back < 1.5      # noticed within a poll and a login
    finally:
        server.stop()


async def test_wait_reboot_bounded_when_it_never_goes_down(keys, sshd):
    with pytest.raises(ProviderError, match="did not go down"):
        await provider(keys, sshd.port).wait_reboot("vm-a", down_timeout=1, up_timeout=1)


async def test_wait_reboot_counts_a_new_boot_id_as_rebooted(keys, sshd):
    ssh = provider(keys, sshd.port)
    now = await ssh.boot_id("vm-a")
    assert await ssh.wait_reboot("vm-a", 5, 5, boot_id="an-older-boot") == now


async def test_a_detached_command_returns_at_once_and_lives_on(keys, sshd, tmp_path):
    # How the console reboots a VM: the command must not hold the session open.
    done = tmp_path / "done"
    code = await provider(keys, sshd.port).run(
        "vm-a", f"nohup sh -c 'sleep 3; touch {done}' >/dev/null 2>&1 &", timeout=20)
    assert code == 0 and not done.exists()
    deadline = time.monotonic() + 10
    while not done.exists() and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    assert done.exists()
