"""The HAProxy provider against a real HAProxy on loopback.

Two small HTTP servers stand in for the VMs' web tasks; HAProxy fronts them
with cookie persistence and a stick table on the session cookie, as the
reference site does. Everything listens on 127.0.0.1 only.
"""
from __future__ import annotations

import asyncio
import http.client
import shutil
import socket
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from opsconsole.providers.base import ProviderError
from opsconsole.providers.haproxy import HAProxy


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def web_server(name: str) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            body = name.encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


CONFIG = """
global
    stats socket {dir}/admin.sock mode 600 level admin
    stats socket {dir}/operator.sock mode 600 level operator
defaults
    mode http
    timeout connect 2s
    timeout client 10s
    timeout server 10s
frontend fe
    bind 127.0.0.1:{port}
    default_backend portail
backend portail
    balance roundrobin
    cookie SRV insert indirect nocache
    stick-table type string len 64 size 10k expire 30m
    stick on req.cook(SESSIONID)
    option httpchk GET /
    server vm-01 127.0.0.1:{p1} check inter 500ms cookie vm-01
    server vm-02 127.0.0.1:{p2} check inter 500ms cookie vm-02
"""


class Proxy:
    def __init__(self, tmp: Path) -> None:
        if shutil.which("haproxy") is None:
            pytest.fail("haproxy is not installed (tests/host-packages.sh installs it)")
        self.dir, self.port = tmp, free_port()
        self.backends = [web_server("vm-01"), web_server("vm-02")]
        self.cfg = tmp / "haproxy.cfg"
        self.cfg.write_text(CONFIG.format(dir=tmp, port=self.port,
                                          p1=self.backends[0].server_port,
                                          p2=self.backends[1].server_port))
        self.proc: subprocess.Popen | None = None
        self.start()

    def start(self) -> None:
        self.proc = subprocess.Popen(["haproxy", "-db", "-f", str(self.cfg)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 10
        while not (self.dir / "admin.sock").exists():
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError(f"haproxy did not start: {self.proc.stderr.read()!r}")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        for sock in ("admin.sock", "operator.sock"):
            (self.dir / sock).unlink(missing_ok=True)

    def get(self, cookie: str = "") -> str:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        conn.request("GET", "/", headers={"Cookie": cookie} if cookie else {})
        body = conn.getresponse().read().decode()
        conn.close()
        return body


@pytest.fixture
def proxy(tmp_path):
    p = Proxy(tmp_path)
    yield p
    p.stop()
    for b in p.backends:
        b.shutdown()


async def until_up(h: HAProxy, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while True:
        backends, servers, sessions = await h.read()
        if servers and all(s.status == "UP" for s in servers):
            return backends, servers, sessions
        assert time.monotonic() < deadline, f"servers not UP: {servers}"
        await asyncio.sleep(0.2)


async def test_read_servers_admin_state_and_backends(proxy):
    h = HAProxy(f"unix://{proxy.dir}/admin.sock")
    backends, servers, _ = await until_up(h)
    assert [b.name for b in backends] == ["portail"]
    assert sorted((s.name, s.admin, s.status) for s in servers) == \
        [("vm-01", "ready", "UP"), ("vm-02", "ready", "UP")]
    assert await h.read_only_reason() == ""


async def test_drain_keeps_sticky_sessions_and_sends_new_ones_elsewhere(proxy):
    h = HAProxy(f"unix://{proxy.dir}/admin.sock")
    await until_up(h)
    served = {cookie: proxy.get(f"SESSIONID={cookie}") for cookie in ("alice", "bob", "carol")}
    _, _, sessions = await h.read()
    assert sorted(s.server for s in sessions) == sorted(served.values())
    assert all("alice" not in s.session_id + s.client for s in sessions)   # keys stay hidden

    target = next(iter(served.values()))
    await h.set_server_state("portail", target, "drain")
    _, servers, _ = await h.read()
    drained = next(s for s in servers if s.name == target)
    assert drained.admin == "drain" and drained.status == "DRAIN"
    # a persisted user stays on the draining server; new users go to the other one
    sticky = next(c for c, srv in served.items() if srv == target)
    assert proxy.get(f"SESSIONID={sticky}") == target
    assert {proxy.get(f"SESSIONID=new{i}") for i in range(4)} == {"vm-01", "vm-02"} - {target}
    await h.set_server_state("portail", target, "ready")
    _, servers, _ = await h.read()
    assert next(s for s in servers if s.name == target).admin == "ready"


async def test_unknown_server_and_bad_state_are_clear_errors(proxy):
    h = HAProxy(f"unix://{proxy.dir}/admin.sock")
    with pytest.raises(ProviderError, match="No such server"):
        await h.set_server_state("portail", "vm-09", "drain")
    with pytest.raises(ProviderError, match="unknown server state"):
        await h.set_server_state("portail", "vm-01", "off")
    with pytest.raises(ProviderError, match="not a plain HAProxy name"):
        await h.set_server_state("portail", "vm-01 state maint;", "drain")


async def test_operator_level_socket_is_read_only(proxy):
    h = HAProxy(f"unix://{proxy.dir}/operator.sock")
    await until_up(h)
    reason = await h.read_only_reason()
    assert "operator level" in reason and "level admin" in reason
    with pytest.raises(ProviderError, match="Permission denied"):
        await h.set_server_state("portail", "vm-01", "drain")


async def test_socket_gone_is_a_clear_error(proxy):
    h = HAProxy(f"unix://{proxy.dir}/admin.sock", timeout=2)
    proxy.stop()
    with pytest.raises(ProviderError, match="does not exist|refuses connections"):
        await h.read()


async def test_restart_is_noticed_and_the_drain_left_to_whoever_set_it(proxy):
    h = HAProxy(f"unix://{proxy.dir}/admin.sock")
    await until_up(h)
    assert h.restarted_at == 0 and h.notices == [] and h.started_at > 0
    old_pid = proxy.proc.pid
    await h.set_server_state("portail", "vm-02", "drain")
    proxy.stop()       # a restart without a server-state file forgets the drain
    proxy.start()
    before = time.time()
    _, servers, _ = await h.read()      # the first read of the new process says so
    assert h.notices == [f"HAProxy restarted (pid {old_pid} -> {proxy.proc.pid})"]
    assert before - 5 < h.restarted_at <= time.time() + 1
    # the provider changes nothing by itself: the operation re-applies, audited
    assert next(s for s in servers if s.name == "vm-02").admin == "ready"
    assert h.started_at == h.restarted_at and h.parse_problems == []
    await h.read()     # the same process again: nothing new
    assert h.notices == [] and h.started_at == h.restarted_at
