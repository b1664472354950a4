"""What the providers could not read becomes Problems of their source; HAProxy restarts are
noticed, not repaired behind the audit log; a Swarm manager that stops answering is left
within the short read timeout."""
from __future__ import annotations

import asyncio
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from opsconsole.cluster import Cluster
from opsconsole.model import HYPERV, PROXY, SWARM, VM, Backend, Host, Node, ProxyServer
from opsconsole.providers import swarm as swarm_module
from opsconsole.providers.base import ProviderError, Providers
from opsconsole.providers.haproxy import HAProxy
from opsconsole.providers.swarm import CountingClient, DockerSwarm

LEADER = Node("n1", "vm-01", role="manager", leader=True)


class FakeSwarm:
    endpoint = "fake://manager"

    def __init__(self) -> None:
        self.nodes, self.parse_problems = [LEADER], []

    async def read(self):
        return list(self.nodes), [], []

    async def read_lock(self):
        return None


class FakeHypervisor:
    def __init__(self) -> None:
        self.hosts = [Host("hv-01"), Host("hv-02")]
        self.parse_problems: list[str] = []
        self.fail: Exception | None = None

    async def read(self):
        if self.fail:
            raise self.fail
        return list(self.hosts), [VM("vm-01", "hv-01")]


class FakeProxy:
    def __init__(self) -> None:
        self.parse_problems: list[str] = []
        self.notices: list[str] = []

    async def read(self):
        return [Backend("portail")], [ProxyServer("portail", "vm-01")], []

    async def read_only_reason(self):
        return ""


def cluster() -> tuple[Cluster, FakeSwarm, FakeHypervisor, FakeProxy]:
    s, h, p = FakeSwarm(), FakeHypervisor(), FakeProxy()
    return Cluster(Providers(s, h, p)), s, h, p


def test_parse_problems_are_problems_of_their_source_with_a_steady_since():
    c, s, h, p = cluster()
    s.parse_problems = ["node abc123: NanoCPUs is 'lots', not a number"]
    p.parse_problems = ["show stat: truncated answer at line 4"]
    first = asyncio.run(c.snapshot())
    assert [(x.source, x.message) for x in first.problems] == [
        (SWARM, "node abc123: NanoCPUs is 'lots', not a number"),
        (PROXY, "show stat: truncated answer at line 4")]
    assert first.nodes == (LEADER,) and len(first.servers) == 1    # the rest is shown
    time.sleep(0.01)
    second = asyncio.run(c.snapshot())
    assert [x.since for x in second.problems] == [x.since for x in first.problems]
    s.parse_problems = []
    assert [x.source for x in asyncio.run(c.snapshot()).problems] == [PROXY]


def test_an_unreachable_hyperv_host_is_a_problem_naming_it():
    c, s, h, p = cluster()
    h.hosts[1] = Host("hv-02", state="unreachable",
                      message="hv-02: cannot reach https://hv-02:5986/wsman (connection refused)")
    snap = asyncio.run(c.snapshot())
    assert [(x.source, x.entity, x.message) for x in snap.problems] == [
        (HYPERV, "host:hv-02",
         "hv-02 unreachable: cannot reach https://hv-02:5986/wsman (connection refused)")]
    since = snap.problems[0].since
    # the frequent polls that skip Hyper-V keep the problem, with its since
    kept = asyncio.run(c.snapshot(hypervisor=False))
    assert [(x.entity, x.since) for x in kept.problems] == [("host:hv-02", since)]
    assert [(x.entity, x.since) for x in asyncio.run(c.snapshot()).problems] == \
        [("host:hv-02", since)]
    h.hosts[1] = Host("hv-02", state="rebooting", message="restarting since 10:00:00")
    assert asyncio.run(c.snapshot()).problems == ()     # a restart the console started


def test_a_failed_hyperv_read_is_one_problem_not_one_per_host():
    c, s, h, p = cluster()
    asyncio.run(c.snapshot())
    h.fail = ProviderError("WinRM: no session")
    snap = asyncio.run(c.snapshot())
    assert [(x.source, x.message) for x in snap.problems] == [(HYPERV, "WinRM: no session")]
    assert {x.state for x in snap.hosts} == {"unreachable"}


def test_a_swarm_without_a_leader_is_a_problem():
    c, s, h, p = cluster()
    s.nodes = [Node("n1", "vm-01", role="manager"), Node("n2", "vm-02", role="manager")]
    snap = asyncio.run(c.snapshot())
    assert [(x.source, x.message) for x in snap.problems] == [
        (SWARM, "no manager is the Raft leader (an election, or quorum lost): "
                "the swarm takes no changes")]
    s.nodes = [LEADER]
    assert asyncio.run(c.snapshot()).problems == ()


def test_status_exits_6_when_a_hyperv_host_is_unreachable(monkeypatch):
    from click.testing import CliRunner

    from opsconsole import cli
    from opsconsole import session as session_module
    c, s, h, p = cluster()
    h.hosts[0] = Host("hv-01", state="unreachable", message="hv-01: WinRM did not answer")
    real = session_module.open_session
    monkeypatch.setattr(cli, "open_session", lambda *a, **kw: real(
        providers=Providers(s, h, p)))
    result = CliRunner().invoke(cli.main, ["status", "--json"])
    assert result.exit_code == 6, result.output
    problems = json.loads(result.output)["problems"]
    assert [(x["source"], x["entity"]) for x in problems] == [(HYPERV, "host:hv-01")]


# -- HAProxy restarts ---------------------------------------------------------------------
STAT = ("# pxname,svname,scur,stot,status,weight,\nportail,BACKEND,0,0,UP,1,\n"
        "portail,vm-01,0,0,UP,1,\n")
STATE = "1\n# be_id be_name srv_id srv_name srv_admin_state\n3 portail 1 vm-01 8\n"


def haproxy_answering(info: list[str]) -> HAProxy:
    h = HAProxy("unix:///nowhere")

    async def ask(cmd):
        return {"show info": info[0], "show stat": STAT, "show servers state": STATE,
                "show sess": "", "show table": ""}[cmd], False
    h._ask = ask       # type: ignore[method-assign]
    return h


def test_a_haproxy_restart_is_noticed_and_nothing_is_set_behind_the_audit():
    info = ["Pid: 100\nUptime_sec: 50\n"]
    h = haproxy_answering(info)
    sent: list[str] = []
    h.command = lambda cmd: sent.append(cmd)   # type: ignore[method-assign,assignment,return-value]
    _, servers, _ = asyncio.run(h.read())
    assert servers[0].admin == "drain" and h.notices == [] and h.restarted_at == 0
    started = h.started_at
    assert time.time() - 52 < started < time.time() - 48
    info[0] = "Pid: 100\nUptime_sec: 51\n"       # a second later: the same process
    asyncio.run(h.read())
    assert h.notices == [] and h.started_at == started
    info[0] = "Pid: 230\nUptime_sec: 1\nStart_time_sec: 1800000000\n"
    asyncio.run(h.read())
    assert h.notices == ["HAProxy restarted (pid 100 -> 230)"]
    assert h.restarted_at == h.started_at == 1800000000.0
    asyncio.run(h.read())
    assert h.notices == [] and h.restarted_at == 1800000000.0
    info[0] = "Pid: 230\nStart_time_sec: 1800000900\n"     # same pid (a container), later start
    asyncio.run(h.read())
    assert h.notices == ["HAProxy restarted (pid 230 -> 230)"] and h.restarted_at == 1800000900
    assert sent == [] and not hasattr(h, "held")


def test_show_info_without_pid_is_a_problem_not_a_restart():
    h = haproxy_answering(["Unknown command.\n"])
    asyncio.run(h.read())
    assert h.parse_problems == ["show info: no Pid and start time ('Unknown command.'): "
                                "a restart of HAProxy cannot be noticed"]
    assert h.notices == [] and h.restarted_at == 0


# -- Swarm: short read timeouts, failover, the event stream ---------------------------------
NODES = [{"ID": "n1", "Spec": {"Role": "manager", "Availability": "active"},
          "Description": {"Hostname": "vm-01", "Resources": {"NanoCPUs": 2_000_000_000}},
          "Status": {"State": "ready", "Addr": "10.0.0.1"}, "ManagerStatus": {"Leader": True}},
         {"ID": "n2", "Spec": {"Role": "worker", "Availability": "active"},
          "Description": {"Hostname": "vm-02", "Resources": {"NanoCPUs": "lots"}},
          "Status": {"State": "ready"}}]
SERVICES = [{"ID": "s1", "Spec": {"Name": "web", "Mode": {"Replicated": {"Replicas": 2}}},
             "UpdateStatus": {"State": "updating"}}]
TASKS = [{"ID": "t1", "ServiceID": "s1", "NodeID": "n1", "Slot": 1,
          "Status": {"State": "running"}, "DesiredState": "running"}]


class FakeManager:
    """The few Docker API answers a read needs, on loopback; it can stop answering."""

    def __init__(self) -> None:
        self.hang = threading.Event()           # set: accept, then never answer
        self.release = threading.Event()        # set at the end: hung handlers return
        self.events_open = threading.Event()
        self.events_end = threading.Event()
        manager = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if manager.hang.is_set():
                    manager.release.wait(30)
                    return
                path = self.path.split("?")[0]
                if path.endswith("/events"):
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.end_headers()
                    manager.events_open.set()
                    manager.events_end.wait(30)     # then the connection closes: stream ends
                    return
                body = json.dumps({"/version": {"ApiVersion": "1.41", "Version": "20.10"},
                                   "/v1.41/nodes": NODES, "/v1.41/services": SERVICES,
                                   "/v1.41/tasks": TASKS, "/v1.41/swarm": {"Spec": {}}}
                                  [path]).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.endpoint = f"tcp://127.0.0.1:{self.server.server_port}"

    def stop(self) -> None:
        self.release.set()
        self.events_end.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def managers():
    made = [FakeManager(), FakeManager()]
    yield made
    for m in made:
        m.stop()


def test_reads_wait_the_short_timeout_and_writes_the_whole_one():
    swarm = DockerSwarm(("tcp://127.0.0.1:1",), timeout=10)
    assert swarm.read_timeout == 3.0
    assert DockerSwarm(("tcp://127.0.0.1:1",), timeout=2).read_timeout == 1.0
    assert DockerSwarm(("tcp://127.0.0.1:1",), timeout=0.5).read_timeout == 0.5
    swarm._client = object()        # type: ignore[assignment]
    seen = lambda api: swarm_module._timeout.value     # noqa: E731
    assert swarm._call(seen) == 3.0 and swarm._call(seen, write=True) == 10
    client = CountingClient(base_url="tcp://127.0.0.1:1", version="1.41", timeout=10)
    swarm_module._timeout.value = 3.0
    try:
        assert client._set_request_timeout({}) == {"timeout": 3.0}
    finally:
        swarm_module._timeout.value = None
    assert client._set_request_timeout({}) == {"timeout": 10}
    assert client._set_request_timeout({"timeout": None}) == {"timeout": None}  # streams


async def test_a_manager_that_stops_answering_is_left_within_the_read_timeout(managers):
    first, second = managers
    swarm = DockerSwarm((first.endpoint, second.endpoint), timeout=5)     # reads: 1.5 s
    try:
        nodes, services, tasks = await swarm.read()
        assert swarm.endpoint == first.endpoint
        assert [n.nano_cpus for n in nodes] == [2_000_000_000, 0]
        assert swarm.parse_problems == ["node n2: NanoCPUs is 'lots', not a number"]
        assert services[0].update_state == "updating" and tasks[0].service_name == "web"
        first.hang.set()
        started = time.monotonic()
        await swarm.read()
        took = time.monotonic() - started
        assert swarm.endpoint == second.endpoint and took < 3.5, took
        assert swarm.failover.startswith(f"switched from {first.endpoint} to "
                                         f"{second.endpoint}: {first.endpoint}: timed out")
    finally:
        first.release.set()
        await swarm.close()


async def test_the_end_of_the_event_stream_wakes_the_console(managers):
    manager = managers[0]
    swarm = DockerSwarm((manager.endpoint,), timeout=5)
    try:
        await swarm.read()
        assert await asyncio.to_thread(manager.events_open.wait, 5)
        changes = swarm._changes
        waiting = asyncio.create_task(swarm.wait_for_change(20))
        await asyncio.sleep(0.3)
        assert not waiting.done()           # an open, quiet stream: nothing to wake for
        started = time.monotonic()
        manager.events_end.set()            # the manager closed it (stopped, restarted)
        await asyncio.wait_for(waiting, 5)
        assert time.monotonic() - started < 2 and swarm._changes > changes
    finally:
        await swarm.close()


async def test_a_leaderless_answer_says_so(managers):
    swarm = DockerSwarm(("tcp://127.0.0.1:1",), timeout=2)

    def refuse(api):
        from docker.errors import APIError
        raise APIError("500 Server Error", explanation="rpc error: code = Unknown desc = The "
                       "swarm does not have a leader. It's possible that too few managers "
                       "are online.")
    swarm._client = object()        # type: ignore[assignment]
    with pytest.raises(ProviderError, match="^the swarm has no leader: tcp://127.0.0.1:1: "
                                            "the swarm has no leader"):
        await swarm._run(refuse)


# -- writes and odd answers: still only ProviderError ---------------------------------------
@pytest.mark.parametrize("inspected", [{}, {"Spec": None, "Version": {"Index": 3}},
                                       {"Spec": {}, "Version": {"Index": "3"}}, ["x"]])
async def test_a_write_on_a_malformed_object_changes_nothing(inspected):
    swarm = DockerSwarm(("tcp://127.0.0.1:1",))
    updates: list = []

    class Api:
        def inspect_node(self, node_id):
            return inspected

        def update_node(self, *args):
            updates.append(args)
    swarm._client = Api()           # type: ignore[assignment]
    with pytest.raises(ProviderError, match="has no Spec or version index; nothing was"):
        await swarm.set_availability("n1", "drain")
    assert updates == []


@pytest.mark.parametrize("label", ['{"holder": "a", "op": "1", "title": "t", "since": 1e999}',
                                   '{"holder": "a", "op": "1", "title": "t", "since": 1, '
                                   '"pid": Infinity}', "[1]", "7"])
def test_an_odd_lock_label_is_still_a_lock(label):
    lock = swarm_module.lock_from_labels({swarm_module.LOCK_LABEL: label})
    assert lock is not None and lock.holder.startswith(("a", "someone"))
    assert swarm_module.lock_from_labels([label]) is None       # labels not an object


def test_an_update_report_with_odd_numbers_is_a_provider_error():
    from opsconsole.providers.hyperv import HyperV, WinRMHost
    hv = HyperV([WinRMHost("hv-01", username="u", password="p")])
    with pytest.raises(ProviderError, match="field 'installed' should be int, got 'three'"):
        hv._update_report("hv-01", json.dumps({"ok": True, "installed": "three"}))
    assert hv._update_report("hv-01", json.dumps({"ok": True, "installed": 3.0})).installed == 3


@pytest.mark.parametrize("mode, expected, problem", [
    ({}, "unknown", "service web: Mode is {}, not a known mode"),
    ({"Weird": {}}, "unknown", "service web: Mode is {'Weird': {}}, not a known mode"),
    (None, "unknown", "service web: Mode is null, not an object"),
    ({"ReplicatedJob": {}}, "replicated-job", None),
    ({"Global": {}}, "global", None),
])
def test_service_modes(mode, expected, problem):
    problems: list[str] = []
    service = swarm_module.parse_service({"ID": "s1", "Spec": {"Name": "web", "Mode": mode}},
                                         problems)
    assert service is not None and service.mode == expected and service.replicas == 0
    assert problems == ([problem] if problem else [])


async def test_the_simulated_haproxy_restarts_like_the_real_one():
    from opsconsole.providers.sim import ManualClock, SimCluster
    sim = SimCluster(seed=3, clock=ManualClock())
    c = Cluster(sim.providers())
    await sim.providers().proxy.set_server_state("portail", "vm-01", "drain")
    snap = await c.snapshot()
    proxy = c.providers.proxy
    assert snap.get("proxy:portail/vm-01").admin == "drain" and proxy.restarted_at == 0
    sim.restart_proxy()
    snap = await c.snapshot()
    assert snap.get("proxy:portail/vm-01").admin == "ready"       # forgotten, as HAProxy does
    assert snap.notices == ("HAProxy restarted (pid 1000 -> 1001)",)
    assert proxy.restarted_at == proxy.started_at > 0
    assert (await c.snapshot()).notices == ()
