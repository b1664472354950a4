"""The emulator itself, driven by plain pywinrm: the protocol and its knobs."""
from __future__ import annotations

import socket
import time
import uuid
import xml.etree.ElementTree as ET

import pytest
import winrm
import xmltodict
from winrm.exceptions import InvalidCredentialsError, WSManFaultError

from opsconsole.providers import powershell as ps

from . import MemoryWorld, ParseError, WinRMEmulator, parse_assignments, parse_command_line

CMD = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/cmd"


@pytest.fixture
def emu():
    with WinRMEmulator(MemoryWorld(), restart_down_s=1.0) as e:
        yield e


def session(emu: WinRMEmulator, password: str | None = None, op_timeout: int = 2) -> winrm.Session:
    return winrm.Session(emu.url, auth=(emu.username, password or emu.password),
                         transport="basic", server_cert_validation="ignore", proxy=None,
                         read_timeout_sec=op_timeout + 3, operation_timeout_sec=op_timeout)


def run_script(emu, name: str, **params) -> winrm.Response:
    return session(emu).run_cmd(ps.command_line(name, params))


def test_a_console_script_runs_and_answers_json(emu):
    r = run_script(emu, "get-vm", Name="vm-02")
    assert r.status_code == 0 and r.std_err == b""
    assert ps.parse_answer("lab", "get-vm", 0, r.std_out)["name"] == "vm-02"
    assert emu.scripts == [("get-vm", {"Name": "vm-02"})]
    assert emu.requests == ["Create", "Command", "Receive", "Signal", "Delete"]


def test_every_answer_relates_to_its_request(emu):
    p = session(emu).protocol
    shell = p.open_shell()
    message_id = uuid.uuid4()
    req = {"env:Envelope": p.build_wsman_header(
        action="http://schemas.xmlsoap.org/ws/2004/09/transfer/Delete",
        resource_uri=CMD, shell_id=shell, message_id=message_id)}
    req["env:Envelope"].setdefault("env:Body", {})
    answer = ET.fromstring(p.send_message(xmltodict.unparse(req)))
    relates = answer.find(".//{http://schemas.xmlsoap.org/ws/2004/08/addressing}RelatesTo")
    assert relates is not None and relates.text == f"uuid:{message_id}"


def test_unknown_shell_is_a_soap_fault(emu):
    p = session(emu).protocol
    with pytest.raises(WSManFaultError) as e:
        p.run_command(str(uuid.uuid4()).upper(), "powershell -EncodedCommand AA==")
    assert e.value.code == 500 and e.value.wsman_fault_code == 2150858843
    assert "shell was not found" in e.value.reason and e.value.fault_subcode == "w:InvalidSelectors"


def test_unknown_action_is_a_soap_fault(emu):
    p = session(emu).protocol
    req = {"env:Envelope": p.build_wsman_header(action="http://example.invalid/Frobnicate",
                                                resource_uri=CMD)}
    req["env:Envelope"].setdefault("env:Body", {})
    with pytest.raises(WSManFaultError) as e:
        p.send_message(xmltodict.unparse(req))
    assert e.value.code == 500 and e.value.fault_subcode == "a:ActionNotSupported"


def test_bad_credentials_get_401(emu):
    with pytest.raises(InvalidCredentialsError):
        session(emu, password="nope").run_ps("Get-Date")
    assert emu.requests == []


def test_unknown_scripts_fail_like_powershell(emu):
    r = session(emu).run_ps("Get-Process | Stop-Process")
    assert r.status_code == 1 and r.std_out == b""
    assert r.std_err.startswith(b"Get-Process : The term 'Get-Process' is not recognized")


def test_a_script_with_text_injected_before_it_is_not_recognised(emu):
    text = "$Name = 'x'; Stop-Computer\n" + ps.body("get-vm")
    r = session(emu).run_ps(text)
    assert r.status_code == 1 and b"ParserError" in r.std_err
    assert emu.scripts == []


def test_long_commands_hit_the_cmd_exe_limit(emu):
    r = session(emu).run_cmd("powershell -EncodedCommand " + "A" * 8200)
    assert r.status_code == 1 and b"too long" in r.std_err


def test_slow_commands_are_polled_through_operation_timeouts(emu):
    emu.world.hang_s = 2.5
    emu.world.vms["vm-01"]["state"] = "Off"
    started = time.monotonic()
    r = session(emu, op_timeout=1).run_cmd(ps.command_line("start-vm", {"Name": "vm-01"}))
    assert r.status_code == 0 and time.monotonic() - started >= 2.5
    assert emu.requests.count("Receive") >= 2     # timed-out Receives, retried by pywinrm


def test_restart_refuses_connections_then_comes_back(emu):
    for vm in emu.world.vms.values():
        vm["state"] = "Off"
    assert run_script(emu, "restart-host").status_code == 0
    time.sleep(emu.restart_delay_s + 0.3)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", emu.port), timeout=1).close()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", emu.port), timeout=1).close()
            break
        except ConnectionRefusedError:
            time.sleep(0.1)
    r = run_script(emu, "read-host")
    assert ps.parse_answer("lab", "read-host", r.status_code, r.std_out)["host"]["uptime_s"] < 60


def test_command_line_and_parameters_parse_back():
    line = ps.command_line("stop-vm", {"Name": "a’b'c\n$(x)", "Mode": "shutdown"})
    text = parse_command_line(line)
    params, rest = parse_assignments(text[:len(text) - len(ps.body("stop-vm"))])
    assert params == {"Name": "a’b'c\n$(x)", "Mode": "shutdown"} and rest == ""
    with pytest.raises(ParseError):
        parse_assignments("$Name = 'unterminated\n")
    with pytest.raises(ParseError):
        parse_command_line("cmd /c dir")
