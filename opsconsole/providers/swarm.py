"""Docker Swarm through the docker SDK: three list requests per snapshot.

The SDK blocks, so every call runs in a thread. A snapshot is exactly one
request each for nodes, services and tasks, whatever the cluster's size. A
separate thread follows the node/service event stream and wakes the console
between polls. When the manager in use stops answering, the next reachable
manager of the inventory takes over, and `failover` says what happened.
"""
from __future__ import annotations

import asyncio
import copy
import hashlib
import json
import os
import threading
from pathlib import Path
from typing import Any, Callable

import docker
import requests
from docker.errors import APIError, DockerException

from ..model import MANAGER, Node, Service, Task
from .base import ProviderError

RETRIES = 5                         # for "update out of sequence"
NO_LEADER = ("does not have a leader", "too few managers", "rpc error: code = Unavailable",
             "context deadline exceeded")


class CountingClient(docker.APIClient):
    """Counts HTTP requests, so tests and benchmarks can prove what a refresh costs."""

    requests_sent = 0

    def send(self, request, **kwargs):  # type: ignore[override]
        self.requests_sent += 1
        return super().send(request, **kwargs)


def context_endpoint(name: str, config_dir: Path | None = None) -> tuple[str, dict[str, str]]:
    """(host, tls files) of a docker context, as the docker CLI stores it."""
    root = config_dir or Path(os.environ.get("DOCKER_CONFIG", Path.home() / ".docker"))
    digest = hashlib.sha256(name.encode()).hexdigest()
    meta = root / "contexts/meta" / digest / "meta.json"
    try:
        data = json.loads(meta.read_text())
        host = data["Endpoints"]["docker"]["Host"]
    except FileNotFoundError:
        raise ProviderError(f"docker context {name!r} not found ({meta})") from None
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ProviderError(f"docker context {name!r}: unreadable {meta}: {e}") from None
    tls_dir = root / "contexts/tls" / digest / "docker"
    tls = {k: str(tls_dir / f"{k}.pem") for k in ("ca", "cert", "key")
           if (tls_dir / f"{k}.pem").exists()}
    return host, tls


def explain(error: BaseException, endpoint: str) -> str:
    """A daemon's or a transport's error, in words a person can act on."""
    if isinstance(error, APIError):
        text = (error.explanation or str(error)).strip()
        if any(s in text for s in NO_LEADER):
            return f"{endpoint}: the swarm has no leader (quorum lost?): {text}"
        if "not a swarm manager" in text or "This node is not" in text:
            return f"{endpoint}: not a swarm manager: {text}"
        return f"{endpoint}: {text}"
    text = str(error)
    for needle, words in (("Connection refused", "refuses connections (daemon down?)"),
                          ("No such file or directory", "socket does not exist (daemon down?)"),
                          ("timed out", "timed out"), ("Name or service not known",
                                                       "name does not resolve")):
        if needle in text:
            return f"{endpoint}: {words}"
    if "not found in known_hosts" in text:
        return (f"{endpoint}: host key unknown: add it to ~/.ssh/known_hosts after checking "
                f"its fingerprint (the console never accepts unknown keys)")
    if isinstance(error, requests.exceptions.ConnectionError):
        return f"{endpoint}: does not answer ({type(error).__name__})"
    if isinstance(error, requests.exceptions.Timeout):
        return f"{endpoint}: timed out"
    return f"{endpoint}: {text or type(error).__name__}"


def _reachable_failure(error: BaseException) -> bool:
    """Errors after which another manager should be tried."""
    if isinstance(error, APIError):
        text = error.explanation or ""
        return error.status_code in (502, 503) or "not a swarm manager" in text or \
            any(s in text for s in NO_LEADER)
    return True


def parse_node(n: dict[str, Any]) -> Node:
    spec, desc = n.get("Spec", {}), n.get("Description", {})
    status, mgr = n.get("Status", {}), n.get("ManagerStatus") or {}
    res = desc.get("Resources", {})
    return Node(swarm_id=n["ID"], hostname=desc.get("Hostname", ""),
                role=spec.get("Role", "worker"), availability=spec.get("Availability", "active"),
                state=status.get("State", "unknown"), leader=bool(mgr.get("Leader")),
                reachability=mgr.get("Reachability", ""), address=status.get("Addr", ""),
                engine_version=desc.get("Engine", {}).get("EngineVersion", ""),
                nano_cpus=int(res.get("NanoCPUs", 0)), memory_bytes=int(res.get("MemoryBytes", 0)),
                labels=tuple(sorted((spec.get("Labels") or {}).items())),
                message=status.get("Message", ""))


def parse_service(s: dict[str, Any]) -> Service:
    spec = s.get("Spec", {})
    mode = spec.get("Mode", {})
    template = spec.get("TaskTemplate", {})
    placement = template.get("Placement") or {}
    reserve = (template.get("Resources") or {}).get("Reservations") or {}
    return Service(swarm_id=s["ID"], name=spec.get("Name", ""),
                   mode="global" if "Global" in mode else "replicated",
                   replicas=int((mode.get("Replicated") or {}).get("Replicas", 0)),
                   image=(template.get("ContainerSpec") or {}).get("Image", "").split("@")[0],
                   constraints=tuple(placement.get("Constraints") or ()),
                   max_per_node=int(placement.get("MaxReplicas", 0)),
                   reserve_nano_cpus=int(reserve.get("NanoCPUs", 0)),
                   reserve_memory_bytes=int(reserve.get("MemoryBytes", 0)),
                   update_state=(s.get("UpdateStatus") or {}).get("State", ""))


def parse_task(t: dict[str, Any], names: dict[str, str]) -> Task:
    status = t.get("Status", {})
    return Task(swarm_id=t["ID"], service_id=t.get("ServiceID", ""),
                service_name=names.get(t.get("ServiceID", ""), t.get("ServiceID", "")[:12]),
                slot=int(t.get("Slot", 0)), node_id=t.get("NodeID", ""),
                state=status.get("State", "unknown"), desired_state=t.get("DesiredState", ""),
                error=status.get("Err", ""), message=status.get("Message", ""))


class DockerSwarm:
    """The SwarmProvider for a real swarm."""

    def __init__(self, endpoints: tuple[str, ...] = (), context: str = "",
                 tls: dict[str, str] | None = None, timeout: float = 10.0) -> None:
        self.timeout = timeout
        self.candidates = self._candidates(endpoints, context, tls or {})
        self.endpoint = self.candidates[0][0]
        self.failover = ""              # what happened at the last switch, in words
        self._client: CountingClient | None = None
        self._changed = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._events_stop = threading.Event()
        self._events_thread: threading.Thread | None = None
        self._events_stream = None

    # -- connecting --------------------------------------------------------------
    @staticmethod
    def _candidates(endpoints, context, tls) -> list[tuple[str, dict[str, str]]]:
        """(endpoint, tls files) to try: the inventory's, a context's, or DOCKER_HOST."""
        if endpoints:
            return [(e, tls) for e in endpoints]
        if context:
            return [context_endpoint(context)]
        host = os.environ.get("DOCKER_HOST")
        if not host:
            raise ProviderError("[swarm] has no endpoints or context, and DOCKER_HOST is not set")
        return [(host, tls)]

    def _connect(self, endpoint: str, tls: dict[str, str]) -> CountingClient:
        tls_config = None
        if tls or endpoint.startswith("https://"):
            tls_config = docker.tls.TLSConfig(
                client_cert=(tls["cert"], tls["key"]) if "cert" in tls else None,
                ca_cert=tls.get("ca"), verify=tls.get("ca", True))
            endpoint = endpoint.replace("tcp://", "https://", 1)
        return CountingClient(base_url=endpoint, version="auto", tls=tls_config or False,
                              timeout=self.timeout)

    @property
    def requests_sent(self) -> int:
        return self._client.requests_sent if self._client else 0

    def _call(self, fn: Callable[[CountingClient], Any]) -> Any:
        """Run `fn` on the current manager; on failure move to the next one that answers."""
        errors = []
        order = [c for c in self.candidates if c[0] == self.endpoint] + \
            [c for c in self.candidates if c[0] != self.endpoint]
        for endpoint, tls in order:
            try:
                if self._client is None or endpoint != self.endpoint:
                    client = self._connect(endpoint, tls)
                    if endpoint != self.endpoint:
                        self.failover = (f"switched from {self.endpoint} to {endpoint}: "
                                         + "; ".join(errors))
                    self._client, self.endpoint = client, endpoint
                return fn(self._client)
            except (DockerException, requests.exceptions.RequestException, OSError) as e:
                if isinstance(e, APIError) and not _reachable_failure(e):
                    raise ProviderError(explain(e, endpoint)) from None
                errors.append(explain(e, endpoint))
                self._client = None if endpoint == self.endpoint else self._client
        raise ProviderError("no manager answers: " + "; ".join(errors))

    async def _run(self, fn: Callable[[CountingClient], Any]) -> Any:
        self._loop = asyncio.get_running_loop()
        return await asyncio.to_thread(self._call, fn)

    # -- reads ---------------------------------------------------------------------
    async def read(self) -> tuple[list[Node], list[Service], list[Task]]:
        def fetch(api: CountingClient):
            return api.nodes(), api.services(), api.tasks()
        raw_nodes, raw_services, raw_tasks = await self._run(fetch)
        self._ensure_events()
        services = [parse_service(s) for s in raw_services]
        names = {s.swarm_id: s.name for s in services}
        return [parse_node(n) for n in raw_nodes], services, \
            [parse_task(t, names) for t in raw_tasks]

    async def wait_for_change(self, timeout: float) -> None:
        self._changed.clear()
        try:
            await asyncio.wait_for(self._changed.wait(), timeout)
        except asyncio.TimeoutError:
            pass

    def _ensure_events(self) -> None:
        if self._events_thread is None or not self._events_thread.is_alive():
            self._events_stop.clear()
            self._events_thread = threading.Thread(target=self._follow_events, daemon=True,
                                                   name="swarm-events")
            self._events_thread.start()

    def _follow_events(self) -> None:
        """Node and service events wake the refresh loop (there are no task events)."""
        while not self._events_stop.is_set():
            endpoint, tls = next(c for c in self.candidates if c[0] == self.endpoint)
            try:
                api = self._connect(endpoint, tls)
                self._events_stream = api.events(filters={"type": ["node", "service"]},
                                                 decode=True)
                for _ in self._events_stream:
                    if self._loop is not None:
                        self._loop.call_soon_threadsafe(self._changed.set)
                    if self._events_stop.is_set():
                        return
            except Exception:   # noqa: BLE001 - the poll still runs; retry the stream later
                pass
            self._events_stop.wait(2.0)

    # -- writes --------------------------------------------------------------------
    def _update_node(self, node_id: str, change: Callable[[dict], None]) -> None:
        """Send the node's whole current spec with one field changed, at its version.

        A stale version fails with "update out of sequence": reload and retry.
        """
        def attempt(api: CountingClient) -> bool:
            node = api.inspect_node(node_id)
            spec = copy.deepcopy(node["Spec"])
            change(spec)
            try:
                api.update_node(node_id, node["Version"]["Index"], spec)
                return True
            except APIError as e:
                if "update out of sequence" in (e.explanation or str(e)):
                    return False
                raise
        for _ in range(RETRIES):
            if self._call(attempt):
                return
        raise ProviderError(f"{self.endpoint}: node {node_id} kept changing under us "
                            f"(update out of sequence {RETRIES} times)")

    async def set_availability(self, node_id: str, availability: str) -> None:
        await asyncio.to_thread(self._update_node, node_id,
                                lambda spec: spec.__setitem__("Availability", availability))
        self._changed.set()

    async def set_role(self, node_id: str, role: str) -> None:
        if role not in (MANAGER, "worker"):
            raise ProviderError(f"unknown role {role!r}")
        await asyncio.to_thread(self._update_node, node_id,
                                lambda spec: spec.__setitem__("Role", role))
        self._changed.set()

    async def rebalance(self, service_id: str) -> None:
        """`docker service update --force`: tasks are replaced and spread again."""
        def force(api: CountingClient) -> None:
            svc = api.inspect_service(service_id)
            spec = copy.deepcopy(svc["Spec"])
            template = spec.setdefault("TaskTemplate", {})
            template["ForceUpdate"] = int(template.get("ForceUpdate", 0)) + 1
            api._raise_for_status(api._post_json(
                api._url("/services/{0}/update", service_id), data=spec,
                params={"version": svc["Version"]["Index"]}))
        await self._run(force)

    async def close(self) -> None:
        self._events_stop.set()
        stream = self._events_stream
        if stream is not None:
            try:
                stream.close()
            except Exception:  # noqa: BLE001 - closing a dead stream is fine
                pass
