"""What the inventory refuses (each a real TOML file; the message names file:line, key and
problem), secure transport defaults (plain-text Docker API, DOCKER_* variables)."""
from __future__ import annotations

import textwrap

import pytest

from opsconsole.config import CHOICES, ConfigError, load
from opsconsole.session import connect, swarm_endpoints

SWARM = '[swarm]\nendpoints = ["unix:///run/docker.sock"]\n'


def write(tmp_path, text: str):
    path = tmp_path / "site.toml"
    path.write_text(textwrap.dedent(text))
    return path


def refused(tmp_path, text: str) -> tuple[str, str]:
    """(the path, the message) of an inventory that must not load."""
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load(path)
    return str(path), str(err.value)


@pytest.mark.parametrize("body, line, words", [
    # names that differ only by case, and two VMs on one Swarm node
    (SWARM + "[hosts.hv-01]\n[hosts.HV-01]\n", 4,
     "hosts.HV-01: host 'HV-01' differs from host 'hv-01' only by case"),
    (SWARM + '[hosts.hv-01]\n[vms.vm-01]\nhost = "hv-01"\n[vms.Vm-01]\nhost = "hv-01"\n', 6,
     "vms.Vm-01: VM 'Vm-01' differs from VM 'vm-01' only by case"),
    (SWARM + '[hosts.hv-01]\n[vms.vm-01]\nhost = "hv-01"\nnode = "swarm-1"\n'
             '[vms.vm-02]\nhost = "hv-01"\nnode = "SWARM-1"\n', 9,
     "vms.vm-02.node: VMs vm-01 and vm-02 are both mapped to Swarm node SWARM-1"),
    (SWARM + '[hosts.hv-01]\n[vms.vm-01]\nhost = "hv-01"\nnode = "vm-02"\n'
             '[vms.vm-02]\nhost = "hv-01"\n', 7,
     "vms.vm-02: VMs vm-01 and vm-02 are both mapped to Swarm node vm-02"),
    # numbers: finite, not negative, timeouts above 0, ports in range
    (SWARM + "timeout = nan\n", 3, "swarm.timeout: must be a finite number, got nan"),
    (SWARM + "[operations]\ndrain_timeout = inf\n", 4,
     "operations.drain_timeout: must be a finite number, got inf"),
    (SWARM + "[operations]\nsessions_threshold = -1\n", 4,
     "operations.sessions_threshold: must be 0 or more, got -1"),
    (SWARM + "[maintenance]\nfailure_budget = -5\n", 4,
     "maintenance.failure_budget: must be 0 or more, got -5"),
    (SWARM + "[maintenance]\nretries = 1\nboot_timeout = 0\n", 5,
     "maintenance.boot_timeout: must be greater than 0, got 0.0"),
    (SWARM + "[maintenance]\ntime_limit = -inf\n", 4,
     "maintenance.time_limit: must be a finite number, got -inf"),
    (SWARM + '[proxy]\nsocket = "unix:///h.sock"\ntimeout = -0.5\n', 5,
     "proxy.timeout: must be greater than 0, got -0.5"),
    (SWARM + "[winrm]\ncall_timeout = nan\n", 4, "winrm.call_timeout: must be a finite number"),
    (SWARM + "[hosts.hv-01]\nwinrm = { port = 70000 }\n", 4,
     "hosts.hv-01.winrm.port: must be at most 65535, got 70000"),
    (SWARM + "[ssh]\nconnect_timeout = -1\n", 4, "ssh.connect_timeout: must be greater than 0"),
    # words from a short list
    (SWARM + '[maintenance]\nhost_step = "reboot"\n', 4,
     "maintenance.host_step: 'reboot' is not one of updates | script | manual"),
    (SWARM + '[maintenance]\nhost_step = "script"\n', 3,
     'maintenance.script: host_step = "script" needs the script\'s path on the host'),
    (SWARM + '[winrm]\ntransport = "digest"\n', 4,
     "winrm.transport: 'digest' is not one of ntlm | kerberos | credssp | certificate | basic"),
    (SWARM + '[hosts.hv-01]\nwinrm = { scheme = "ftp" }\n', 4,
     "hosts.hv-01.winrm.scheme: 'ftp' is not one of https | http"),
    # names and text that are unsafe to show or to use
    (SWARM + '[console]\ntheme = "dark\\u001b[2J"\n', 4,
     "console.theme: control character U+001B in 'dark\\x1b[2J'"),
    (SWARM + '[hosts.hv-01]\naddress = "hv-01\\u202e.example"\n', 4,
     "hosts.hv-01.address: control character U+202E"),
    (SWARM + '[hosts."hv-01\\u0007"]\n', 3, "key 'hv-01\\x07': control character U+0007"),
    (SWARM + '[maintenance]\nupdate_command = "apt-get upgrade\\r"\n', 4,
     "maintenance.update_command: control character U+000D"),
    (SWARM + '[hosts.hv-01]\n[vms.vm-01]\nhost = "hv-01"\nnode = "vm 01;reboot"\n', 6,
     "vms.vm-01.node: 'vm 01;reboot' is not a valid hostname"),
    (SWARM + '[proxy]\nsocket = "unix:///h.sock"\nservers = { "portal/vm-01" = "vm 01" }\n', 5,
     "proxy.servers: 'portal/vm-01': 'vm 01' is not a valid VM name"),
    (SWARM + '[proxy]\nsocket = "unix:///h.sock"\nservers = { "portal/vm 01" = "vm-01" }\n', 5,
     "proxy.servers: 'portal/vm 01': expected \"backend/server\""),
    # transport security
    ('[swarm]\nendpoints = ["ssh://mgr-1", "tcp://mgr-2:2375"]\n', 2,
     "swarm.endpoints: 'tcp://mgr-2:2375' would carry the Docker API in plain text"),
    ('[swarm]\nendpoints = ["tcp://mgr-2:2375"]\nallow_plaintext = ["tcp://mgr-3:2375"]\n', 3,
     "swarm.allow_plaintext: 'tcp://mgr-3:2375' is not a tcp:// endpoint of endpoints"),
    ('[swarm]\nendpoints = ["tcp://mgr-2:2375"]\nallow_plaintext = "yes"\n', 3,
     "swarm.allow_plaintext: expected true or false"),
])
def test_refused_inventories(tmp_path, body, line, words):
    path, message = refused(tmp_path, body)
    assert message.startswith(f"{path}:{line}: "), message
    assert words in message, message
    assert "\x1b" not in message and "\u202e" not in message and "\x07" not in message


@pytest.mark.parametrize("key", ["tls_ca", "tls_cert", "tls_key"])
def test_tls_files_must_exist_and_be_readable(tmp_path, key):
    for name in ("ca.pem", "cert.pem", "key.pem"):
        (tmp_path / name).write_text("pem")
    good = ('[swarm]\nendpoints = ["tcp://mgr:2376"]\n'
            'tls_ca = "ca.pem"\ntls_cert = "cert.pem"\ntls_key = "key.pem"\n')
    inv = load(write(tmp_path, good))
    # relative paths are the inventory's folder's, whatever the working directory
    assert inv.swarm.tls == {"ca": str(tmp_path / "ca.pem"), "cert": str(tmp_path / "cert.pem"),
                             "key": str(tmp_path / "key.pem")}
    line = {"tls_ca": 3, "tls_cert": 4, "tls_key": 5}[key]
    missing = good.replace(f'{key} = "', f'{key} = "gone-')
    path, message = refused(tmp_path, missing)
    assert message.startswith(f"{path}:{line}: swarm.{key}: cannot read "), message
    assert "No such file or directory" in message
    (tmp_path / "dir.pem").mkdir()
    path, message = refused(tmp_path, good.replace(f'{key} = "', f'{key} = "{tmp_path}/dir.pem"#'))
    assert message.startswith(f"{path}:{line}: swarm.{key}: '{tmp_path}/dir.pem' is not a file")


def test_winrm_and_ssh_key_files_must_exist(tmp_path):
    path, message = refused(tmp_path, SWARM + '[hosts.hv-01]\nwinrm = { cert_pem = "c.pem" }\n')
    assert message.startswith(f"{path}:4: hosts.hv-01.winrm.cert_pem: cannot read"), message
    path, message = refused(tmp_path, SWARM + '[ssh]\nidentity_files = ["~/nope/id_x"]\n')
    assert message.startswith(f"{path}:4: ssh.identity_files: cannot read"), message
    path, message = refused(tmp_path, SWARM + '[winrm]\nca_bundle = ["ca.pem"]\n')
    assert message.startswith(f"{path}:4: winrm.ca_bundle: expected a string, got a list")
    (tmp_path / "id_x").write_text("key")
    inv = load(write(tmp_path, SWARM + '[ssh]\nidentity_files = ["id_x"]\n'))
    assert inv.ssh is not None and inv.ssh.identity_files == (str(tmp_path / "id_x"),)


def test_plaintext_allowed_per_endpoint_or_for_all_and_said_in_warnings(tmp_path):
    inv = load(write(tmp_path, '[swarm]\nendpoints = ["tcp://mgr-1:2375", "tcp://mgr-2:2375"]\n'
                               'allow_plaintext = ["tcp://mgr-1:2375", "tcp://mgr-2:2375"]\n'))
    warnings: list[str] = []
    connect(inv, warnings)
    assert warnings == ["plain-text Docker API to tcp://mgr-1:2375",
                        "plain-text Docker API to tcp://mgr-2:2375"]
    inv = load(write(tmp_path, '[swarm]\nendpoints = ["unix:///x", "tcp://mgr-1:2375"]\n'
                               'allow_plaintext = true\n'))
    assert inv.swarm.allow_plaintext is True
    assert swarm_endpoints(inv.swarm, inv.path, warnings := []) == (
        ("unix:///x", "tcp://mgr-1:2375"), {})
    assert warnings == ["plain-text Docker API to tcp://mgr-1:2375"]


@pytest.fixture
def docker_env(monkeypatch):
    for var in ("DOCKER_HOST", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH"):
        monkeypatch.delenv(var, raising=False)
    return monkeypatch


def test_docker_host_without_tls_is_refused_unless_allowed(tmp_path, docker_env):
    inv = load(write(tmp_path, "[swarm]\ntimeout = 3\n"))
    docker_env.setenv("DOCKER_HOST", "tcp://mgr:2375")
    with pytest.raises(ConfigError, match=r"DOCKER_HOST tcp://mgr:2375: refused: the Docker API "
                                          r"would go in plain text"):
        connect(inv)
    inv = load(write(tmp_path, "[swarm]\nallow_plaintext = true\n"))
    warnings: list[str] = []
    assert swarm_endpoints(inv.swarm, inv.path, warnings) == (("tcp://mgr:2375",), {})
    assert warnings == ["plain-text Docker API to tcp://mgr:2375"]


def test_docker_tls_verify_and_cert_path_like_the_docker_cli(tmp_path, docker_env):
    inv = load(write(tmp_path, "[swarm]\n"))
    certs = tmp_path / "certs"
    certs.mkdir()
    for name in ("ca.pem", "cert.pem", "key.pem"):
        (certs / name).write_text("pem")
    docker_env.setenv("DOCKER_HOST", "tcp://mgr:2376")
    docker_env.setenv("DOCKER_TLS_VERIFY", "1")
    docker_env.setenv("DOCKER_CERT_PATH", str(certs))
    warnings: list[str] = []
    assert swarm_endpoints(inv.swarm, inv.path, warnings) == (
        ("https://mgr:2376",), {k: str(certs / f"{k}.pem") for k in ("ca", "cert", "key")})
    assert warnings == []
    # no DOCKER_CERT_PATH: ~/.docker, as the docker CLI; no ca.pem there: the system's CAs,
    # still TLS (https), never plain text
    docker_env.delenv("DOCKER_CERT_PATH")
    docker_env.setenv("HOME", str(tmp_path / "home"))
    assert swarm_endpoints(inv.swarm, inv.path, warnings) == (("https://mgr:2376",), {})
    swarm = connect(inv).swarm
    assert swarm.candidates == [("https://mgr:2376", {})]
    # a local socket needs no TLS
    docker_env.setenv("DOCKER_HOST", "unix:///run/docker.sock")
    assert swarm_endpoints(inv.swarm, inv.path, warnings) == (("unix:///run/docker.sock",), {})
    assert warnings == []


def test_winrm_transports_are_the_providers():
    from opsconsole.providers.powershell.remote import TRANSPORTS
    assert CHOICES["transport"] == TRANSPORTS


def test_a_docker_context_without_tls_is_refused_too(tmp_path, docker_env):
    import hashlib
    import json
    digest = hashlib.sha256(b"prod").hexdigest()
    meta = tmp_path / "docker/contexts/meta" / digest / "meta.json"
    meta.parent.mkdir(parents=True)
    meta.write_text(json.dumps({"Endpoints": {"docker": {"Host": "tcp://mgr:2376"}}}))
    docker_env.setenv("DOCKER_CONFIG", str(tmp_path / "docker"))
    inv = load(write(tmp_path, '[swarm]\ncontext = "prod"\n'))
    with pytest.raises(ConfigError, match=r"docker context 'prod' tcp://mgr:2376: refused"):
        connect(inv)
    tls = tmp_path / "docker/contexts/tls" / digest / "docker"
    tls.mkdir(parents=True)
    for name in ("ca", "cert", "key"):
        (tls / f"{name}.pem").write_text("pem")
    assert connect(inv).swarm.candidates == [
        ("tcp://mgr:2376", {k: str(tls / f"{k}.pem") for k in ("ca", "cert", "key")})]


def test_the_readmes_example_inventory_loads(tmp_path):
    from pathlib import Path
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    example = readme.split("## Inventory", 1)[1].split("```toml\n", 1)[1].split("```", 1)[0]
    for name in ("ca.pem", "cert.pem", "key.pem"):
        (tmp_path / name).write_text("pem")
    inv = load(write(tmp_path, example))
    assert inv.swarm.tls["ca"] == str(tmp_path / "ca.pem") and inv.swarm.allow_plaintext is False
    assert set(inv.vms) == {"vm-01"} and inv.maintenance.host_step == "updates"
