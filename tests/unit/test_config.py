"""Inventory files: good ones load; every bad one gets one message with file:line."""
from __future__ import annotations

import textwrap

import pytest

from opsconsole.config import ConfigError, load

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
    path = write(tmp_path, body)
    with pytest.raises(ConfigError) as err:
        load(path)
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
