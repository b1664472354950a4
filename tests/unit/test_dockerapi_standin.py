"""The Docker Engine API stand-in (tests/bench/dockerapi.py) as the real Swarm provider and
the docker CLI read it: a 12-node simulated swarm on a unix socket of this test (loopback
only). What the provider reads is the simulated world, field for field; a refresh after
some tasks changed reads the same as a fresh provider (the elements it did not decode
again included), and a renamed service renames its tasks."""
from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from opsconsole.providers.sim import ManualClock, SimCluster
from opsconsole.providers.swarm import DockerSwarm, decode_json
from tests.bench.dockerapi import StandInServer, SwarmWorld


@pytest.fixture
def sim() -> SimCluster:
    return SimCluster(seed=7, scale=12, clock=ManualClock())


@pytest.fixture
def server(sim: SimCluster) -> Iterator[StandInServer]:
    scratch = Path(tempfile.mkdtemp(prefix="ocl-api-"))    # short: a unix socket path
    server = StandInServer(scratch / "docker.sock", SwarmWorld(sim)).start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(scratch, ignore_errors=True)


def read(swarm: DockerSwarm):
    return asyncio.run(swarm.read())


def test_the_provider_reads_the_simulated_world_field_for_field(sim, server):
    swarm = DockerSwarm((server.endpoint,))
    nodes, services, tasks = read(swarm)
    assert swarm.parse_problems == []
    assert len(nodes) == 12 and len(tasks) == len(sim.tasks) > 200
    assert sorted(nodes, key=lambda n: n.swarm_id) == sorted(sim.nodes.values(),
                                                              key=lambda n: n.swarm_id)
    # the stand-in dates an update the sim did not date (the docker CLI needs a time)
    assert {s.swarm_id: dataclasses.replace(s, update_started="") for s in services} == {
        k: dataclasses.replace(s, update_started="") for k, s in sim.services.items()}
    assert {t.swarm_id: t for t in tasks} == sim.tasks
    assert sum(n.leader for n in nodes) == 1


def test_a_refresh_after_changes_reads_what_a_fresh_provider_reads(sim, server):
    swarm = DockerSwarm((server.endpoint,))
    _, _, before = read(swarm)
    assert server.world.churn(0.25) == round(len(sim.tasks) * 0.25)
    sent = swarm.requests_sent
    again = read(swarm)
    assert swarm.requests_sent - sent == 3            # nodes, services, tasks
    assert again == read(DockerSwarm((server.endpoint,)))
    changed = [t for t, b in zip(again[2], before, strict=True) if t != b]
    assert len(changed) == round(len(sim.tasks) * 0.25)
    assert all(t.state in ("starting", "running") for t in changed)


def test_a_renamed_service_renames_its_tasks_though_they_did_not_change(sim, server):
    swarm = DockerSwarm((server.endpoint,))
    read(swarm)
    world = server.world
    sid = next(s.swarm_id for s in sim.services.values() if s.name == "app-000")
    spec = json.loads(json.dumps(world.services.objects[sid]["Spec"]))
    spec["Name"] = "renamed"
    status, _ = world.update("services", sid, world.services.objects[sid]["Version"]["Index"],
                             spec)
    assert status == 200
    _, services, tasks = read(swarm)
    assert {t.service_name for t in tasks if t.service_id == sid} == {"renamed"}
    assert "renamed" in {s.name for s in services}


def test_a_drain_through_the_provider_is_what_the_next_read_shows(sim, server):
    swarm = DockerSwarm((server.endpoint,))
    nodes, _, _ = read(swarm)
    target = nodes[3]

    async def drain():
        await swarm.set_availability(target.swarm_id, "drain")
        return await swarm.read()
    nodes, _, _ = asyncio.run(drain())
    assert {n.hostname: n.availability for n in nodes}[target.hostname] == "drain"


@pytest.mark.parametrize("body", [
    b"[]", b" [ ] ", b'[1, 2 ,{"a":[1]}]\n', b'{"a": 1}', b"[1,]", b"[1 2]", b"[1] x", b"[",
    b"", "[1]".encode("utf-16"), b"\xef\xbb\xbf[1]", b'[{"ID":"x"},\t{"ID":"y"}\t]'])
def test_decoding_a_list_element_by_element_is_json_loads(body):
    def outcome(decode):
        try:
            return decode(body)
        except ValueError as e:
            return type(e)
    assert outcome(decode_json) == outcome(json.loads)


def test_the_docker_cli_draws_its_picture_from_the_stand_in(sim, server, tmp_path):
    cli = shutil.which("docker")
    if not cli:
        pytest.skip("no docker CLI on PATH")
    env = {**os.environ, "DOCKER_HOST": server.endpoint, "DOCKER_CONFIG": str(tmp_path)}
    env.pop("DOCKER_CONTEXT", None)

    def docker(*args: str) -> list[str]:
        return subprocess.run([cli, *args], env=env, check=True, capture_output=True,
                              text=True, timeout=30).stdout.split()
    assert sorted(docker("node", "ls", "--format", "{{.Hostname}}")) == \
        sorted(n.hostname for n in sim.nodes.values())
    assert sorted(docker("service", "ls", "--format", "{{.Name}}")) == \
        sorted(s.name for s in sim.services.values())
    vm = sorted(sim.nodes.values(), key=lambda n: n.hostname)[0]
    on_node = [t for t in sim.tasks.values() if t.node_id == vm.swarm_id]
    assert len(docker("node", "ps", vm.hostname, "--format", "{{.ID}}")) == len(on_node)


def test_what_did_not_change_is_not_decoded_again(sim, server):
    """The same answer gives the same entities (objects): the console's diff skips them."""
    swarm = DockerSwarm((server.endpoint,))
    first = read(swarm)
    same = read(swarm)
    assert all(a is b for old, new in zip(first, same, strict=True)
               for a, b in zip(old, new, strict=True))
    server.world.churn(0.1)
    _, _, tasks = read(swarm)
    fresh = [t for t, old in zip(tasks, same[2], strict=True) if t is not old]
    assert len(fresh) == round(len(sim.tasks) * 0.1)
    assert all(t != old for t, old in zip(tasks, same[2], strict=True) if t is not old)
