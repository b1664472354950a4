"""ssh-entry: SSH_ORIGINAL_COMMAND is split into words, never run by a shell; only the
console's own commands with their own flags pass; role, user and inventory come from the
forced command only. The real sshd is in tests/ssh."""
from __future__ import annotations

import json
import subprocess

import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from opsconsole import cli, session
from opsconsole.providers.base import ProviderError
from opsconsole.sshentry import ALLOWED, MAX_COMMAND, Refused, exposed_key, key_fingerprint, parse


@pytest.mark.parametrize(("text", "argv"), [
    ("opsconsole status --json", ["status", "--json"]),
    ("status", ["status"]),
    ("  run   drain   vm-05  --yes ", ["run", "drain", "vm-05", "--yes"]),
    ("'run' \"drain\" vm-05", ["run", "drain", "vm-05"]),
    ("run rolling-update vm-02,vm-03 --yes", ["run", "rolling-update", "vm-02,vm-03", "--yes"]),
    ("resume 20261127-161206-1-71bb00", ["resume", "20261127-161206-1-71bb00"]),
])
def test_the_consoles_own_commands_pass(text, argv):
    r = parse(text)
    assert [r.command, *r.args] == argv


@pytest.mark.parametrize(("text", "says"), [
    ("bash", "'bash' is not an opsconsole command allowed over SSH"),
    ("/bin/sh -c id", "'/bin/sh' is not an opsconsole command"),
    ("scp -t /tmp", "'scp' is not an opsconsole command"),
    ("/usr/lib/openssh/sftp-server", "is not an opsconsole command"),
    ("opsconsole status; id", "';' refused: nothing is run through a shell"),
    ("opsconsole status;id", "';' refused"),
    ("status && id", "'&&' refused"),
    ("status | sh", "'|' refused"),
    ("status > /etc/passwd", "'>' refused"),
    ("status $(id)", "argument refused: '$'"),
    ("status '$(id)'", "argument refused: '$(id)'"),
    ("status `id`", "argument refused: '`id`'"),
    ("plan drain 'vm-05 vm-06'", "argument refused: 'vm-05 vm-06'"),
    ("plan drain \"vm-05", "No closing quotation"),
    ("status\nid", "control character U+000A"),
    ("status\rid", "control character U+000D"),
    ("status\x00id", "control character U+0000"),
    ("status\x1b[2J", "control character U+001B"),
    ("plan drain vm-05\u202e", "control character U+202E"),
    ("status " + "x" * MAX_COMMAND, f"longer than {MAX_COMMAND}"),
    ("run drain vm-05 --role admin", "option refused: '--role'"),
    ("run drain vm-05 --role=admin --yes", "option refused: '--role=admin'"),
    ("--role admin run drain vm-05", "'--role' is not an opsconsole command"),
    ("opsconsole -i /tmp/evil.toml status", "'-i' is not an opsconsole command"),
    ("status --inventory=/tmp/evil.toml", "option refused"),
    ("run drain vm-05 --read-only", "option refused"),
    ("run drain -- --yes", "option refused: '--'"),
    ("status --help", "option refused: '--help'"),
    ("ssh-entry --role admin --user carol", "'ssh-entry' is not an opsconsole command"),
    ("access add mallory --role admin --key k.pub", "'access' is not an opsconsole command"),
    ("run drain", "`run` takes 2 arguments, not 1"),
    ("status vm-05", "`status` takes 0 arguments, not 1"),
    ("", "no command"),
    ("opsconsole", "no command"),
])
def test_hostile_commands_are_refused_with_a_reason(text, says):
    with pytest.raises(Refused, match=None) as e:
        parse(text)
    assert says in str(e.value)
    assert len(str(e.value)) < 400      # a very long input is not echoed back whole


@given(st.text(max_size=300))
def test_whatever_comes_in_is_a_plain_request_or_a_refusal(text):
    try:
        r = parse(text)
    except Refused:
        return
    assert r.command in ALLOWED
    assert all(a in ALLOWED[r.command].flags or a[0].isalnum() for a in r.args)
    assert not any(set(a) & set(";&|<>()$`'\"\\ \n\x00") for a in r.args)


def test_the_allowed_flags_are_the_commands_own():
    """What ssh-entry lets through must exist on the command, and be a flag: an option that
    takes a value could smuggle one."""
    for name, allowed in ALLOWED.items():
        command = cli.main.commands[name]
        flags = {o for p in command.params if p.param_type_name == "option" for o in p.opts}
        assert set(allowed.flags) <= flags, name
        for p in command.params:
            if p.param_type_name == "option" and set(p.opts) & set(allowed.flags):
                assert p.is_flag, (name, p.opts)
        arguments = [p for p in command.params if p.param_type_name == "argument"]
        assert len(arguments) == allowed.arguments, name


def test_the_key_that_logged_in_is_read_from_sshds_file(tmp_path):
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "k")],
                   check=True)
    kind, blob = (tmp_path / "k.pub").read_text().split()[:2]
    keygen = subprocess.run(["ssh-keygen", "-l", "-f", str(tmp_path / "k.pub")], check=True,
                            capture_output=True, text=True).stdout.split()[1]
    assert key_fingerprint(blob) == keygen
    auth = tmp_path / "auth"
    auth.write_text(f"publickey {kind} {blob}\n")
    assert exposed_key(str(auth)) == keygen
    assert exposed_key(str(tmp_path / "missing")) == ""
    assert exposed_key("") == ""
    auth.write_text("password\n")
    assert exposed_key(str(auth)) == ""
    assert key_fingerprint("not base64!") == ""


@pytest.fixture
def entry(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    for var in ("OPSCONSOLE_READ_ONLY", "OPSCONSOLE_INVENTORY", "SSH_ORIGINAL_COMMAND",
                "SSH_USER_AUTH", "SUDO_USER"):
        monkeypatch.delenv(var, raising=False)

    def invoke(*args, command: str | None = None, env=None):
        env = dict(env or {})
        if command is not None:
            env["SSH_ORIGINAL_COMMAND"] = command
        return CliRunner().invoke(cli.main, list(args), env=env)
    return invoke


def audit(tmp_path) -> list[dict]:
    path = tmp_path / "state/opsconsole/sim/audit.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_a_monitor_is_refused_a_change_exit_3_and_it_is_audited(entry, tmp_path):
    r = entry("ssh-entry", "--role", "monitor", "--user", "alice",
              command="opsconsole run cordon vm-05 --yes", env={"SUDO_USER": "carol"})
    assert r.exit_code == 3 and "read-only mode (role monitor)" in r.output
    [rec] = audit(tmp_path)
    assert (rec["who"], rec["role"], rec["result"], rec["reported"]) == (
        "alice", "monitor", "refused: read-only", "SUDO_USER=carol")


def test_a_refused_command_is_audited(entry, tmp_path):
    r = entry("ssh-entry", "--role", "admin", "--user", "carol", command="bash -i")
    assert r.exit_code == 3 and "'bash' is not an opsconsole command" in r.output
    [rec] = audit(tmp_path)
    assert (rec["who"], rec["action"], rec["target"]) == ("carol", "ssh command", "bash -i")


def test_the_forced_lines_read_only_lowers_the_role(entry, tmp_path):
    r = entry("--read-only", "ssh-entry", "--role", "admin", "--user", "carol",
              command="run cordon vm-05 --yes")
    assert r.exit_code == 3 and "read-only" in r.output


def test_oncall_runs_a_node_operation_as_itself(entry, tmp_path):
    r = entry("ssh-entry", "--role", "oncall", "--user", "bob", command="run cordon vm-05 --yes")
    assert r.exit_code == 0, r.output
    assert {rec["who"] for rec in audit(tmp_path)} == {"bob"}


def test_an_inventory_from_the_environment_is_refused(entry):
    r = entry("ssh-entry", "--role", "monitor", "--user", "alice", command="status",
              env={"OPSCONSOLE_INVENTORY": "/tmp/elsewhere.toml"})
    assert r.exit_code == 2 and "not in the environment" in r.output


def test_bad_user_names_and_no_terminal(entry):
    r = entry("ssh-entry", "--role", "monitor", "--user", "al ice", command="status")
    assert r.exit_code == 2 and "not a plain name" in r.output
    r = entry("ssh-entry", "--role", "monitor", "--user", "alice")     # no command, no tty
    assert r.exit_code == 2 and "needs a terminal" in r.output
    r = entry("ssh-entry", "--role", "root", "--user", "alice", command="status")
    assert r.exit_code == 2


def test_a_local_role_only_lowers(entry):
    r = entry("--role", "oncall", "unlock", "--yes")
    assert r.exit_code == 3 and "role oncall may not break the operation lock" in r.output
    r = entry("--role", "monitor", "run", "cordon", "vm-05", "--yes")
    assert r.exit_code == 3 and "read-only" in r.output


def test_a_person_over_ssh_is_never_asked_the_service_accounts_secrets(entry, tmp_path,
                                                                        monkeypatch):
    """Locally a missing WinRM password is asked on the terminal; over ssh-entry the person
    on that terminal is not the one who may know it: exit 6 naming the variable."""
    site = tmp_path / "site.toml"
    site.write_text('[swarm]\nendpoints = ["unix:///nonexistent/docker.sock"]\n'
                    '[winrm]\nuser_env = "OC_UNSET_USER"\npassword_env = "OC_UNSET_PASSWORD"\n'
                    '[hosts.hv-01]\naddress = "127.0.0.1"\n')
    r = entry("-i", str(site), "ssh-entry", "--role", "admin", "--user", "carol",
              command="status")
    assert r.exit_code == 6, r.output
    assert "OC_UNSET_USER is not set for the service account" in r.output
    # and on a terminal too: asked locally, never when `ask` is off
    asked: list[str] = []
    monkeypatch.setattr(session, "_asked", {})
    monkeypatch.setattr("sys.stdin", type("Tty", (), {"isatty": staticmethod(lambda: True)})())
    monkeypatch.setattr("builtins.input", lambda prompt="": asked.append(prompt) or "typed")
    with pytest.raises(ProviderError, match="not set for the service account"):
        session._secret("OC_UNSET_USER", "WinRM user", ask=False)
    assert asked == []
    assert session._secret("OC_UNSET_USER", "WinRM user") == "typed" and asked
