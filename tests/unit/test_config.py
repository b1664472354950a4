"""Inventory files: good ones load; every bad one gets one message with file:line."""
from __future__ import annotations

import textwrap

import pytest

from opsconsole.config import (
    ConfigError,
    SSHConfig,
    SSHSiteConfig,
    WindowOptions,
    WinRMConfig,
    load,
)
from opsconsole.session import load_inventory

GOOD = """\
[console]
read_only = true
theme = "opsconsole-light"
state_dir = "{state}"
keys = {{ drain = "D" }}

[operations]
sessions_timeout = 30
drain_timeout = 600

[swarm]
endpoints = ["unix:///run/docker.sock", "ssh://admin@mgr-2"]

[proxy]
socket = "tcp://127.0.0.1:9999"
servers = {{ "portail/web-3" = "vm-03" }}

[hosts.hv-01]
address = "hv-01.example"

[vms.vm-03]
host = "hv-01"
address = "10.0.0.13"
node = "swarm-03"
"""


def write(tmp_path, text: str):
    path = tmp_path / "site.toml"
    path.write_text(textwrap.dedent(text))
    return path


def test_good_inventory(tmp_path):
    inv = load(write(tmp_path, GOOD.format(state=tmp_path / "state")))
    assert inv.read_only and inv.theme == "opsconsole-light"
    assert inv.state_dir == tmp_path / "state" and inv.keys == {"drain": "D"}
    assert inv.timing.sessions_timeout == 30.0 and inv.timing.drain_timeout == 600.0
    assert inv.swarm.endpoints == ("unix:///run/docker.sock", "ssh://admin@mgr-2")
    assert inv.proxy.socket == "tcp://127.0.0.1:9999"
    assert inv.proxy.servers == {"portail/web-3": "vm-03"}
    assert inv.vms["vm-03"].node == "swarm-03" and inv.vms["vm-03"].host == "hv-01"


@pytest.mark.parametrize("body, line, words", [
    ("[swarm]\nendpoints = [\"unix:///x\"\n", 2, "not valid TOML: Unclosed array"),
    ("[swarm]\nendpoints = = 1\n", "2:13", "not valid TOML: Invalid value"),
    ("[swarm]\nendpoints = [\"unix:///x\"]\ncolour = 1\n", 3, "swarm.colour: unknown key"),
    ("[swarm]\nendpoints = \"unix:///x\"\n", 2, "expected a list"),
    ("[swarm]\nendpoints = [\"http://x\"]\n", 2, "is not unix://, tcp:// or ssh://"),
    ("[swarm]\nendpoints = [\"unix:///x\"]\ntls_cert = \"c.pem\"\n", 3,
     "tls_cert and tls_key go together"),
    ("[console]\nread_only = \"yes\"\n[swarm]\nendpoints = [\"unix:///x\"]\n", 2,
     "expected true or false"),
    ("[console]\nkeys = { reboot = \"r\" }\n[swarm]\nendpoints = [\"unix:///x\"]\n", 2,
     "'reboot' is not a binding id"),
    ("[operations]\ndrain_timeout = -5\n[swarm]\nendpoints = [\"unix:///x\"]\n", 2,
     "must be greater than 0"),
    ("[swarm]\nendpoints = [\"unix:///x\"]\n[proxy]\nsocket = \"/run/h.sock\"\n", 4,
     "expected unix:///path or tcp://host:port"),
    ("[swarm]\nendpoints = [\"unix:///x\"]\n[hosts.hv-01]\n[vms.vm-01]\nhost = \"hv-09\"\n", 5,
     "'hv-09' is not a host of [hosts]"),
    ("[swarm]\nendpoints = [\"unix:///x\"]\n[hosts.\"hv 01;rm\"]\n", 3, "is not a valid name"),
    ("[console]\ntheme = \"x\"\n", 1, "no [swarm] table"),
])
def test_bad_inventories_name_file_line_and_problem(tmp_path, body, line, words):
    (tmp_path / "c.pem").write_text("certificate")   # tls_cert must name a readable file
    path = write(tmp_path, body)
    with pytest.raises(ConfigError) as err:
        load_inventory(path)            # the console's: binding ids from the registry
    message = str(err.value)
    assert message.startswith(f"{path}:{line}"), message
    assert words in message


def test_missing_and_unreadable_files(tmp_path):
    with pytest.raises(ConfigError, match="no such file"):
        load(tmp_path / "nope.toml")
    bad = tmp_path / "bin.toml"
    bad.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ConfigError, match="cannot read"):
        load(bad)


SITE = """\
[swarm]
endpoints = ["unix:///run/docker.sock"]

[winrm]
transport = "ntlm"
user_env = "T_WINRM_USER"
password_env = "T_WINRM_PASSWORD"
call_timeout = 900

[ssh]
known_hosts = ["/etc/ssh/ssh_known_hosts"]
user = "admin"

[maintenance]
update_command = "sudo apt-get -y upgrade"
reboot = true
failure_budget = 1

[hosts.hv-01]
address = "hv-01.example"
winrm = { port = 15986, cert_validation = false }

[vms.vm-01]
host = "hv-01"
address = "10.0.0.11"
ssh = { port = 2222, host_keys = ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE"] }
"""


def test_winrm_ssh_and_maintenance_tables_merge_site_and_own_settings(tmp_path):
    inv = load(write(tmp_path, SITE))
    assert inv.winrm and inv.ssh == SSHSiteConfig(known_hosts=("/etc/ssh/ssh_known_hosts",))
    assert inv.hosts["hv-01"].winrm == WinRMConfig(
        transport="ntlm", user_env="T_WINRM_USER", password_env="T_WINRM_PASSWORD",
        call_timeout=900.0, port=15986, cert_validation=False)
    assert inv.vms["vm-01"].ssh == SSHConfig(
        user="admin", port=2222, host_keys=("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE",))
    assert inv.maintenance == WindowOptions(update_command="sudo apt-get -y upgrade", reboot=True,
                                            failure_budget=1)


def test_config_defaults_are_the_providers_defaults():
    """Each setting's default lives in config; the providers' own defaults (for callers that
    build them directly) must not say otherwise."""
    from dataclasses import fields

    from opsconsole.providers.powershell.remote import WinRMHost
    from opsconsole.providers.ssh import SSHTarget
    for ours, theirs, renamed in ((WinRMConfig(), WinRMHost("h"),
                                   {"computer_name": "expect_computer_name"}),
                                  (SSHConfig(), SSHTarget("v"), {})):
        for f in fields(ours):
            name = renamed.get(f.name, f.name)
            if hasattr(theirs, name):
                assert getattr(ours, f.name) == getattr(theirs, name), f.name


@pytest.mark.parametrize("old, new, line, words", [
    ('transport = "ntlm"', 'transport = "ntlm"\npasword_env = "X"', 6, "winrm.pasword_env: unknown"),
    ("port = 15986,", 'port = "15986",', 21, "expected an integer"),
    ("port = 2222,", 'known_hosts = ["/x"], port = 2222,', 26, "belongs in the [ssh] table"),
    ("reboot = true", 'reboot = "yes"', 16, "maintenance.reboot: expected true or false"),
])
def test_bad_site_tables(tmp_path, old, new, line, words):
    path = write(tmp_path, SITE.replace(old, new, 1))
    with pytest.raises(ConfigError) as err:
        load(path)
    assert str(err.value).startswith(f"{path}:{line}") and words in str(err.value), str(err.value)


def test_connect_builds_hyperv_and_ssh_from_the_inventory(tmp_path, monkeypatch):
    from opsconsole.providers.base import ProviderError
    from opsconsole.session import connect
    inv = load(write(tmp_path, SITE))
    monkeypatch.setattr("sys.stdin.isatty", lambda: False)
    monkeypatch.delenv("T_WINRM_USER", raising=False)
    with pytest.raises(ProviderError, match="T_WINRM_USER is not set"):
        connect(inv)
    monkeypatch.setenv("T_WINRM_USER", "ops")
    monkeypatch.setenv("T_WINRM_PASSWORD", "s3cret")
    providers = connect(inv)
    host = providers.hypervisor._hosts["hv-01"].cfg
    assert (host.username, host.password, host.port, host.cert_validation) == \
        ("ops", "s3cret", 15986, False)
    assert "s3cret" not in repr(host)
    target = providers.shell.targets["vm-01"]
    assert (target.user, target.port, target.address) == ("admin", 2222, "10.0.0.11")
    assert target.host_keys == ("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE",)
