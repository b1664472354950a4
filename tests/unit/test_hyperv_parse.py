"""Hyper-V provider logic without a network: answers, errors, settings."""
from __future__ import annotations

import asyncio
import json

import pytest
import requests
from winrm.exceptions import InvalidCredentialsError, WSManFaultError

from opsconsole import session
from opsconsole.model import VM
from opsconsole.providers import hyperv
from opsconsole.providers import powershell as ps
from opsconsole.providers.base import ProviderError
from opsconsole.providers.hyperv import HyperV, Unreachable, WinRMHost, explain, vm_state

GOOD_HOST = {"computer_name": "HV-01", "os_build": "20348.2849", "uptime_s": 100,
             "boot_epoch": 1_790_000_000, "pending_reboot": True}
GOOD_VM = {"name": "vm-01", "id": "9c2f...", "state": "Running", "uptime_s": 50,
           "cpu_pct": 3, "memory_bytes": 4 << 30}


# -- answers ---------------------------------------------------------------------------
def test_answer_is_the_last_json_line():
    out = b"WARNING: profile says hello\r\n{\"a\":1}\r\n"
    assert ps.parse_answer("hv-01", "read-host", 0, out) == {"a": 1}


@pytest.mark.parametrize("stdout, match", [
    (b"", "hv-01: read-host gave no JSON answer"),
    (b"hello", r"hv-01: read-host gave no JSON answer \(output: hello\)"),
    (b'{"host": {"computer_na', "hv-01: read-host: answer is not valid JSON"),
    (b'{"a": 1,}', "hv-01: read-host: answer is not valid JSON"),
    (b"{\xff\xfe}", "hv-01: read-host: answer is not valid JSON"),
    (b'{"error": "no VM named \'x\' on HV-01"}', "hv-01: read-host: no VM named 'x' on HV-01"),
])
def test_bad_answers_name_host_and_script(stdout, match):
    with pytest.raises(ProviderError, match=match):
        ps.parse_answer("hv-01", "read-host", 0, stdout)


def test_failure_without_json_shows_stderr():
    with pytest.raises(ProviderError, match=r"hv-01: get-vm failed \(exit 1\): The term"):
        ps.parse_answer("hv-01", "get-vm", 1, b"", b"The term 'Get-VM' is not recognized")


def test_non_zero_exit_with_a_good_answer_is_still_a_failure():
    with pytest.raises(ProviderError, match=r"failed \(exit 3\): boom"):
        ps.parse_answer("hv-01", "get-vm", 3, b'{"name": "x"}', b"boom")


def test_fields_are_checked():
    where = "hv-01: read-host"
    assert ps.field({"n": 3.0}, "n", int, where) == 3
    with pytest.raises(ProviderError, match="lacks field 'n'"):
        ps.field({}, "n", int, where)
    with pytest.raises(ProviderError, match="field 'n' should be int"):
        ps.field({"n": True}, "n", int, where)
    with pytest.raises(ProviderError, match="field 'n' should be int"):
        ps.field({"n": "3"}, "n", int, where)
    with pytest.raises(ProviderError, match="field 'b' should be bool"):
        ps.field({"b": 1}, "b", bool, where)


@pytest.mark.parametrize("text, state", [
    ("Running", "running"), ("Off", "off"), ("Saved", "saved"), ("Stopping", "stopping"),
    ("Starting", "starting"), ("Saving", "stopping"), ("Paused", "paused"),
    ("RunningCritical", "running"), ("OffCritical", "off"), ("Other", "other"), ("", "unknown")])
def test_vm_states_in_the_models_words(text, state):
    assert vm_state(text) == state


# -- reads through a fake call ------------------------------------------------------------
def provider(answers, vms=()) -> HyperV:
    hv = HyperV([WinRMHost("hv-01", username="u", password="p")], vms)

    def call(h, script, params):
        answer = answers(script, params)
        if isinstance(answer, Exception):
            raise answer
        return ps.parse_answer(h.cfg.name, script, 0, answer)
    hv._call_blocking = call            # type: ignore[method-assign]
    return hv


def test_read_merges_the_inventory():
    inventory = [VM("vm-01", "hv-01", address="10.0.0.1", node_hostname="node1"),
                 VM("vm-09", "hv-01", address="10.0.0.9")]
    hv = provider(lambda s, p: json.dumps({"host": GOOD_HOST, "vms": [GOOD_VM]}), inventory)
    hosts, vms = asyncio.run(hv.read())
    assert hosts[0].state == "up" and hosts[0].os_build == "20348.2849"
    assert hosts[0].pending_reboot and hosts[0].uptime_s == 100
    assert "not on this host: vm-09" in hosts[0].message
    assert vms == [VM("vm-01", "hv-01", "running", "10.0.0.1", "node1", 50, 3, 4 << 30),
                   VM("vm-09", "hv-01", "unknown", "10.0.0.9")]


def test_a_single_vm_object_is_a_list_of_one():
    hv = provider(lambda s, p: json.dumps({"host": GOOD_HOST, "vms": GOOD_VM}))
    assert [v.name for v in asyncio.run(hv.read())[1]] == ["vm-01"]


@pytest.mark.parametrize("answer, words", [
    ('{"vms": []}', "answer lacks field 'host'"),
    ('{"host": 3, "vms": []}', "field 'host' should be dict"),
    ('{"host": ', "not valid JSON"),
    ('[1, 2]', "no JSON answer"),
])
def test_unusable_read_answers_become_host_messages_and_problems(answer, words):
    hv = provider(lambda s, p: answer)
    hosts, vms = asyncio.run(hv.read())
    assert hosts[0].state == "unknown"
    assert hosts[0].message.startswith("hv-01: read-host") and words in hosts[0].message
    assert hv.parse_problems == [hosts[0].message]


@pytest.mark.parametrize("host, vms, words", [
    ({"computer_name": "HV-01"}, [GOOD_VM], "hv-01: read-host: os_build is missing"),
    (dict(GOOD_HOST, uptime_s="long"), [GOOD_VM], "uptime_s is 'long', not a number"),
    (dict(GOOD_HOST, pending_reboot=None), [GOOD_VM], None),
    (GOOD_HOST, 7, "hv-01: read-host: vms is 7, not a list"),
    (GOOD_HOST, [GOOD_VM, {"name": "x"}], "hv-01: read-host: VM x: state is missing"),
    (GOOD_HOST, [GOOD_VM, dict(GOOD_VM, name="x", cpu_pct="hot", memory_bytes=None)],
     "hv-01: read-host: VM x: cpu_pct is 'hot', not a number"),
    (GOOD_HOST, [GOOD_VM, "x"], "a VM entry without a name was left out: 'x'"),
    (GOOD_HOST, [GOOD_VM, {"name": None}], "a VM entry without a name was left out"),
    (GOOD_HOST, [GOOD_VM, GOOD_VM], "VM vm-01 is listed twice"),
])
def test_malformed_fields_are_degraded_and_reported_not_fatal(host, vms, words):
    hv = provider(lambda s, p: json.dumps({"host": host, "vms": vms}))
    hosts, got = asyncio.run(hv.read())
    assert hosts[0].state == "up"
    good = VM("vm-01", "hv-01", "running", uptime_s=50, cpu_pct=3, memory_bytes=4 << 30)
    assert (good in got) == isinstance(vms, list)   # a well-formed VM is read in full
    assert all(isinstance(v.uptime_s, int) and v.uptime_s >= 0 for v in got)
    if words is None:
        assert hv.parse_problems == []
    else:
        assert len(hv.parse_problems) == 1 and words in hv.parse_problems[0]
    bad = next((v for v in got if v.name == "x"), None)
    if bad is not None and "state" in (words or ""):
        assert bad.state == "unknown"


def test_problems_are_per_read():
    answers = iter([json.dumps({"host": GOOD_HOST, "vms": [{"name": "x"}]}),
                    json.dumps({"host": GOOD_HOST, "vms": [GOOD_VM]})])
    hv = provider(lambda s, p: next(answers))
    asyncio.run(hv.read())
    assert hv.parse_problems
    asyncio.run(hv.read())
    assert hv.parse_problems == []


def test_negative_uptime_is_a_clock_off_by_a_second_not_a_problem():
    hv = provider(lambda s, p: json.dumps({"host": dict(GOOD_HOST, uptime_s=-1),
                                           "vms": [dict(GOOD_VM, uptime_s=-2.0)]}))
    hosts, vms = asyncio.run(hv.read())
    assert hosts[0].uptime_s == 0 and vms[0].uptime_s == 0 and hv.parse_problems == []


def test_unreachable_keeps_the_last_known_vms_as_unknown():
    state = {"up": True}

    def answers(script, params):
        if state["up"]:
            return json.dumps({"host": GOOD_HOST, "vms": [GOOD_VM]})
        return Unreachable("hv-01: cannot reach https://hv-01:5986/wsman (connection refused)")
    hv = provider(answers)
    asyncio.run(hv.read())
    state["up"] = False
    hosts, vms = asyncio.run(hv.read())
    assert hosts[0].state == "unreachable" and "connection refused" in hosts[0].message
    assert [(v.name, v.state) for v in vms] == [("vm-01", "unknown")]


def test_a_host_answering_as_another_computer_is_not_acted_on():
    hv = HyperV([WinRMHost("hv-01", username="u", password="p", expect_computer_name="HV-01")])
    other = dict(GOOD_HOST, computer_name="HV-02")
    hv._call_blocking = lambda h, s, p: {"host": other, "vms": [GOOD_VM]}   # type: ignore
    hosts, _ = asyncio.run(hv.read())
    assert hosts[0].state == "unknown" and "answers as 'HV-02'" in hosts[0].message
    with pytest.raises(ProviderError, match="refusing to act"):
        asyncio.run(hv.start_vm("vm-01"))


def test_maintenance_script_must_be_an_absolute_windows_path():
    hv = provider(lambda s, p: "{}")
    for bad in ("relative\\x.ps1", 'C:\\a"b.ps1', "C:\\dir\\", "/unix/path.sh"):
        with pytest.raises(ProviderError, match="absolute Windows path"):
            asyncio.run(hv.install_updates("hv-01", 10, bad))


def updates(status: dict) -> HyperV:
    hv = provider(lambda s, p: json.dumps(status if s == "update-status" else {"ok": 1}))
    hv.poll_interval = 0
    return hv


def test_a_failed_update_report_is_an_error():
    report = json.dumps({"ok": False, "error": "0x80240022: no network"})
    with pytest.raises(ProviderError, match="hv-01: updates failed: 0x80240022: no network"):
        asyncio.run(updates({"task_state": "Ready", "last_result": 0, "report": report})
                    .install_updates("hv-01", 10))
    report = "\ufeff" + json.dumps({"ok": False, "result_code": 4, "installed": 1})
    with pytest.raises(ProviderError, match="Windows Update result code 4"):
        asyncio.run(updates({"task_state": "Ready", "last_result": 0, "report": report})
                    .install_updates("hv-01", 10))


def test_a_task_that_ends_without_a_report_is_an_error():
    with pytest.raises(ProviderError, match=r"ended \(result 0x80070005\) without a report"):
        asyncio.run(updates({"task_state": "Ready", "last_result": 0x80070005, "report": ""})
                    .install_updates("hv-01", 10))


# -- settings -------------------------------------------------------------------------------
def test_basic_needs_an_explicit_yes():
    cfg = WinRMHost("hv-01", transport="basic", username="u", password="p")
    with pytest.raises(ProviderError, match="basic .* only when explicitly allowed"):
        hyperv.make_session(cfg)
    session = hyperv.make_session(WinRMHost("hv-01", transport="basic", username="u",
                                            password="p", allow_basic=True))
    assert session.url == "https://hv-01:5986/wsman"


@pytest.mark.parametrize("cfg, words", [
    (WinRMHost("h", transport="digest", username="u", password="p"), "unknown transport"),
    (WinRMHost("h", transport="certificate"), "needs https and a client certificate"),
    (WinRMHost("h", transport="certificate", scheme="http", cert_pem="c", cert_key_pem="k"),
     "needs https"),
    (WinRMHost("h", username="u"), "needs a user and a password"),
    (WinRMHost("h", scheme="ftp", username="u", password="p"), "scheme must be https or http"),
    (WinRMHost("h", username="u", password="p", read_timeout=5, operation_timeout=5),
     "read_timeout must exceed"),
])
def test_bad_settings_are_named(cfg, words):
    with pytest.raises(ProviderError, match=words):
        hyperv.make_session(cfg)


def test_defaults_are_https_with_certificate_validation():
    cfg = WinRMHost("hv-01", address="hv-01.corp", username="u", password="p")
    session = hyperv.make_session(cfg)
    assert session.url == "https://hv-01.corp:5986/wsman"
    assert session.protocol.transport.server_cert_validation == "validate"
    assert session.protocol.transport.proxy is None


def test_passwords_stay_out_of_reprs_and_errors():
    cfg = WinRMHost("hv-01", username="admin", password="s3cret!", cert_key_pem="k.pem")
    assert "s3cret!" not in repr(cfg)
    assert "s3cret!" not in str(explain(InvalidCredentialsError("rejected"), cfg, "read-host"))


def test_credentials_come_from_the_named_variables(monkeypatch):
    monkeypatch.setenv("HV_PASS", "pw")
    assert session._secret("HV_PASS", "hv-01: WinRM password", hidden=True) == "pw"
    monkeypatch.delenv("HV_PASS")
    monkeypatch.setattr("sys.stdin.isatty", lambda: False)    # nobody to ask: say which
    with pytest.raises(ProviderError, match="environment variable HV_PASS is not set"):
        session._secret("HV_PASS", "hv-01: WinRM password", hidden=True)


def test_transport_failures_in_words():
    cfg = WinRMHost("hv-01", username="u", password="p", read_timeout=30)
    refused = requests.exceptions.ConnectionError(
        "HTTPSConnectionPool(...): Max retries exceeded (Caused by NewConnectionError("
        "'<...>: Failed to establish a new connection: [Errno 111] Connection refused'))")
    e = explain(refused, cfg, "read-host")
    assert isinstance(e, Unreachable)
    assert str(e) == "hv-01: cannot reach https://hv-01:5986/wsman (connection refused)"
    e = explain(requests.exceptions.ReadTimeout("..."), cfg, "stop-vm")
    assert isinstance(e, Unreachable)
    assert str(e) == "hv-01: stop-vm: WinRM did not answer within 30 s"
    e = explain(InvalidCredentialsError("x"), cfg, "read-host")
    assert not isinstance(e, Unreachable) and "HTTP 401" in str(e)
    fault = WSManFaultError(500, "Bad HTTP response", "<xml/>", "The shell was\n not found.",
                            wsman_fault_code=2150858843)
    assert str(explain(fault, cfg, "get-vm")) == \
        "hv-01: get-vm: WinRM fault: The shell was not found. (code 2150858843)"
    e = explain(requests.exceptions.SSLError("CERTIFICATE_VERIFY_FAILED"), cfg, "read-host")
    assert "TLS check" in str(e) and not isinstance(e, Unreachable)
    assert "KeyError" in str(explain(KeyError("x"), cfg, "read-host"))
