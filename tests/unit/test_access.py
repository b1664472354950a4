"""access add | list | remove: the service account's authorized_keys, edited safely (whole
file renamed over, 0600, foreign lines kept, only valid public keys, audited)."""
from __future__ import annotations

import json
import os
import shlex
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from opsconsole.access import AuthorizedKeys, forced_command
from opsconsole.cli import main

FOREIGN = ['# the backup job', 'from="10.0.0.9",command="/usr/bin/backup",no-pty ssh-ed25519 '
           'AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl backup']


def keygen(path: Path) -> str:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "x", "-f", str(path)],
                   check=True)
    return subprocess.run(["ssh-keygen", "-l", "-f", f"{path}.pub"], check=True,
                          capture_output=True, text=True).stdout.split()[1]


@pytest.fixture
def acc(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.delenv("OPSCONSOLE_READ_ONLY", raising=False)
    monkeypatch.delenv("OPSCONSOLE_INVENTORY", raising=False)
    keys = tmp_path / "home/.ssh/authorized_keys"

    def invoke(*args, read_only: bool = False):
        return CliRunner().invoke(main, [*(["--read-only"] if read_only else []), "access",
                                         "--file", str(keys), *args])
    invoke.file = keys
    return invoke


def audit(tmp_path) -> list[dict]:
    path = tmp_path / "state/opsconsole/sim/audit.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_add_list_remove_keep_foreign_lines(acc, tmp_path):
    fp = {n: keygen(tmp_path / n) for n in ("alice", "bob")}
    acc.file.parent.mkdir(parents=True)
    acc.file.write_text("\n".join(FOREIGN) + "\n")
    r = acc("add", "alice", "--role", "monitor", "--key", str(tmp_path / "alice.pub"),
            "--entry", "/usr/local/bin/opsconsole -i /etc/opsconsole/site.toml")
    assert r.exit_code == 0, r.output
    r = acc("add", "bob", "--role", "oncall", "--key", str(tmp_path / "bob.pub"),
            "--entry", "/usr/local/bin/opsconsole")
    assert r.exit_code == 0, r.output
    lines = acc.file.read_text().splitlines()
    assert lines[:2] == FOREIGN
    assert lines[2].startswith('command="/usr/local/bin/opsconsole -i /etc/opsconsole/site.toml '
                               'ssh-entry --role monitor --user alice",restrict,pty ssh-ed25519 ')
    assert lines[2].endswith(" opsconsole:alice")
    assert acc.file.stat().st_mode & 0o777 == 0o600
    r = acc("list")
    assert r.exit_code == 0
    assert f"alice  monitor  ssh-ed25519 {fp['alice']}  (line 3)" in r.output
    assert f"bob  oncall  ssh-ed25519 {fp['bob']}  (line 4)" in r.output
    assert "2 other line(s)" in r.output
    r = acc("remove", "alice")
    assert r.exit_code == 0 and "alice: 1 key(s) removed" in r.output
    assert acc.file.read_text().splitlines() == [*FOREIGN, lines[3]]
    assert [(a["action"], a["target"], a["role"], a["fingerprint"]) for a in audit(tmp_path)] == [
        ("grant ssh access", "alice", "monitor", fp["alice"]),
        ("grant ssh access", "bob", "oncall", fp["bob"]),
        ("remove ssh access", "alice", "monitor", fp["alice"])]
    assert not [f for f in os.listdir(acc.file.parent) if f != "authorized_keys"]   # no temp


@pytest.mark.parametrize(("content", "says"), [
    ("not a key at all\n", "not a public key line"),
    ("ssh-ed25519 AAAAnotreallyakey= x\n", "ssh-keygen does not take it"),
    ("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA== cut short\n", "ssh-keygen does not take it"),
    ("", "expected one public key line, found 0"),
    ('command="sh" ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl'
     " x\n", "not a public key line"),
    ("-----BEGIN OPENSSH PRIVATE KEY-----\nb3Blbn\n-----END OPENSSH PRIVATE KEY-----\n",
     "private key"),
])
def test_only_a_valid_public_key_is_taken(acc, tmp_path, content, says):
    key = tmp_path / "k.pub"
    key.write_text(content)
    r = acc("add", "alice", "--role", "admin", "--key", str(key), "--entry", "opsconsole")
    assert r.exit_code == 2 and says in r.output and str(key) in r.output
    assert not acc.file.exists() and audit(tmp_path) == []


def test_refusals(acc, tmp_path):
    keygen(tmp_path / "a")
    keygen(tmp_path / "b")
    add = ("--entry", "opsconsole")
    assert acc("add", "alice", "--role", "monitor", "--key", str(tmp_path / "a.pub"),
               *add).exit_code == 0
    before = acc.file.read_text()
    r = acc("add", "bob", "--role", "admin", "--key", str(tmp_path / "a.pub"), *add)
    assert r.exit_code == 2 and f"{acc.file}:1: this key" in r.output     # one key, one person
    r = acc("add", "alice", "--role", "admin", "--key", str(tmp_path / "b.pub"), *add)
    assert r.exit_code == 2 and "alice has role monitor" in r.output
    r = acc("add", "bad name", "--role", "admin", "--key", str(tmp_path / "b.pub"), *add)
    assert r.exit_code == 2 and "user name 'bad name'" in r.output
    r = acc("add", "bob", "--role", "admin", "--key", str(tmp_path / "b.pub"),
            "--entry", 'opsconsole "x')
    assert r.exit_code == 2
    r = acc("remove", "zed")
    assert r.exit_code == 2 and "no access for 'zed' (known: alice)" in r.output
    r = acc("remove", "alice", read_only=True)
    assert r.exit_code == 3 and "read-only" in r.output
    r = acc("add", "bob", "--role", "admin", "--key", str(tmp_path / "b.pub"), *add,
            read_only=True)
    assert r.exit_code == 3
    assert acc.file.read_text() == before
    assert [a["result"] for a in audit(tmp_path)][-2:] == ["refused: read-only"] * 2


def test_the_forced_command_survives_the_trip_through_sshd_and_the_shell():
    line = forced_command(["/opt/my console/bin/opsconsole", "-i", "/etc/o c/site.toml"],
                          "oncall", "bob")
    assert shlex.split(line) == ["/opt/my console/bin/opsconsole", "-i", "/etc/o c/site.toml",
                                 "ssh-entry", "--role", "oncall", "--user", "bob"]
    keys = AuthorizedKeys(Path("/nonexistent"))
    keys.lines = [f'command="{line}",restrict,pty ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVz'
                  'rm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl opsconsole:bob']
    [entry] = keys.entries()
    assert (entry.user, entry.role) == ("bob", "oncall")


def test_access_needs_no_remote_system_nor_its_secrets(acc, tmp_path):
    """Editing keys reads no cluster: a site whose Swarm is unreachable and whose WinRM
    password is not set still gets its key added (and audited in the site's state dir)."""
    keygen(tmp_path / "a")
    site = tmp_path / "site.toml"
    site.write_text(f'[console]\nstate_dir = "{tmp_path}/site-state"\n'
                    '[swarm]\nendpoints = ["unix:///nonexistent/docker.sock"]\n'
                    '[winrm]\nuser_env = "OC_UNSET_USER"\npassword_env = "OC_UNSET_PASSWORD"\n'
                    '[hosts.hv-01]\naddress = "127.0.0.1"\n')
    r = CliRunner().invoke(main, ["-i", str(site), "access", "--file", str(acc.file), "add",
                                  "alice", "--role", "oncall", "--key", str(tmp_path / "a.pub")])
    assert r.exit_code == 0, r.output
    assert f"-i {site} ssh-entry --role oncall --user alice" in acc.file.read_text()
    [rec] = [json.loads(line) for line in (tmp_path / "site-state/audit.jsonl").read_text()
             .splitlines()]
    assert rec["action"] == "grant ssh access" and rec["target"] == "alice"
