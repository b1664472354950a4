"""Fuzzed remote answers: Swarm objects, HAProxy runtime answers, Hyper-V JSON.

Whatever comes back, a provider raises nothing but ProviderError, hands back well-typed
entities (each id once), and says what it left out or degraded in `parse_problems`.
"""
from __future__ import annotations

import asyncio
import copy
import dataclasses
import json
import math
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from opsconsole.model import VM, Host, Node, ProxyServer, ProxySession, Service, Task
from opsconsole.providers import powershell as ps
from opsconsole.providers.base import PROBLEMS_CAP, ProviderError
from opsconsole.providers.haproxy import (
    HAProxy,
    parse_info,
    parse_servers_state,
    parse_sess,
    parse_stat,
    parse_table,
)
from opsconsole.providers.hyperv import HyperV, WinRMHost
from opsconsole.providers.swarm import DockerSwarm, parse_swarm

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Keys the parsers look for, so that random objects often hit them.
KEYS = ["ID", "Spec", "Description", "Status", "ManagerStatus", "Resources", "Hostname",
        "Role", "Availability", "State", "Leader", "Reachability", "Addr", "Engine",
        "EngineVersion", "NanoCPUs", "MemoryBytes", "Labels", "Message", "Name", "Mode",
        "Replicated", "Replicas", "Global", "TaskTemplate", "Placement", "Constraints",
        "MaxReplicas", "Reservations", "ContainerSpec", "Image", "UpdateStatus", "ServiceID",
        "Slot", "NodeID", "DesiredState", "Err", "host", "vms", "computer_name", "os_build",
        "uptime_s", "boot_epoch", "pending_reboot", "name", "state", "cpu_pct",
        "memory_bytes", "error"]
scalars = (st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats()
           | st.text(max_size=12) | st.sampled_from(["", "lots", "0x1", "-1", "3.5", "null"]))
json_values = st.recursive(
    scalars, lambda kids: st.lists(kids, max_size=3)
    | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=6), kids, max_size=4),
    max_leaves=12)
DELETE = object()


def paths(obj: Any, prefix: tuple = ()) -> list[tuple]:
    """Every key path into nested dicts."""
    out = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            out.append(prefix + (k,))
            out += paths(v, prefix + (k,))
    return out


def mutate(template: dict, changes: list[tuple[int, Any]]) -> dict:
    """The template with some entries replaced by random values or deleted."""
    obj = copy.deepcopy(template)
    where = paths(template)
    for index, value in changes:
        *parents, key = where[index % len(where)]
        d: Any = obj
        for p in parents:
            d = d.get(p) if isinstance(d, dict) else None
        if not isinstance(d, dict) or key not in d:
            continue            # an earlier change replaced its parent
        if value is DELETE:
            del d[key]
        else:
            d[key] = value
    return obj


changes = st.lists(st.tuples(st.integers(0, 10_000), st.just(DELETE) | json_values),
                   min_size=1, max_size=4)


def well_typed(entity: Any) -> None:
    """Every field has its annotated type; counts and times are not negative."""
    for f in dataclasses.fields(entity):
        value = getattr(entity, f.name)
        kind = {"str": str, "int": int, "bool": bool, "float": float}.get(str(f.type))
        if kind is not None:
            assert type(value) is kind, (entity, f.name, value)
            if kind in (int, float):
                assert value >= 0 and math.isfinite(value), (entity, f.name, value)
        elif str(f.type).startswith("tuple"):
            assert isinstance(value, tuple), (entity, f.name)
            for item in value:
                assert isinstance(item, str) or (isinstance(item, tuple) and all(
                    isinstance(x, str) for x in item)), (entity, f.name, item)
        else:
            raise AssertionError(f"unexpected field type {f.type}")


def unique_ids(entities: list) -> None:
    ids = [e.id for e in entities]
    assert len(ids) == len(set(ids)), ids


# -- Swarm ----------------------------------------------------------------------------------
NODE = {"ID": "node1", "Spec": {"Role": "manager", "Availability": "active",
                                "Labels": {"zone": "a"}},
        "Description": {"Hostname": "vm-01", "Engine": {"EngineVersion": "20.10.24"},
                        "Resources": {"NanoCPUs": 2_000_000_000, "MemoryBytes": 4 << 30}},
        "Status": {"State": "ready", "Addr": "10.0.0.1", "Message": ""},
        "ManagerStatus": {"Leader": True, "Reachability": "reachable"}}
SERVICE = {"ID": "svc1", "Spec": {
    "Name": "web", "Mode": {"Replicated": {"Replicas": 3}},
    "TaskTemplate": {"ContainerSpec": {"Image": "web:1@sha256:abc"},
                     "Placement": {"Constraints": ["node.role==worker"], "MaxReplicas": 1},
                     "Resources": {"Reservations": {"NanoCPUs": 100, "MemoryBytes": 200}}}},
    "UpdateStatus": {"State": "completed"}}
TASK = {"ID": "task1", "ServiceID": "svc1", "NodeID": "node1", "Slot": 1,
        "Status": {"State": "running", "Err": "", "Message": "started"},
        "DesiredState": "running"}
GOOD = (Node("node1", "vm-01", "manager", "active", "ready", True, "reachable", "10.0.0.1",
             "20.10.24", 2_000_000_000, 4 << 30, (("zone", "a"),), ""),
        Service("svc1", "web", "replicated", 3, "web:1", ("node.role==worker",), 1, 100, 200,
                "completed"),
        Task("task1", "svc1", "web", 1, "node1", "running", "running", "", "started"))


def test_the_templates_parse_whole_and_clean():
    problems: list[str] = []
    nodes, services, tasks = parse_swarm([NODE], [SERVICE], [TASK], problems)
    assert (nodes, services, tasks) == ([GOOD[0]], [GOOD[1]], [GOOD[2]]) and problems == []


def check_swarm(raw_nodes, raw_services, raw_tasks) -> list[str]:
    problems: list[str] = []
    try:
        nodes, services, tasks = parse_swarm(raw_nodes, raw_services, raw_tasks, problems)
    except ProviderError:
        assert not all(isinstance(x, list) for x in (raw_nodes, raw_services, raw_tasks))
        return problems
    for kind, raw, got in (("node", raw_nodes, nodes), ("service", raw_services, services),
                           ("task", raw_tasks, tasks)):
        assert all(type(e) is {"node": Node, "service": Service, "task": Task}[kind]
                   for e in got)
        for e in got:
            well_typed(e)
        unique_ids(got)
        # every object given is either shown or said to be left out
        left_out = [p for p in problems if p.startswith(f"a {kind} ")
                    or p.startswith(f"{kind} ") and "listed twice" in p]
        assert len(got) + len(left_out) == len(raw), (raw, got, problems)
    assert all(isinstance(p, str) and p for p in problems)
    return problems


@settings(FUZZ, max_examples=30)
@given(st.lists(changes, max_size=2), st.lists(changes, max_size=2),
       st.lists(changes, max_size=2), st.lists(json_values, max_size=2))
def test_mutated_swarm_objects_never_raise_and_stay_typed(node_changes, service_changes,
                                                          task_changes, junk):
    raw_nodes = [NODE] + [mutate(NODE, c) for c in node_changes] + junk
    raw_services = [SERVICE] + [mutate(SERVICE, c) for c in service_changes]
    raw_tasks = [mutate(TASK, c) for c in task_changes] + [TASK] + junk
    check_swarm(raw_nodes, raw_services, raw_tasks)


@FUZZ
@given(json_values, json_values, json_values)
def test_arbitrary_json_as_swarm_answers_never_raises(nodes, services, tasks):
    check_swarm(nodes, services, tasks)


# Typed leaves: a wrong type there is always reported, naming the object and the field,
# and the rest of the object is still read.
SWARM_LEAVES = [
    (NODE, ("Description", "Resources", "NanoCPUs"), "a number", "node node1", 0),
    (NODE, ("Description", "Hostname"), "text", "node node1", 0),
    (NODE, ("Spec", "Availability"), "text", "node node1", 0),
    (NODE, ("ManagerStatus", "Leader"), "true or false", "node node1", 0),
    (NODE, ("Spec", "Labels"), "an object of text values", "node node1", 0),
    (NODE, ("Description",), "an object", "node node1", 0),
    (SERVICE, ("Spec", "Mode"), "an object", "service web", 1),
    (SERVICE, ("Spec", "Mode", "Replicated", "Replicas"), "a number", "service web", 1),
    (SERVICE, ("Spec", "TaskTemplate", "Placement", "Constraints"), "a list of text",
     "service web", 1),
    (SERVICE, ("UpdateStatus", "State"), "text", "service web", 1),
    (TASK, ("Slot",), "a number", "task task1", 2),
    (TASK, ("Status",), "an object", "task task1", 2),
    (TASK, ("DesiredState",), "text", "task task1", 2),
]
NOT_A_NUMBER = (st.text(max_size=5) | st.booleans()
                | st.floats(allow_infinity=True).filter(lambda f: not f.is_integer())
                | st.lists(st.integers(), max_size=2))
WRONG = {"a number": NOT_A_NUMBER | st.integers(-10**6, -1),     # a count is never negative
         "text": st.integers() | st.booleans() | st.lists(st.text(), max_size=2)
         | st.dictionaries(st.text(max_size=3), st.text(max_size=3), max_size=2),
         "true or false": st.integers() | st.text(max_size=5),
         "an object": st.integers() | st.text(max_size=5) | st.lists(st.integers(), max_size=2),
         "a list of text": st.text(max_size=5) | st.lists(st.integers(), min_size=1, max_size=2),
         "an object of text values": st.lists(st.text(), max_size=2)
         | st.dictionaries(st.text(max_size=3), st.integers(), min_size=1, max_size=2)}


@FUZZ
@given(st.data())
def test_a_wrong_type_in_a_field_is_reported_by_object_and_field(data):
    template, path, expected, what, kind = data.draw(st.sampled_from(SWARM_LEAVES))
    value = data.draw(WRONG[expected])
    obj = copy.deepcopy(template)
    d = obj
    for key in path[:-1]:
        d = d[key]
    d[path[-1]] = value
    raw: list[list] = [[NODE], [SERVICE], [TASK]]
    raw[kind] = [obj]
    problems = check_swarm(*raw)
    assert len(problems) == 1 and problems[0].startswith(f"{what}: {path[-1]} is "), problems
    assert problems[0].endswith(f"not {expected}") or "not " in problems[0]
    entity = parse_swarm(*raw, [])[kind][0]
    assert entity.swarm_id == GOOD[kind].swarm_id       # still shown, with its id


@FUZZ
@given(st.lists(json_values, max_size=30))
def test_a_swarm_read_reports_at_most_a_screenful_of_problems(junk):
    swarm = DockerSwarm(("unix:///nowhere",))

    async def answer(fn):
        return [NODE] + junk, junk, junk
    swarm._run = answer                         # type: ignore[method-assign]
    swarm._ensure_events = lambda: None         # type: ignore[method-assign]
    try:
        nodes, services, tasks = asyncio.run(swarm.read())
    except ProviderError as e:
        assert str(e).startswith("unix:///nowhere: ")
        return
    assert nodes[0] == GOOD[0] and len(swarm.parse_problems) <= PROBLEMS_CAP
    assert bool(swarm.parse_problems) == bool(junk)


# -- HAProxy ---------------------------------------------------------------------------------
STAT_HEADER = "# pxname,svname,qcur,scur,stot,status,weight,addr,check_status,"
STAT_ROWS = ["fe,FRONTEND,,5,5,OPEN,,,,", "portail,vm-01,0,2,7,UP,1,10.0.0.1:80,L7OK,",
             "portail,vm-02,0,3,9,DRAIN,1,10.0.0.2:80,L7OK,", "portail,BACKEND,0,5,16,UP,2,,,"]
lines = st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=40)


def check_servers(servers: list) -> None:
    for s in servers:
        well_typed(s)
    unique_ids(servers)


@FUZZ
@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 9), lines), max_size=4),
       st.lists(lines, max_size=3), st.booleans())
def test_show_stat_with_broken_rows_and_garbage(edits, garbage, cut_last):
    rows = [r.split(",") for r in STAT_ROWS]
    for row, col, text in edits:
        fields = rows[row]
        if col < len(fields):
            fields[col] = text
        else:
            fields.append(text)
    text = "\n".join([STAT_HEADER] + [",".join(r) for r in rows] + garbage)
    if cut_last:
        text = text[:-7]
    problems: list[str] = []
    try:
        backends, servers = parse_stat(text, problems)
    except ProviderError:
        assert not text.startswith(STAT_HEADER.split(",")[0])
        return
    check_servers(servers)
    unique_ids(backends)
    for name in ("vm-01", "vm-02"):
        original = next(r for r in STAT_ROWS if f",{name}," in r)
        if original in text.splitlines():               # an untouched row is read in full
            assert any(s.name == name for s in servers)
    if any(not t.isdigit() and t and c in (3, 4, 6) and r in (1, 2) for r, c, t in edits):
        assert problems                                 # a bad count is said


@FUZZ
@given(st.text(max_size=300))
def test_arbitrary_text_as_any_haproxy_answer(text):
    for parse in (lambda t, p: parse_stat(t, p), lambda t, p: parse_servers_state(t, p),
                  lambda t, p: parse_sess(t, 1000.0, p), lambda t, p: parse_table(t, "b", 5.0, p),
                  lambda t, p: parse_info(t, 1000.0, p)):
        for answer in (text, "1\n# be_name srv_name srv_admin_state\n" + text,
                       "# table: b, type: string, size:10, used:1\n" + text):
            problems: list[str] = []
            try:
                result = parse(answer, problems)
            except ProviderError:
                continue
            assert all(isinstance(p, str) for p in problems)
            if isinstance(result, list):
                for s in result:
                    assert isinstance(s, ProxySession)
                    well_typed(s)


@FUZZ
@given(st.dictionaries(st.sampled_from(["show info", "show stat", "show servers state",
                                        "show sess", "show table"]),
                       st.text(max_size=200) | st.sampled_from(
                           ["\n".join([STAT_HEADER, *STAT_ROWS]),
                            "1\n# be_id be_name srv_id srv_name srv_admin_state\n"
                            "3 portail 1 vm-01 8\n3 portail 2 vm-02 x\n",
                            "Pid: 5\nUptime_sec: 9\n", "# table: portail, type: string, "
                            "size:10, used:1\n"])),
       st.lists(st.sampled_from(["0x1: key=a server_key=vm-01", "0x2: key=b", "junk",
                                 "0x3: key=c server_key=vm-02 exp=garbage"]), max_size=4))
@example(answers={"show stat": "\n".join([STAT_HEADER, *STAT_ROWS]),  # found by this test:
                  "show servers state": "1\n# be_name srv_name srv_admin_state\n",
                  "show table": "# table: portail, type: string, size:10, used:1\n"},
         table=["0x1: key=a server_key=vm-01"] * 2)          # an int start, a twice-listed id
def test_a_haproxy_read_of_fuzzed_answers(answers, table):
    h = HAProxy("unix:///nowhere")

    async def ask(cmd):
        if cmd.startswith("show table "):
            return "# table: portail, type: string, size:10, used:1\n" + "\n".join(table), False
        return answers.get(cmd, ""), False
    h._ask = ask                                # type: ignore[method-assign]
    try:
        backends, servers, sessions = asyncio.run(h.read())
    except ProviderError:
        return
    check_servers(servers)
    assert all(isinstance(s, ProxyServer) and s.admin in ("ready", "drain", "maint",
                                                          "unknown") for s in servers)
    for s in sessions:
        well_typed(s)
    unique_ids(sessions + backends)
    assert len(h.parse_problems) <= PROBLEMS_CAP and h.notices == []


# -- Hyper-V ---------------------------------------------------------------------------------
HOST = {"computer_name": "HV-01", "os_build": "20348", "uptime_s": 100,
        "boot_epoch": 1_790_000_000, "pending_reboot": False}
VM1 = {"name": "vm-01", "state": "Running", "uptime_s": 5, "cpu_pct": 3, "memory_bytes": 1024}
READ_HOST = {"host": HOST, "vms": [VM1, dict(VM1, name="vm-02", state="Off")]}
INVENTORY = [VM("vm-01", "hv-01", address="10.0.0.1"), VM("vm-03", "hv-01")]


def read_host(stdout: bytes, status: int = 0) -> tuple[HyperV, list[Host], list[VM]]:
    hv = HyperV([WinRMHost("hv-01", username="u", password="p")], INVENTORY)
    hv._call_blocking = lambda h, script, params: ps.parse_answer(  # type: ignore
        "hv-01", script, status, stdout)
    hosts, vms = asyncio.run(hv.read())
    assert [h.name for h in hosts] == ["hv-01"]
    for e in [*hosts, *vms]:
        well_typed(e)
    unique_ids(vms)
    assert {"vm-01", "vm-03"} <= {v.name for v in vms}  # the inventory's stay listed
    assert hosts[0].state in ("up", "unknown")
    if hosts[0].state == "unknown":
        assert hv.parse_problems and all(v.state == "unknown" for v in vms)
    return hv, hosts, vms


def test_the_hyperv_template_reads_clean():
    hv, hosts, vms = read_host(json.dumps(READ_HOST).encode())
    assert hv.parse_problems == [] and hosts[0].state == "up"
    assert [(v.name, v.state) for v in vms] == [("vm-01", "running"), ("vm-02", "off"),
                                               ("vm-03", "unknown")]


@FUZZ
@given(changes)
def test_mutated_hyperv_answers(edits):
    answer = mutate(READ_HOST, edits)
    hv, hosts, vms = read_host(json.dumps(answer).encode())
    # as JSON: in Python False == 0, but `"pending_reboot": 0` is a malformed answer
    if json.dumps(answer, sort_keys=True) == json.dumps(READ_HOST, sort_keys=True):
        assert hv.parse_problems == []


@FUZZ
@given(json_values | st.binary(max_size=60).map(lambda b: b.decode("latin-1")),
       st.sampled_from([0, 1]))
def test_arbitrary_hyperv_output(value, status):
    out = value if isinstance(value, str) else json.dumps(value)
    hv, hosts, _ = read_host(("noise\r\n" + out).encode("utf-8", "surrogatepass"), status)
    if not (isinstance(value, dict) and isinstance(value.get("host"), dict)):
        assert hosts[0].state == "unknown"      # no host object: nothing of it is shown


HYPERV_LEAVES = [(("host", "uptime_s"), "a number"), (("host", "os_build"), "text"),
                 (("host", "pending_reboot"), "true or false"),
                 (("host", "computer_name"), "text")]


@FUZZ
@given(st.data())
def test_a_wrong_type_in_a_hyperv_field_is_reported(data):
    path, expected = data.draw(st.sampled_from(HYPERV_LEAVES))
    answer = copy.deepcopy(READ_HOST)
    # (a negative uptime is a clock a second off: read as 0, not reported)
    answer[path[0]][path[1]] = data.draw(NOT_A_NUMBER if expected == "a number"
                                         else WRONG[expected])
    vm_field = data.draw(st.sampled_from(["uptime_s", "cpu_pct", "memory_bytes"]))
    answer["vms"][1][vm_field] = data.draw(st.text(max_size=4) | st.lists(st.integers()))
    hv, hosts, vms = read_host(json.dumps(answer).encode())
    assert hosts[0].state == "up"
    assert any(f"{path[1]} is " in p for p in hv.parse_problems), hv.parse_problems
    assert any(p.startswith(f"hv-01: read-host: VM vm-02: {vm_field} is ")
               for p in hv.parse_problems), hv.parse_problems
    assert next(v for v in vms if v.name == "vm-01").cpu_pct == 3   # the rest is read
