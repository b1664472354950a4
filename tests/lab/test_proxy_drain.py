"""A session-aware drain under load: the real HAProxy, real users, the real swarm.

The lab's HAProxy fronts the global `portal` service (one server per VM,
cookie persistence plus a stick table on the session cookie). The load
generator (tests/lab/load.py, its own process) sends a steady stream of
virtual users through it, each on a keep-alive connection for 2-4 s. The
console drains a node through its engine, as an operator would: the proxy
server to DRAIN, the wait until its users' sessions are gone, then the Swarm
drain. Nobody notices: not a request fails, no user changes VM.
"""
from __future__ import annotations

import asyncio
import dataclasses
import time

from opsconsole.config import load
from opsconsole.ops.catalog import build
from opsconsole.ops.engine import DONE
from opsconsole.ops.plans import Timing
from opsconsole.session import open_session

from .labkit import ProxyWatch, running_on, step_times, until
from .load import LoadRun, summary

TARGET = "vm-04"                # a worker; portal (global), agent and maybe web run there
TIMING = Timing(sessions_timeout=40, sessions_threshold=0, drain_timeout=90)


async def test_drain_under_load_keeps_every_session_then_activate_brings_it_back(
        lab, console, tmp_path):
    cluster, engine = console.cluster, console.engine
    with LoadRun(lab.portal_url, tmp_path / "load.json", users=24, duration=300) as load, \
            ProxyWatch(lab) as watch:
        await until(lambda: lab.proxy_sessions().get(TARGET, 0) >= 2,
                    f"users with a session on {TARGET}", timeout=30)
        snap = await cluster.snapshot()
        (server,) = snap.servers_of_vm(TARGET)
        assert (server.backend, server.name, server.status) == ("portal", TARGET, "UP")
        assert server.cur_sessions >= 1                      # the console sees them
        plan = build("drain", snap, TARGET, TIMING)
        assert [s.title for s in plan.steps] == [
            f"set proxy server portal/{TARGET} to drain",
            f"wait for sessions on portal/{TARGET} to end (≤0, 40s)",
            f"set {TARGET} availability to pause",
            f"start the replacements of {TARGET}'s tasks on other nodes first",
            f"set {TARGET} availability to drain",
            f"scale the moved services back to their replica counts ({TARGET})",
            f"wait until {TARGET} runs no tasks and its services converge (90s)"]
        op = engine.start(plan)
        # HAProxy shows the server draining while its users finish their visits
        await until(lambda: lab.proxy_servers()[TARGET][:2] == ("DRAIN", "drain"),
                    "haproxy to show DRAIN", timeout=30, step=0.05)
        await asyncio.wait_for(op.task, 180)
        assert op.state == DONE, op.error
        assert not [line for line in op.log if "⚠" in line]   # the sessions ended in time

        drain_set = step_times(op, "set proxy server")[1]
        waited = step_times(op, "wait for sessions")
        node_drained = step_times(op, f"set {TARGET} availability to drain")[0]
        # the Swarm drain came only once HAProxy had no session left on the server: the
        # first sample from then on shows none (a 0.1 s sample just before may still show the
        # last one expiring; that no user was cut off is checked on the users below)
        after = [s for t, *s in watch.of(TARGET) if t >= node_drained]
        assert after and after[0][2] == 0, after[:3]
        assert max(s[2] for t, *s in watch.of(TARGET) if t > drain_set) >= 1
        assert waited[1] - waited[0] > 0.5                    # it really waited for them

        # the node: drained, its portal task gone (global: none elsewhere instead), server down
        assert lab.node_states()[TARGET][1] == "drain"
        assert TARGET not in running_on(lab, "portal")
        await until(lambda: lab.proxy_servers()[TARGET][0].startswith("DOWN")
                    and lab.proxy_servers()[TARGET][1] == "drain",
                    "haproxy to see the drained server down", timeout=30)

        op = await engine.run(build("activate", await cluster.snapshot(), TARGET))
        assert op.state == DONE, op.error
        ready_set = step_times(op, f"set proxy server portal/{TARGET} to ready")[1]
        assert lab.node_states()[TARGET][1] == "active"
        await until(lambda: TARGET in running_on(lab, "portal"), f"portal back on {TARGET}")
        await until(lambda: lab.proxy_servers()[TARGET][:2] == ("UP", "ready"),
                    f"portal/{TARGET} ready and UP", timeout=30)
        back = time.time()
        await asyncio.sleep(6)                                # new users find it again
    report = load.report
    print(f"\nload during drain and activate of {TARGET}: {summary(report)}")
    assert report["failed"] == 0, report["errors"]
    assert report["moved"] == 0 and report["retried"] == 0
    users = load.users()
    # users who were on the server when it was set to drain stayed on it to their end
    sticky = [u for u in users if u["servers"] == [TARGET] and u["first_at"] < drain_set < u["left"]]
    assert sticky, "no user was on the server when it drained"
    # new users went elsewhere, from the drain until it was ready again
    new = [u for u in users if drain_set < u["first_at"] < ready_set]
    assert len(new) > 20 and not [u for u in new if TARGET in u["servers"]]
    # ... and found it again after
    assert [u for u in users if u["first_at"] > back and u["servers"] == [TARGET]]


async def test_operator_level_socket_is_read_only_and_the_drain_says_so(lab, tmp_path):
    path = lab.write_inventory(tmp_path / "operator.toml", proxy_socket=lab.operator_socket)
    session = open_session(dataclasses.replace(load(path), state_dir=tmp_path / "state"))
    try:
        snap = await session.cluster.snapshot()
        assert not snap.problems
        assert "operator level" in snap.proxy_read_only and "level admin" in snap.proxy_read_only
        (server,) = snap.servers_of_vm(TARGET)
        assert server.status == "UP"                          # it still watches the proxy
        plan = build("drain", snap, TARGET, TIMING)
        assert not [s.title for s in plan.steps if "proxy" in s.title or "sessions" in s.title]
        (check,) = [c for c in plan.checks if c.name == "sessions"]
        assert check.level == "warn"
        assert "sessions are not drained first: they move when the tasks stop" in check.message
    finally:
        await session.providers.close()
    assert lab.proxy_servers()[TARGET][:2] == ("UP", "ready")   # nothing was touched
