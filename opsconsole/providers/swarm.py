"""Docker Swarm through the docker SDK: three list requests per snapshot.

The SDK blocks, so every call runs in a thread. A snapshot is exactly one
request each for nodes, services and tasks, whatever the cluster's size; the
API version is negotiated once per connection (GET /version, the lower of the
daemon's and this SDK's: 1.41 against Debian's dockerd 20.10). A separate
thread follows the node/service event stream and wakes the console between
polls. Answers are decoded and parsed in the worker thread, element by element
so the event loop keeps running, and what is the same as in the last read is not
decoded again (decode_json): 20,000 tasks are 16 MB of JSON every poll. When the
manager in use stops answering, the next reachable manager of the inventory
takes over, `failover` says what happened, and the event stream
moves with it. close() ends that thread and the connections.
"""
from __future__ import annotations

import asyncio
import contextlib
import copy
import dataclasses
import gc
import hashlib
import json
import os
import re
import threading
import time
import weakref
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import docker
import requests
from docker.constants import DEFAULT_DOCKER_API_VERSION as API_VERSION
from docker.errors import APIError, DockerException
from docker.utils import version_lt

from ..model import MANAGER, Lock, Node, Service, Task
from .base import (
    LOG_TAIL,
    OUTPUT_CAP,
    Fields,
    LockHeld,
    LogSource,
    ProviderError,
    QuorumRefused,
    SwarmKind,
    bounded,
    capped_lines,
    show,
)

RETRIES = 5                         # for "update out of sequence"
# Reads are small and a healthy manager answers them at once: one that does not answer
# within this share of the configured timeout (3 s of the default 10) is taken as gone,
# and the next manager is asked. Writes keep the whole timeout.
READ_SHARE, READ_MIN = 0.3, 1.0
NO_LEADER = ("does not have a leader", "too few managers", "rpc error: code = Unavailable",
             "context deadline exceeded")


_timeout = threading.local()        # the request timeout this thread's calls use, if set


class CountingClient(docker.APIClient):
    """Counts HTTP requests, so tests and benchmarks can prove what a refresh costs."""

    requests_sent = 0

    def send(self, request, **kwargs):
        self.requests_sent += 1
        return super().send(request, **kwargs)

    def _set_request_timeout(self, kwargs):
        # reads and writes share a client but not a timeout: the calling thread says which
        kwargs.setdefault("timeout", getattr(_timeout, "value", None) or self.timeout)
        return kwargs


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
                          ("Permission denied", "permission denied (root or the docker group?)"),
                          ("timed out", "timed out"),
                          ("Name or service not known", "name does not resolve")):
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


TRANSPORT = (DockerException, requests.exceptions.RequestException, OSError)


def _explain_or_raise(error: BaseException, endpoint: str) -> str:
    """Words for an error after which another manager may answer; else ProviderError."""
    if isinstance(error, APIError) and not _reachable_failure(error):
        raise ProviderError(explain(error, endpoint)) from None
    return explain(error, endpoint)


def _reachable_failure(error: BaseException) -> bool:
    """Errors after which another manager should be tried."""
    if isinstance(error, APIError):
        text = error.explanation or ""
        return error.status_code in (502, 503) or "not a swarm manager" in text or \
            any(s in text for s in NO_LEADER)
    return True


LOCK_LABEL = "io.opsconsole.lock"


def lock_from_labels(labels: Any) -> Lock | None:
    raw = labels.get(LOCK_LABEL) if isinstance(labels, dict) else None
    if not raw:
        return None
    try:
        d = json.loads(raw)
        return Lock(str(d["holder"]), str(d["op"]), str(d["title"]), float(d["since"]),
                    host=str(d.get("host", "")), pid=int(d.get("pid", 0)),
                    beat=float(d.get("beat", 0.0)))
    except (ValueError, KeyError, TypeError, OverflowError):
        # still a lock: never ignore one, however odd its label
        return Lock("someone (unreadable lock label)", "?", str(raw)[:60], 0.0)


# -- parsing: one malformed object is degraded (or left out) and reported, never raised --
SERVICE_MODES = {"Replicated": "replicated", "Global": "global",
                 "ReplicatedJob": "replicated-job", "GlobalJob": "global-job"}


def _object_id(kind: str, obj: Any, problems: list[str]) -> str:
    """The object's ID, or "" (and a problem) when it has none: it cannot be shown then."""
    if not isinstance(obj, dict):
        problems.append(f"a {kind} that is not an object was left out: {show(obj)}")
        return ""
    oid = obj.get("ID")
    if isinstance(oid, str) and oid.strip():
        return oid
    problems.append(f"a {kind} without an ID was left out"
                    + (f" (ID is {show(oid)})" if "ID" in obj else ""))
    return ""


def parse_node(n: Any, problems: list[str]) -> Node | None:
    node_id = _object_id("node", n, problems)
    if not node_id:
        return None
    f = Fields(f"node {node_id[:12]}")
    spec, desc = f.obj(n, "Spec", required=True), f.obj(n, "Description", required=True)
    status, mgr = f.obj(n, "Status", required=True), f.obj(n, "ManagerStatus")
    res = f.obj(desc, "Resources")
    node = Node(
        swarm_id=node_id, hostname=f.text(desc, "Hostname", required=True),
        role=f.text(spec, "Role", "unknown", required=True),
        availability=f.text(spec, "Availability", "unknown", required=True),
        state=f.text(status, "State", "unknown", required=True), leader=f.flag(mgr, "Leader"),
        reachability=f.text(mgr, "Reachability"), address=f.text(status, "Addr"),
        engine_version=f.text(f.obj(desc, "Engine"), "EngineVersion"),
        nano_cpus=f.number(res, "NanoCPUs"), memory_bytes=f.number(res, "MemoryBytes"),
        labels=f.labels(spec, "Labels"), message=f.text(status, "Message"))
    f.report(problems)
    return node


def parse_service(s: Any, problems: list[str]) -> Service | None:
    service_id = _object_id("service", s, problems)
    if not service_id:
        return None
    f = Fields(f"service {service_id[:12]}")
    spec = f.obj(s, "Spec", required=True)
    name = f.text(spec, "Name", required=True)
    if name:
        f.what = f"service {name}"
    mode_obj = f.obj(spec, "Mode", required=True)
    mode = next((SERVICE_MODES[k] for k in SERVICE_MODES if k in mode_obj), "unknown")
    if mode == "unknown" and isinstance(spec.get("Mode"), dict):    # an object, but of what?
        f.issues.append(f"Mode is {show(mode_obj)}, not a known mode")
    template = f.obj(spec, "TaskTemplate")
    placement = f.obj(template, "Placement")
    reserve = f.obj(f.obj(template, "Resources"), "Reservations")
    # UpdateStatus is absent until a service is first updated; its State then stays as
    # the last update left it (updating, paused, completed, rollback_started, ...).
    status = f.obj(s, "UpdateStatus")
    update = f.text(status, "State").strip().lower()
    service = Service(
        swarm_id=service_id, name=name, mode=mode,
        replicas=f.number(f.obj(mode_obj, "Replicated"), "Replicas")
        if mode == "replicated" else 0,
        image=f.text(f.obj(template, "ContainerSpec"), "Image").split("@")[0],
        constraints=f.texts(placement, "Constraints"),
        max_per_node=f.number(placement, "MaxReplicas"),
        reserve_nano_cpus=f.number(reserve, "NanoCPUs"),
        reserve_memory_bytes=f.number(reserve, "MemoryBytes"), update_state=update,
        labels=f.labels(spec, "Labels"),
        update_started=f.text(status, "StartedAt"), update_message=f.text(status, "Message"))
    f.report(problems)
    return service


def _plain_task(t: Any, names: dict[str, str]) -> Task | None:
    """A task of the usual shape, read without bookkeeping (20,000 of them each refresh);
    None for anything else, which parse_task then reads field by field and reports."""
    if type(t) is not dict:
        return None
    task_id, status, service_id = t.get("ID"), t.get("Status"), t.get("ServiceID")
    desired, slot, node = t.get("DesiredState"), t.get("Slot", 0), t.get("NodeID", "")
    if type(task_id) is not str or not task_id.strip() or type(status) is not dict \
            or type(service_id) is not str or type(desired) is not str \
            or type(slot) is not int or slot < 0 or type(node) is not str:
        return None
    state, error, message = status.get("State"), status.get("Err", ""), status.get("Message", "")
    if type(state) is not str or type(error) is not str or type(message) is not str:
        return None
    return Task(swarm_id=task_id, service_id=service_id,
                service_name=names.get(service_id, service_id[:12]), slot=slot, node_id=node,
                state=state, desired_state=desired, error=error, message=message)


def parse_task(t: Any, names: dict[str, str], problems: list[str]) -> Task | None:
    plain = _plain_task(t, names)
    if plain is not None:
        return plain
    task_id = _object_id("task", t, problems)
    if not task_id:
        return None
    f = Fields(f"task {task_id[:12]}")
    status = f.obj(t, "Status", required=True)
    service_id = f.text(t, "ServiceID", required=True)
    task = Task(swarm_id=task_id, service_id=service_id,
                service_name=names.get(service_id, service_id[:12]),
                slot=f.number(t, "Slot"), node_id=f.text(t, "NodeID"),
                state=f.text(status, "State", "unknown", required=True),
                desired_state=f.text(t, "DesiredState", required=True),
                error=f.text(status, "Err"), message=f.text(status, "Message"))
    f.report(problems)
    return task


class Known:
    """An element of a list answer identical to one of the last answer: what it parsed to."""

    __slots__ = ("entity", "key")

    def __init__(self, entity: Any, key: tuple[int, int]) -> None:
        self.entity, self.key = entity, key


class Decoded(list):
    """A list answer as decode_json reads it: per element, (length, hash) of its text
    (None for a Known one, which carries its own); `whole`: the same of the answer."""

    keys: list[tuple[int, int] | None]
    whole: tuple[int, int] | None = None


class Unchanged(list):
    """An answer byte for byte the same as the last one (same length and hash): what it
    parsed to, and its elements for the next answer. Only a clean answer is kept so."""

    def __init__(self, items: list, whole: tuple[int, int], elements: KnownElements) -> None:
        super().__init__(items)
        self.whole, self.elements = whole, elements


# ID -> ((length, hash) of its text, what it parsed to): the elements of one kind's last
# answer that parsed without a problem
KnownElements = dict[str, tuple[tuple[int, int], Any]]


class Memory:
    """What a read keeps for the next: per kind, its clean answer and its elements."""

    def __init__(self) -> None:
        self.answers: dict[str, Unchanged] = {}
        self.elements: dict[str, KnownElements] = {}


def parse_all(kind: str, answer: Any, parse: Callable[[Any, list[str]], Any],
              problems: list[str], memory: Memory | None = None) -> list:
    """Every object of one list answer that can be shown, each id once. With `memory`,
    the answer and its elements are kept there for the next read (see decode_json)."""
    if type(answer) is Unchanged:
        if memory is not None:
            memory.answers[kind], memory.elements[kind] = answer, answer.elements
        return list(answer)
    if not isinstance(answer, list):
        raise ProviderError(f"the {kind} answer is not a list: {show(answer)}")
    keys = getattr(answer, "keys", None)
    problems_before = len(problems)
    fresh: KnownElements = {}
    out, seen = [], set()
    for k, obj in enumerate(answer):
        if type(obj) is Known:
            oid = obj.entity.swarm_id
        else:
            oid = obj.get("ID") if isinstance(obj, dict) else None
        if isinstance(oid, str) and oid in seen:
            problems.append(f"{kind[:-1]} {oid[:12]} is listed twice; the second was left out")
            continue
        key: tuple[int, int] | None
        if type(obj) is Known:
            item, key = obj.entity, obj.key
        else:
            before = len(problems)
            try:
                item = parse(obj, problems)
            except Exception as e:  # noqa: BLE001 - a shape no check foresaw: that object only
                problems.append(f"a {kind[:-1]} was left out: {type(e).__name__}: {e}")
                continue
            if item is None:
                continue
            key = keys[k] if keys is not None and len(problems) == before else None
        seen.add(item.swarm_id)
        out.append(item)
        if key is not None:
            fresh[item.swarm_id] = (key, item)
    if memory is not None:
        memory.elements[kind] = fresh
        whole = getattr(answer, "whole", None)
        if whole is not None and len(problems) == problems_before:
            memory.answers[kind] = Unchanged(out, whole, fresh)
    return out


def parse_swarm(raw_nodes: Any, raw_services: Any, raw_tasks: Any, problems: list[str],
                memory: Memory | None = None
                ) -> tuple[list[Node], list[Service], list[Task]]:
    """The three list answers of a read as entities; what is malformed goes to `problems`."""
    nodes = parse_all("nodes", raw_nodes, parse_node, problems, memory)
    services = parse_all("services", raw_services, parse_service, problems, memory)
    names = {s.swarm_id: s.name for s in services}
    tasks = parse_all("tasks", raw_tasks, lambda t, p: parse_task(t, names, p), problems,
                      memory)
    for k, t in enumerate(tasks):       # a known task keeps the name its service had then
        name = names.get(t.service_id, t.service_id[:12])
        if t.service_name != name:
            tasks[k] = dataclasses.replace(t, service_name=name)
    return nodes, services, tasks


_WHITESPACE = re.compile(r"[ \t\n\r]*")
_SPACES = frozenset(" \t\n\r")
_DECODER = json.JSONDecoder()


_HEAD = re.compile(r'\{"ID":"([^"\\]+)"')     # how dockerd (Go) starts every object


def decode_json(body: bytes, known: KnownElements | None = None) -> Any:
    """json.loads, but a list element by element: one call on 16 MB holds the GIL for
    half a second, during which the event loop (keys, screen) cannot run; between the
    elements other threads get their turn. Same values, same errors (ValueError).

    With `known` (the last answer's elements), an element whose text is the same as
    last time (same ID, length and hash of its text) is not decoded again but given as
    Known (what it parsed to): a refresh of 20,000 tasks of which 1 % changed decodes
    200. The list is then Decoded, with the (length, hash) of each new element's text.
    """
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return json.loads(body)             # UTF-16/32, as json.loads detects them
    if text.startswith("\ufeff"):
        return json.loads(body)             # a BOM, as json.loads takes it
    i = _WHITESPACE.match(text).end()       # type: ignore[union-attr]
    if not text.startswith("[", i):
        return json.loads(text)
    out, keys = Decoded(), list[tuple[int, int] | None]()
    out.keys = keys
    i = _WHITESPACE.match(text, i + 1).end()    # type: ignore[union-attr]
    if text.startswith("]", i):
        i += 1
    else:
        while True:
            head = _HEAD.match(text, i) if known else None
            hit = known.get(head.group(1)) if head and known else None
            if hit is not None and hash(text[i:i + hit[0][0]]) == hit[0][1]:
                out.append(Known(hit[1], hit[0]))
                keys.append(None)
                i += hit[0][0]
            else:
                value, end = _DECODER.raw_decode(text, i)
                out.append(value)
                keys.append((end - i, hash(text[i:end])) if known is not None else None)
                i = end
            if text[i:i + 1] in _SPACES:           # dockerd writes none: skip the regex
                i = _WHITESPACE.match(text, i).end()    # type: ignore[union-attr]
            if text.startswith(",", i):
                i += 1
                if text[i:i + 1] in _SPACES:
                    i = _WHITESPACE.match(text, i).end()    # type: ignore[union-attr]
            elif text.startswith("]", i):
                i += 1
                break
            else:
                raise json.JSONDecodeError("Expecting ',' delimiter", text, i)
    if _WHITESPACE.match(text, i).end() != len(text):     # type: ignore[union-attr]
        raise json.JSONDecodeError("Extra data", text, i)
    return out


def _get_list(api: CountingClient, path: str, memory: Memory | None = None) -> Any:
    """GET a list answer (what api.nodes()/services()/tasks() send), decoded as above;
    the last answer's entities when it is byte for byte the same (see Unchanged)."""
    response = api._get(api._url(path))
    api._raise_for_status(response)
    body = response.content
    kind = path.strip("/")
    whole = (len(body), hash(body))
    last = memory.answers.get(kind) if memory is not None else None
    if last is not None and last.whole == whole:
        return last
    decoded = decode_json(body, memory.elements.get(kind, {}) if memory is not None else None)
    if type(decoded) is Decoded:
        decoded.whole = whole
    return decoded


_gc_lock = threading.Lock()
_gc_pausers = 0
_gc_resume = False      # whether collection was on when the first pauser came


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """No cyclic garbage collection while a big answer is decoded and parsed: its
    hundreds of thousands of new dicts would start full collections over the whole
    heap (twice the time). Counted, so overlapping reads resume it once, at the end."""
    global _gc_pausers, _gc_resume
    with _gc_lock:
        _gc_pausers += 1
        if _gc_pausers == 1:
            _gc_resume = gc.isenabled()
            gc.disable()
    try:
        yield
    finally:
        with _gc_lock:
            _gc_pausers -= 1
            if _gc_pausers == 0 and _gc_resume:
                gc.enable()


class DockerSwarm:
    """The SwarmProvider for a real swarm."""

    def __init__(self, endpoints: tuple[str, ...] = (), context: str = "",
                 tls: dict[str, str] | None = None, timeout: float = 10.0) -> None:
        self.timeout = timeout
        self.read_timeout = min(timeout, max(READ_MIN, READ_SHARE * timeout))
        self.parse_problems: list[str] = []     # malformed objects of the last read
        self.candidates = self._candidates(endpoints, context, tls or {})
        self.endpoint = self.candidates[0][0]   # the manager that answered last
        self.failover = ""              # what happened at the last switch, in words
        self.events_endpoint = ""       # where the event stream is open now ("" while not)
        self._client: CountingClient | None = None
        self._lock = threading.Lock()   # endpoint, client and stream change together
        self._connecting = threading.Lock()     # held while looking for a manager
        self._failed_search = (0, "")           # how many searches found none; the last why
        # Change tracking: a count of events (and own writes); each waiter knows the
        # count it last saw, so a change is never lost while a waiter was busy reading.
        self._changes = 0
        self._changed = asyncio.Event()         # replaced by a fresh one at each change
        self._read_start = 0                    # the count when the last read began
        self._memory = Memory()         # the last read's answers and elements (decode_json)
        self._seen: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False
        self._events_stop = threading.Event()
        self._events_thread: threading.Thread | None = None
        self._events_stream: Any = None

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
        """A client speaking the API version both sides know (one /version request)."""
        tls_config = None
        if tls or endpoint.startswith("https://"):
            tls_config = docker.tls.TLSConfig(
                client_cert=(tls["cert"], tls["key"]) if "cert" in tls else None,
                ca_cert=tls.get("ca"), verify=tls.get("ca", True))
            endpoint = endpoint.replace("tcp://", "https://", 1)
        api = CountingClient(base_url=endpoint, version="auto", tls=tls_config or False,
                             timeout=self.timeout)
        # "auto" takes the daemon's newest version; like the docker CLI, speak no newer
        # one than this SDK knows (Debian's dockerd 20.10 says 1.41 and gets 1.41).
        if version_lt(API_VERSION, api.api_version):
            api._version = API_VERSION
        return api

    @property
    def requests_sent(self) -> int:
        return self._client.requests_sent if self._client else 0

    def _call(self, fn: Callable[[CountingClient], Any], write: bool = False) -> Any:
        """Run `fn` on the manager in use; if it fails, on the next one that answers.

        One thread at a time looks for a manager (the others wait, then use what it
        found), and the switch happens only once another manager has answered, so
        `endpoint` always names the manager whose answer the console shows. Reads
        wait `read_timeout` per request, writes the whole `timeout`.
        """
        _timeout.value = self.timeout if write else self.read_timeout
        try:
            return self._call_any(fn)
        except (ValueError, RecursionError) as e:   # an answer that is not JSON we can use
            raise ProviderError(f"{self.endpoint}: unreadable answer "
                                f"({type(e).__name__}: {str(e)[:120]})") from None
        finally:
            _timeout.value = None

    def _call_any(self, fn: Callable[[CountingClient], Any]) -> Any:
        errors: list[str] = []
        with self._lock:
            client, current = self._client, self.endpoint
        if client is not None:
            try:
                return fn(client)
            except TRANSPORT as e:
                errors.append(_explain_or_raise(e, current))
        searches = self._failed_search[0]
        with self._connecting:
            with self._lock:
                found, current = self._client, self.endpoint
            if self._failed_search[0] != searches and found is client:
                raise ProviderError(self._failed_search[1])     # no use asking them again
            if found is not None and found is not client:     # found meanwhile
                try:
                    return fn(found)
                except TRANSPORT as e:
                    errors.append(_explain_or_raise(e, current))
                    client = found
            for endpoint, tls in sorted(self.candidates, key=lambda c: c[0] != current):
                if client is not None and endpoint == current:
                    continue                                    # it has just failed
                api = None
                try:
                    api = self._connect(endpoint, tls)
                    result = fn(api)
                except TRANSPORT as e:
                    if api is not None:
                        api.close()
                    errors.append(_explain_or_raise(e, endpoint))
                    continue
                self._switch(api, endpoint, errors)
                return result
            leaderless = any("has no leader" in e for e in errors)
            failure = ("the swarm has no leader: " if leaderless else "no manager answers: ") \
                + "; ".join(errors)
            self._failed_search = (self._failed_search[0] + 1, failure)
        raise ProviderError(failure)

    def _switch(self, api: CountingClient, endpoint: str, errors: list[str]) -> None:
        with self._lock:
            old, previous = self._client, self.endpoint
            self._client, self.endpoint = api, endpoint
            if endpoint != previous:
                self.failover = f"switched from {previous} to {endpoint}: " + "; ".join(errors)
            stream = self._events_stream if endpoint != self.events_endpoint else None
        if old is not None and old is not api:
            old.close()
        _close_quietly(stream)          # the event stream reopens on the new manager

    async def _run(self, fn: Callable[[CountingClient], Any]) -> Any:
        return await asyncio.to_thread(self._call, fn)

    # -- reads ---------------------------------------------------------------------
    async def read(self) -> tuple[list[Node], list[Service], list[Task]]:
        """Decoding and parsing run in a worker thread too: 20,000 tasks are 16 MB of JSON,
        which the event loop must not wait for (see decode_json)."""
        last = self._memory         # the last read's answers; replaced, never changed

        def fetch(api: CountingClient):
            with gc_paused():
                return tuple(_get_list(api, f"/{kind}", last)
                             for kind in ("nodes", "services", "tasks"))

        def parse(problems: list[str]) -> tuple[list[Node], list[Service], list[Task]]:
            with gc_paused():
                return parse_swarm(raw_nodes, raw_services, raw_tasks, problems, memory)
        memory = Memory()
        self._loop = asyncio.get_running_loop()
        self._read_start = self._changes    # a change from now on may postdate this answer
        raw_nodes, raw_services, raw_tasks = await self._run(fetch)
        self._ensure_events()
        problems: list[str] = []
        try:
            nodes, services, tasks = await asyncio.to_thread(parse, problems)
        except ProviderError as e:
            self._memory = Memory()
            raise ProviderError(f"{self.endpoint}: {e}") from None
        self.parse_problems = bounded(problems)
        self._memory = memory
        return nodes, services, tasks

    async def wait_for_change(self, timeout: float) -> None:
        """At the first change this caller (task) has not seen yet, else after `timeout`.

        A caller's first wait counts from the start of the latest read, so changes
        that came while a refresh was being read still wake it at once.
        """
        me = asyncio.current_task()
        if self._seen.get(me, self._read_start) == self._changes:
            try:
                await asyncio.wait_for(self._changed.wait(), timeout)
            except TimeoutError:
                pass
        if me is not None:
            self._seen[me] = self._changes

    def _changed_now(self) -> None:
        """Count a change and wake every waiter (on the event loop's thread only)."""
        self._changes += 1
        self._changed.set()
        self._changed = asyncio.Event()

    def _ensure_events(self) -> None:
        if not self._closed and (self._events_thread is None
                                 or not self._events_thread.is_alive()):
            self._events_stop.clear()
            self._events_thread = threading.Thread(target=self._follow_events, daemon=True,
                                                   name="swarm-events")
            self._events_thread.start()

    def _follow_events(self) -> None:
        """Node and service events wake the refresh loop (there are no task events).

        The stream is opened on the manager in use; a failover closes it and it opens
        again on the new one, replaying what happened since the old one broke. A stream
        that ends is news too: its manager may be gone, so the console reads at once
        (and fails over) instead of at its next poll.
        """
        _timeout.value = self.read_timeout      # opening it; the stream itself never times out
        since = int(time.time()) - 1
        while not self._events_stop.is_set():
            with self._lock:
                endpoint = self.endpoint
            api, opened = None, False
            try:
                api = self._connect(endpoint, dict(self.candidates)[endpoint])
                stream = api.events(since=since, filters={"type": ["node", "service"]},
                                    decode=True)
                with self._lock:
                    if self._events_stop.is_set() or endpoint != self.endpoint:
                        _close_quietly(stream)      # closing, or switched meanwhile
                        continue
                    self._events_stream, self.events_endpoint = stream, endpoint
                opened = True
                for _ in stream:
                    self._wake()
            except Exception:   # noqa: BLE001 - the poll still runs; open the stream again
                pass
            finally:
                with self._lock:
                    self._events_stream, self.events_endpoint = None, ""
                if api is not None:
                    api.close()
            if opened and not self._events_stop.is_set():
                self._wake()
            since = int(time.time()) - 1
            self._events_stop.wait(0.5)

    def _wake(self) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._changed_now)

    # -- writes --------------------------------------------------------------------
    def _update_spec(self, what: str, inspect: Callable[[CountingClient], dict],
                     change: Callable[[dict], None],
                     update: Callable[[CountingClient, int, dict], Any]) -> None:
        """Send an object's whole current spec, changed, at the version it was read at.

        A racing writer makes Swarm answer "update out of sequence": read again
        and retry, a bounded number of times.
        """
        def attempt(api: CountingClient) -> bool:
            current = inspect(api)
            spec = current.get("Spec") if isinstance(current, dict) else None
            version = current.get("Version") if isinstance(spec, dict) else None
            version = version.get("Index") if isinstance(version, dict) else None
            if not isinstance(spec, dict) or type(version) is not int:
                raise ProviderError(f"{self.endpoint}: {what}: the answer has no Spec or "
                                    "version index; nothing was changed")
            spec = copy.deepcopy(spec)
            change(spec)
            try:
                update(api, version, spec)
                return True
            except APIError as e:
                if "update out of sequence" in (e.explanation or str(e)):
                    return False
                raise
        for _ in range(RETRIES):
            if self._call(attempt, write=True):
                return
        raise ProviderError(f"{self.endpoint}: {what} kept changing under us "
                            f"(update out of sequence {RETRIES} times)")

    def _update_node(self, node_id: str, change: Callable[[dict], None]) -> None:
        self._update_spec(f"node {node_id}", lambda api: api.inspect_node(node_id), change,
                          lambda api, version, spec: api.update_node(node_id, version, spec))

    async def set_availability(self, node_id: str, availability: str) -> None:
        await asyncio.to_thread(self._update_node, node_id,
                                lambda spec: spec.__setitem__("Availability", availability))
        self._changed_now()

    async def set_role(self, node_id: str, role: str) -> None:
        if role not in (MANAGER, "worker"):
            raise ProviderError(f"unknown role {role!r}")
        try:
            await asyncio.to_thread(self._update_node, node_id,
                                    lambda spec: spec.__setitem__("Role", role))
        except ProviderError as e:     # Swarm says so only in words
            if "loss of quorum" in str(e):
                raise QuorumRefused(str(e)) from None
            raise
        self._changed_now()

    def _update_service(self, service_id: str, change: Callable[[dict], None],
                        rollback: bool = False) -> None:
        """POST the service's current spec, changed, at its version (`_update_spec`);
        `rollback`: Swarm's own rollback to the previous spec (`docker service rollback`).
        Through the low-level request, which sends the spec as read (the SDK's
        update_service rebuilds it and drops fields it does not know)."""
        params: dict[str, Any] = {"rollback": "previous"} if rollback else {}

        def update(api: CountingClient, version: int, spec: dict) -> None:
            api._raise_for_status(api._post_json(
                api._url("/services/{0}/update", service_id), data=spec,
                params={"version": version, **params}))
        self._update_spec(f"service {service_id}", lambda api: api.inspect_service(service_id),
                          change, update)

    async def _service_write(self, service_id: str, change: Callable[[dict], None],
                             rollback: bool = False) -> None:
        await asyncio.to_thread(self._update_service, service_id, change, rollback)
        self._changed_now()

    async def rebalance(self, service_id: str) -> None:
        """`docker service update --force`: tasks are replaced and spread again (also what
        a restart is: Swarm's own rolling replacement, by the service's update config)."""
        def force(spec: dict) -> None:
            template = _spec_part(spec, service_id, "TaskTemplate")
            force = template.get("ForceUpdate")
            if force is not None and type(force) is not int:
                raise ProviderError(f"service {service_id}: TaskTemplate.ForceUpdate is "
                                    f"unreadable ({show(force)}); nothing was changed")
            template["ForceUpdate"] = (force or 0) + 1
        await self._service_write(service_id, force)

    async def scale_service(self, service_id: str, replicas: int) -> None:
        """`docker service scale`: a replicated service's desired task count."""
        def scale(spec: dict) -> None:
            mode = _spec_part(spec, service_id, "Mode")
            replicated = mode.get("Replicated")
            if not isinstance(replicated, dict):
                raise ProviderError(f"service {service_id} is not replicated "
                                    f"(mode {show(sorted(mode))}): it cannot be scaled")
            replicated["Replicas"] = replicas
        await self._service_write(service_id, scale)

    async def set_image(self, service_id: str, image: str) -> None:
        """`docker service update --image`: a rolling update by the service's update config."""
        def to_image(spec: dict) -> None:
            container = _spec_part(_spec_part(spec, service_id, "TaskTemplate"), service_id,
                                   "ContainerSpec")
            container["Image"] = image
        await self._service_write(service_id, to_image)

    async def rollback_service(self, service_id: str) -> None:
        """`docker service rollback`: back to the spec before the last update."""
        await self._service_write(service_id, lambda spec: None, rollback=True)

    async def inspect(self, kind: SwarmKind, swarm_id: str) -> dict[str, Any]:
        if kind not in ("node", "service", "task"):
            raise ProviderError(f"cannot inspect a {kind!r}")

        def read(api: CountingClient) -> Any:
            return getattr(api, f"inspect_{kind}")(swarm_id)
        answer = await self._run(read)
        if not isinstance(answer, dict):
            raise ProviderError(f"{self.endpoint}: {kind} {swarm_id[:12]}: the answer is not "
                                f"an object: {show(answer)}")
        return answer

    # -- logs ----------------------------------------------------------------------------
    def _open_logs(self, api: CountingClient, kind: LogSource, swarm_id: str, tail: int,
                   follow: bool) -> tuple[Any, Iterator[bytes]]:
        """The log stream's response and its chunks (demultiplexed unless the container
        has a TTY). A followed stream has no read timeout: it may be quiet for hours."""
        inspect = api.inspect_service if kind == "service" else api.inspect_task
        obj = inspect(swarm_id)
        spec = obj.get("Spec") if isinstance(obj, dict) else None
        template = spec.get("TaskTemplate", spec) if isinstance(spec, dict) else None
        container = template.get("ContainerSpec") if isinstance(template, dict) else None
        tty = isinstance(container, dict) and container.get("TTY") is True
        params = {"stdout": 1, "stderr": 1, "timestamps": 1, "details": int(kind == "service"),
                  "follow": int(follow), "tail": str(max(0, tail))}
        res = api._get(api._url(f"/{kind}s/{{0}}/logs", swarm_id), params=params, stream=True,
                       timeout=(self.read_timeout, None) if follow else self.timeout)
        api._raise_for_status(res)
        return res, (iter(lambda: res.raw.read(READ_CHUNK), b"") if tty else demuxed(res.raw))

    async def logs(self, kind: LogSource, swarm_id: str, tail: int = LOG_TAIL,
                   follow: bool = False) -> AsyncIterator[str]:
        res, chunks = await asyncio.to_thread(
            self._call, lambda api: self._open_logs(api, kind, swarm_id, tail, follow))
        lines: list[str] = []
        capped = capped_lines(lines, total_cap=1 << 62 if follow else OUTPUT_CAP)
        try:
            async for chunk in _pumped(chunks):
                capped.feed(0, chunk)
                for line in lines:
                    yield log_line(line)
                lines.clear()
            capped.close()
            for line in lines:
                yield log_line(line)
        except TRANSPORT as e:
            raise ProviderError(f"logs of {kind} {swarm_id[:12]}: "
                                f"{explain(e, self.endpoint)}") from None
        finally:
            _close_quietly(res)

    # -- the operation lock: a label on the swarm itself, set at its version ------
    async def read_lock(self) -> Lock | None:
        info = await self._run(lambda api: api.inspect_swarm())
        spec = info.get("Spec") if isinstance(info, dict) else None
        return lock_from_labels(spec.get("Labels") if isinstance(spec, dict) else None)

    async def _swap_lock(self, decide: Callable[[Lock | None], Lock | None]) -> None:
        """Compare-and-set of the lock label on the swarm's spec (see _update_spec)."""
        def change(spec: dict) -> None:
            labels = spec.get("Labels")
            labels = spec["Labels"] = labels if isinstance(labels, dict) else {}
            wanted = decide(lock_from_labels(labels))
            if wanted is None:
                labels.pop(LOCK_LABEL, None)
            else:
                labels[LOCK_LABEL] = json.dumps(wanted.__dict__, sort_keys=True)
        await asyncio.to_thread(
            self._update_spec, "the swarm", lambda api: api.inspect_swarm(), change,
            lambda api, version, spec: api.update_swarm(version, swarm_spec=spec))
        self._changed_now()

    async def take_lock(self, lock: Lock) -> None:
        def decide(held: Lock | None) -> Lock:
            if held is not None and held.op != lock.op:
                raise LockHeld(held)
            return lock
        await self._swap_lock(decide)

    async def release_lock(self, op: str) -> None:
        await self._swap_lock(lambda held: None if held is None or held.op == op else held)

    async def break_lock(self) -> None:
        await self._swap_lock(lambda held: None)

    async def close(self) -> None:
        """Stop the event stream and its thread, and let go of the connections."""
        with self._lock:
            self._closed = True
            self._events_stop.set()
            stream, client, self._client = self._events_stream, self._client, None
        _close_quietly(stream)
        thread = self._events_thread
        if thread is not None and thread.is_alive():
            await asyncio.to_thread(thread.join, self.timeout)
        if client is not None:
            client.close()


SWARM_DETAIL = "com.docker.swarm."
READ_CHUNK = 64 * 1024


def demuxed(raw: Any) -> Iterator[bytes]:
    """The payloads of Docker's multiplexed stream (8-byte header: stream, size), read at
    most READ_CHUNK at a time whatever size a header claims."""
    while True:
        header = raw.read(8)
        if len(header) < 8:
            return
        left = int.from_bytes(header[4:8], "big")
        while left:
            data = raw.read(min(left, READ_CHUNK))
            if not data:
                return
            left -= len(data)
            yield data


def log_line(line: str) -> str:
    """"TIMESTAMP [DETAILS] MESSAGE" as Swarm sends it -> "TIMESTAMP [task] MESSAGE": of the
    details (labels a service's log adds to each line) only the task's short id is kept."""
    stamp, _, rest = line.partition(" ")
    details, sep, message = rest.partition(" ")
    if not details.startswith(SWARM_DETAIL):
        return line
    fields = dict(p.partition("=")[::2] for p in details.split(","))
    task = fields.get(SWARM_DETAIL + "task.id", "")[:12]
    return f"{stamp} [{task}] {message}" if task else f"{stamp} {message}"


async def _pumped(chunks: Iterator[bytes], depth: int = 64) -> AsyncIterator[bytes]:
    """A blocking iterator read in a thread, its items handed over through a bounded queue
    (a fast log cannot fill memory: the thread waits). When the consumer stops, the thread
    stops at its next item (closing the response ends a blocked read)."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[Any] = asyncio.Queue(depth)
    stop = threading.Event()
    end = object()

    def put(item: Any) -> bool:
        future = asyncio.run_coroutine_threadsafe(queue.put(item), loop)
        while not stop.is_set():
            try:
                future.result(0.5)
                return True
            except TimeoutError:
                continue
            except Exception:  # noqa: BLE001 - the loop is gone: nobody reads any more
                return False
        future.cancel()
        return False

    def pump() -> None:
        try:
            for chunk in chunks:
                if not put(chunk):
                    return
            put(end)
        except Exception as e:  # noqa: BLE001 - handed to the reader, who says it
            put(e)
    thread = threading.Thread(target=pump, daemon=True, name="swarm-logs")
    thread.start()
    try:
        while True:
            item = await queue.get()
            if item is end:
                return
            if isinstance(item, Exception):
                raise item
            yield item
    finally:
        stop.set()


def _spec_part(spec: dict, service_id: str, key: str) -> dict:
    """spec[key] as an object (created when absent); ProviderError when it is something else."""
    part = spec.setdefault(key, {})
    if not isinstance(part, dict):
        raise ProviderError(f"service {service_id}: {key} is {show(part)}, not an object; "
                            "nothing was changed")
    return part


def _close_quietly(stream: Any) -> None:
    """Closing a stream from another thread ends its blocking read (not over ssh://)."""
    if stream is not None:
        try:
            stream.close()
        except Exception:  # noqa: BLE001 - closing a dead stream is fine
            pass
