"""The docker provider's service writes against a fake API: the whole current spec is
sent, changed, at the version it was read at; a racing writer ("update out of sequence")
makes it read again; hostile specs are refused before anything is sent."""
from __future__ import annotations

import copy

import pytest
from docker.errors import APIError

from opsconsole.providers.base import ProviderError
from opsconsole.providers.swarm import RETRIES, DockerSwarm

OUT_OF_SEQUENCE = "rpc error: code = Unknown desc = update out of sequence"


class FakeAPI:
    """inspect_service and the low-level POST the provider uses, with a version that moves
    `races` times under the writer (another console wrote meanwhile)."""

    def __init__(self, spec: dict, races: int = 0) -> None:
        self.spec, self.version, self.races = spec, 10, races
        self.posts: list[tuple[str, dict, dict]] = []
        self.inspections = 0

    def inspect_service(self, sid: str) -> dict:
        self.inspections += 1
        return {"ID": sid, "Version": {"Index": self.version}, "Spec": copy.deepcopy(self.spec)}

    def _url(self, path: str, *args: str) -> str:
        return path.format(*args)

    def _post_json(self, url: str, data: dict, params: dict):
        if self.races:
            self.races -= 1
            self.version += 1
            return APIError("500", explanation=OUT_OF_SEQUENCE)
        self.posts.append((url, data, params))
        return None

    def _raise_for_status(self, answer) -> None:
        if isinstance(answer, Exception):
            raise answer


def swarm_on(api: FakeAPI) -> DockerSwarm:
    swarm = DockerSwarm(endpoints=("tcp://127.0.0.1:9",))
    swarm._call = lambda fn, write=False: fn(api)     # no network: the fake answers
    return swarm


def spec(**extra) -> dict:
    return {"Name": "web", "Mode": {"Replicated": {"Replicas": 2}},
            "TaskTemplate": {"ContainerSpec": {"Image": "nginx:1.26", "Args": ["-g"]},
                             "ForceUpdate": 1},
            "UpdateConfig": {"Parallelism": 1}, "Unknown": {"kept": True}, **extra}


async def test_scale_sends_the_whole_spec_changed_at_its_version():
    api = FakeAPI(spec())
    await swarm_on(api).scale_service("s1", 5)
    [(url, sent, params)] = api.posts
    assert url == "/services/s1/update" and params == {"version": 10}
    assert sent["Mode"]["Replicated"]["Replicas"] == 5
    assert sent == {**spec(), "Mode": {"Replicated": {"Replicas": 5}}}   # nothing else lost


async def test_image_restart_and_rollback():
    api = FakeAPI(spec())
    swarm = swarm_on(api)
    await swarm.set_image("s1", "nginx:1.27")
    await swarm.rebalance("s1")
    await swarm.rollback_service("s1")
    image, restart, rollback = api.posts
    assert image[1]["TaskTemplate"]["ContainerSpec"] == {"Image": "nginx:1.27", "Args": ["-g"]}
    assert restart[1]["TaskTemplate"]["ForceUpdate"] == 2
    assert rollback[2] == {"version": 10, "rollback": "previous"} and rollback[1] == spec()


async def test_a_racing_writer_makes_it_read_again_at_the_new_version():
    api = FakeAPI(spec(), races=2)
    await swarm_on(api).scale_service("s1", 3)
    assert api.inspections == 3
    [(_, _, params)] = api.posts
    assert params == {"version": 12}


async def test_a_spec_that_keeps_changing_is_said_not_retried_for_ever():
    api = FakeAPI(spec(), races=RETRIES)
    with pytest.raises(ProviderError, match="kept changing under us"):
        await swarm_on(api).set_image("s1", "nginx:1.27")
    assert api.posts == []


@pytest.mark.parametrize(("bad", "call", "says"), [
    ({"Mode": {"Global": {}}}, lambda s: s.scale_service("s1", 3), "is not replicated"),
    ({"Mode": "replicated"}, lambda s: s.scale_service("s1", 3), "Mode is 'replicated', not an"),
    ({"TaskTemplate": "x"}, lambda s: s.set_image("s1", "a:1"), "TaskTemplate is 'x', not an"),
    ({"TaskTemplate": {"ContainerSpec": ["a"]}}, lambda s: s.set_image("s1", "a:1"),
     "ContainerSpec is ['a'], not an"),
    ({"TaskTemplate": {"ForceUpdate": "1"}}, lambda s: s.rebalance("s1"), "unreadable ('1')"),
])
async def test_a_hostile_spec_is_refused_and_nothing_sent(bad, call, says):
    api = FakeAPI(spec(**bad))
    with pytest.raises(ProviderError, match="nothing was changed|cannot be scaled") as e:
        await call(swarm_on(api))
    assert says in str(e.value) and api.posts == []
