"""A Docker Engine API stand-in on a unix socket: a simulated swarm of N nodes, as dockerd
answers for it (test and bench code, not product).

    python tests/bench/dockerapi.py --socket /tmp/d.sock --nodes 1000

The world is a SimCluster(scale=N) turned once into Swarm's JSON shapes (those the lab's
dockerd 20.10 returns, the fields the console and the docker CLI read). Each object is
encoded once and kept as bytes; a list answer is those bytes joined, so the stand-in's own
cost stays out of what a client measures. `churn(fraction)` changes that share of the tasks
(state, timestamp, version) and encodes only them again.

Serves: /_ping, /version, /info, /swarm, /nodes, /nodes/{id|name}, /services,
/services/{id|name}, /tasks (filters: node, service, desired-state, id), /tasks/{id},
/events (a stream: node/service updates), and the writes the console sends: node update,
service update, swarm update (its labels hold the console's lock). /_bench/churn?fraction=
changes tasks now; /_bench/rate?per_s= keeps changing that share every second.
"""
from __future__ import annotations

import argparse
import json
import pickle
import random
import socketserver
import threading
import time
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

API_VERSION, MIN_API_VERSION = "1.43", "1.12"
ENGINE = "24.0.9"
CREATED = "2026-11-20T08:00:00.000000000Z"


def stamp(t: float | None = None) -> str:
    t = time.time() if t is None else t
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1e9):09d}Z"


# -- the model as Swarm's JSON ------------------------------------------------------------
def node_json(n: Any, index: int) -> dict:
    out = {
        "ID": n.swarm_id, "Version": {"Index": index}, "CreatedAt": CREATED, "UpdatedAt": CREATED,
        "Spec": {"Labels": dict(n.labels), "Role": n.role, "Availability": n.availability},
        "Description": {
            "Hostname": n.hostname,
            "Platform": {"Architecture": "x86_64", "OS": "linux"},
            "Resources": {"NanoCPUs": n.nano_cpus, "MemoryBytes": n.memory_bytes},
            "Engine": {"EngineVersion": n.engine_version, "Plugins": [
                {"Type": "Log", "Name": "json-file"}, {"Type": "Network", "Name": "overlay"},
                {"Type": "Volume", "Name": "local"}]},
            "TLSInfo": {"TrustRoot": "-----BEGIN CERTIFICATE-----\n…\n-----END CERTIFICATE-----\n",
                        "CertIssuerSubject": "MBMxETAPBgNVBAMTCHN3YXJtLWNh",
                        "CertIssuerPublicKey": "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE"}},
        "Status": {"State": n.state, "Addr": n.address},
    }
    if n.message:
        out["Status"]["Message"] = n.message
    if n.role == "manager":
        out["ManagerStatus"] = {"Leader": n.leader, "Reachability": n.reachability or "reachable",
                                "Addr": f"{n.address}:2377"}
        if not n.leader:
            del out["ManagerStatus"]["Leader"]      # dockerd omits a false Leader
    return out


def service_json(s: Any, index: int, running: int, desired: int) -> dict:
    mode: dict = {"Global": {}} if s.mode == "global" else {"Replicated": {"Replicas": s.replicas}}
    placement: dict = {"Constraints": list(s.constraints)} if s.constraints else {}
    if s.max_per_node:
        placement["MaxReplicas"] = s.max_per_node
    reserve = {k: v for k, v in (("NanoCPUs", s.reserve_nano_cpus),
                                 ("MemoryBytes", s.reserve_memory_bytes)) if v}
    image = f"{s.image}@sha256:{'0' * 64}"
    spec = {
        "Name": s.name, "Labels": dict(s.labels),
        "TaskTemplate": {
            "ContainerSpec": {"Image": image, "Init": False, "StopGracePeriod": 10000000000,
                              "DNSConfig": {}, "Isolation": "default"},
            "Resources": {"Limits": {}, "Reservations": reserve},
            "RestartPolicy": {"Condition": "any", "Delay": 5000000000, "MaxAttempts": 0},
            "Placement": {**placement, "Platforms": [{"Architecture": "amd64", "OS": "linux"}]},
            "ForceUpdate": 0, "Runtime": "container"},
        "Mode": mode,
        "UpdateConfig": {"Parallelism": 1, "FailureAction": "pause", "Monitor": 5000000000,
                         "MaxFailureRatio": 0, "Order": "stop-first"},
        "EndpointSpec": {"Mode": "vip"},
    }
    out = {"ID": s.swarm_id, "Version": {"Index": index}, "CreatedAt": CREATED,
           "UpdatedAt": CREATED, "Spec": spec, "Endpoint": {"Spec": {"Mode": "vip"}},
           "ServiceStatus": {"RunningTasks": running, "DesiredTasks": desired,
                             "CompletedTasks": 0}}
    if s.update_state:
        # the docker CLI cannot parse an empty time: a sim that never dated it gets CREATED
        out["UpdateStatus"] = {"State": s.update_state, "StartedAt": s.update_started or CREATED,
                               "CompletedAt": CREATED, "Message": s.update_message}
    return out


def task_json(t: Any, index: int, image: str) -> dict:
    status: dict = {"Timestamp": CREATED, "State": t.state, "Message": t.message,
                    "PortStatus": {}}
    if t.error:
        status["Err"] = t.error
    if t.state == "running":
        status["ContainerStatus"] = {"ContainerID": f"{t.swarm_id}{'c' * 39}"[:64], "PID": 4242,
                                     "ExitCode": 0}
    out = {"ID": t.swarm_id, "Version": {"Index": index}, "CreatedAt": CREATED,
           "UpdatedAt": CREATED, "Labels": {},
           "Spec": {"ContainerSpec": {"Image": image, "Isolation": "default"},
                    "Resources": {"Limits": {}, "Reservations": {}},
                    "Placement": {"Platforms": [{"Architecture": "amd64", "OS": "linux"}]},
                    "ForceUpdate": 0},
           "ServiceID": t.service_id, "Slot": t.slot, "Status": status,
           "DesiredState": t.desired_state}
    if t.slot == 0:
        del out["Slot"]                 # global tasks have no slot
    if t.node_id:
        out["NodeID"] = t.node_id
    return out


def encode(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


class Kind:
    """One kind of object: its JSON by id, each encoded once, and lookups by name."""

    def __init__(self, objects: list[dict], name: Any = None) -> None:
        self.objects = {o["ID"]: o for o in objects}
        self.encoded = {oid: encode(o) for oid, o in self.objects.items()}
        self.names = {name(o): oid for oid, o in self.objects.items()} if name else {}
        self._body: bytes | None = None

    def changed(self, oid: str) -> None:
        self.encoded[oid] = encode(self.objects[oid])
        self._body = None

    def body(self, ids: Any = None) -> bytes:
        if ids is not None:
            return b"[" + b",".join(self.encoded[i] for i in ids) + b"]"
        if self._body is None:
            self._body = b"[" + b",".join(self.encoded.values()) + b"]"
        return self._body

    def find(self, key: str) -> str | None:
        """An id from an id, a name or a unique id prefix, as dockerd resolves them."""
        if key in self.objects:
            return key
        if key in self.names:
            return self.names[key]
        found = [i for i in self.objects if i.startswith(key)]
        return found[0] if len(found) == 1 else None


class SwarmWorld:
    """Swarm's answers for a simulated world (a SimCluster), ready to send."""

    def __init__(self, sim: Any, seed: int = 1) -> None:
        self.lock = threading.Lock()
        self.rng = random.Random(seed)
        self.index = 100
        images = {s.swarm_id: f"{s.image}@sha256:{'0' * 64}" for s in sim.services.values()}
        running: dict[str, int] = {}
        desired: dict[str, int] = {}
        for t in sim.tasks.values():
            if t.wanted:
                desired[t.service_id] = desired.get(t.service_id, 0) + 1
                running[t.service_id] = running.get(t.service_id, 0) + (t.state == "running")
        self.nodes = Kind([node_json(n, self._next()) for n in sim.nodes.values()],
                          name=lambda o: o["Description"]["Hostname"])
        self.services = Kind([service_json(s, self._next(), running.get(s.swarm_id, 0),
                                           desired.get(s.swarm_id, 0))
                              for s in sim.services.values()],
                             name=lambda o: o["Spec"]["Name"])
        self.tasks = Kind([task_json(t, self._next(), images.get(t.service_id, ""))
                           for t in sim.tasks.values()])
        self.by_node: dict[str, list[str]] = {}
        self.by_service: dict[str, list[str]] = {}
        for tid, t in self.tasks.objects.items():
            self.by_node.setdefault(t.get("NodeID", ""), []).append(tid)
            self.by_service.setdefault(t["ServiceID"], []).append(tid)
        self._task_ids = list(self.tasks.objects)
        leader = next((o for o in self.nodes.objects.values()
                       if o.get("ManagerStatus", {}).get("Leader")), None)
        self.leader_id = leader["ID"] if leader else ""
        self.swarm = {"ID": "swarmstandin0000000000000", "Version": {"Index": self._next()},
                      "CreatedAt": CREATED, "UpdatedAt": CREATED,
                      "Spec": {"Name": "default", "Labels": {},
                               "Orchestration": {"TaskHistoryRetentionLimit": 5},
                               "Raft": {"SnapshotInterval": 10000, "KeepOldSnapshots": 0,
                                        "LogEntriesForSlowFollowers": 500,
                                        "ElectionTick": 10, "HeartbeatTick": 1},
                               "Dispatcher": {"HeartbeatPeriod": 5000000000},
                               "CAConfig": {"NodeCertExpiry": 7776000000000000},
                               "TaskDefaults": {}, "EncryptionConfig": {"AutoLockManagers": False}},
                      "JoinTokens": {"Worker": "SWMTKN-1-worker", "Manager": "SWMTKN-1-manager"},
                      "DefaultAddrPool": ["10.0.0.0/8"], "SubnetSize": 24, "DataPathPort": 4789}
        self.events: list[bytes] = []           # every event so far, in order
        self.events_changed = threading.Condition(self.lock)
        self.churned = 0                        # task changes made so far

    def _next(self) -> int:
        self.index += 1
        return self.index

    # -- changes -------------------------------------------------------------------
    def churn(self, fraction: float) -> int:
        """Change `fraction` of the tasks (running <-> starting), as a busy cluster does."""
        with self.lock:
            count = max(1, round(len(self._task_ids) * fraction)) if self._task_ids else 0
            now = stamp()
            for tid in self.rng.sample(self._task_ids, count):
                t = self.tasks.objects[tid]
                status = t["Status"]
                status["State"] = "starting" if status["State"] == "running" else "running"
                status["Message"] = status["State"]
                status["Timestamp"] = t["UpdatedAt"] = now
                t["Version"] = {"Index": self._next()}
                self.tasks.changed(tid)
            self.churned += count
            return count

    def update(self, kind: str, key: str, version: int, spec: dict) -> tuple[int, dict]:
        """A node, service or swarm update: (status, answer), dockerd's checks and errors."""
        with self.lock:
            if kind == "swarm":
                obj, what = self.swarm, None
            else:
                what = self.nodes if kind == "nodes" else self.services
                oid = what.find(key)
                if oid is None:
                    return 404, {"message": f"{kind[:-1]} {key} not found"}
                obj = what.objects[oid]
            if obj["Version"]["Index"] != version:
                return 500, {"message": "rpc error: code = Unknown desc = update out of sequence"}
            obj["Spec"] = spec
            obj["Version"] = {"Index": self._next()}
            obj["UpdatedAt"] = stamp()
            if what is not None:
                what.changed(obj["ID"])
                event = {"Type": kind[:-1], "Action": "update",
                         "Actor": {"ID": obj["ID"], "Attributes": {}}, "scope": "swarm",
                         "time": int(time.time()), "timeNano": time.time_ns()}
                self.events.append(encode(event) + b"\n")
                self.events_changed.notify_all()
            return 200, {"Warnings": None} if kind == "services" else {}

    # -- reads ---------------------------------------------------------------------------
    def tasks_body(self, filters: dict[str, list[str]]) -> bytes:
        with self.lock:
            if not filters:
                return self.tasks.body()
            ids = None
            for key, values in filters.items():
                if key == "node":
                    nodes = [self.nodes.find(v) or v for v in values]
                    pick = [t for n in nodes for t in self.by_node.get(n, [])]
                elif key == "service":
                    svcs = [self.services.find(v) or v for v in values]
                    pick = [t for s in svcs for t in self.by_service.get(s, [])]
                elif key == "desired-state":
                    pick = [t for t in (ids or self._task_ids)
                            if self.tasks.objects[t]["DesiredState"] in values]
                elif key == "id":
                    pick = [t for t in self._task_ids if any(t.startswith(v) for v in values)]
                else:
                    continue
                ids = pick if ids is None else [t for t in ids if t in set(pick)]
            return self.tasks.body(ids if ids is not None else None)


def parse_filters(raw: str) -> dict[str, list[str]]:
    """?filters={"node":["x"]} or the old {"node":{"x":true}}."""
    if not raw:
        return {}
    data = json.loads(raw)
    return {k: list(v) if isinstance(v, list) else [x for x, on in v.items() if on]
            for k, v in data.items()}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: StandInServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _send(self, status: int, body: bytes | dict | list, head_only: bool = False) -> None:
        data = body if isinstance(body, bytes) else encode(body)
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Api-Version", API_VERSION)
        self.send_header("Docker-Experimental", "false")
        self.send_header("Ostype", "linux")
        self.send_header("Server", f"Docker/{ENGINE} (linux)")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if not head_only:
            self.wfile.write(data)

    def _route(self) -> tuple[list[str], dict[str, list[str]]]:
        url = urlsplit(self.path)
        parts = [p for p in url.path.split("/") if p]
        if parts and parts[0].startswith("v1."):
            parts = parts[1:]
        return parts, parse_qs(url.query)

    def do_HEAD(self) -> None:
        self._send(200, b"OK", head_only=True)

    def do_GET(self) -> None:
        parts, query = self._route()
        world = self.server.world
        first = parts[0] if parts else ""
        if first == "_ping":
            return self._send(200, b"OK")
        if first == "version":
            return self._send(200, {"Version": ENGINE, "ApiVersion": API_VERSION,
                                    "MinAPIVersion": MIN_API_VERSION, "Os": "linux",
                                    "Arch": "amd64", "KernelVersion": "6.1.0",
                                    "GoVersion": "go1.20.13", "GitCommit": "fca702d",
                                    "Components": [{"Name": "Engine", "Version": ENGINE}]})
        if first == "info":
            return self._send(200, {"ID": "standin", "Name": "standin", "ServerVersion": ENGINE,
                                    "OSType": "linux", "Architecture": "x86_64",
                                    "Swarm": {"NodeID": world.leader_id, "NodeAddr": "192.0.2.2",
                                              "LocalNodeState": "active",
                                              "ControlAvailable": True, "Error": "",
                                              "RemoteManagers": None,
                                              "Nodes": len(world.nodes.objects),
                                              "Managers": sum("ManagerStatus" in o for o in
                                                              world.nodes.objects.values())}})
        if first == "swarm":
            with world.lock:
                return self._send(200, encode(world.swarm))
        if first == "events":
            return self._events()
        kinds = {"nodes": world.nodes, "services": world.services, "tasks": world.tasks}
        if first in kinds and len(parts) == 2:
            with world.lock:
                oid = kinds[first].find(parts[1])
                if oid is None:
                    return self._send(404, {"message": f"{first[:-1]} {parts[1]} not found"})
                return self._send(200, kinds[first].encoded[oid])
        if first == "tasks":
            return self._send(200, world.tasks_body(parse_filters(query.get("filters", [""])[0])))
        if first in ("nodes", "services") and len(parts) == 1:
            filters = parse_filters(query.get("filters", [""])[0])
            with world.lock:
                kind = kinds[first]
                if not filters:
                    return self._send(200, kind.body())
                ids = [oid for oid in kind.objects if all(
                    any(kind.find(v) == oid for v in vs) for k, vs in filters.items()
                    if k in ("id", "name"))]
                return self._send(200, kind.body(ids))
        self._send(404, {"message": f"page not found: {self.path}"})

    def do_POST(self) -> None:
        parts, query = self._route()
        world = self.server.world
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        first = parts[0] if parts else ""
        if first == "_bench":
            if parts[1:] == ["churn"]:
                return self._send(200, {"changed": world.churn(float(query["fraction"][0]))})
            if parts[1:] == ["rate"]:
                self.server.churn_per_s = float(query["per_s"][0])
                return self._send(200, {})
        if parts[-1:] == ["update"] and first in ("nodes", "services", "swarm"):
            try:
                version = int(query["version"][0])
                spec = json.loads(body)
            except (KeyError, ValueError):
                return self._send(400, {"message": "invalid version or spec"})
            key = parts[1] if first != "swarm" else ""
            status, answer = world.update(first, key, version, spec)
            return self._send(status, answer)
        self._send(404, {"message": f"page not found: {self.path}"})

    def _events(self) -> None:
        """Chunked JSON lines, from now on, until the client or the server goes."""
        world = self.server.world
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Api-Version", API_VERSION)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self.wfile.flush()
        with world.lock:
            sent = len(world.events)
        while not self.server.stopping.is_set():
            with world.lock:
                world.events_changed.wait(0.5)
                new, sent = world.events[sent:], len(world.events)
            try:
                for line in new:
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(line), line))
                self.wfile.flush()
            except OSError:
                return
        self.close_connection = True


class StandInServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, path: Path, world: SwarmWorld) -> None:
        self.world, self.path = world, path
        self.stopping = threading.Event()
        self.churn_per_s = 0.0
        path.unlink(missing_ok=True)
        super().__init__(str(path), Handler)

    @property
    def endpoint(self) -> str:
        return f"unix://{self.path}"

    def start(self) -> StandInServer:
        threading.Thread(target=self.serve_forever, daemon=True, name="dockerapi").start()
        threading.Thread(target=self._churn_loop, daemon=True, name="dockerapi-churn").start()
        return self

    def _churn_loop(self) -> None:
        while not self.stopping.wait(1.0):
            if self.churn_per_s:
                self.world.churn(self.churn_per_s)

    def stop(self) -> None:
        self.stopping.set()
        self.shutdown()
        self.server_close()
        self.path.unlink(missing_ok=True)


def main() -> None:
    import sys
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from opsconsole.providers.sim import SimCluster
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--socket", required=True, type=Path)
    ap.add_argument("--nodes", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--parts", type=Path, help="write the world's hosts, VMs, proxy backends, "
                    "servers and sessions here (pickle), for a console's other providers")
    args = ap.parse_args()
    sim = SimCluster(seed=args.seed, scale=args.nodes, clock=lambda: 0.0)
    world = SwarmWorld(sim)
    if args.parts:
        from opsconsole.model import Backend
        args.parts.write_bytes(pickle.dumps((
            list(sim.hosts.values()), list(sim.vms.values()),
            [Backend(b) for b in sorted({b for b, _ in sim.servers})],
            list(sim.servers.values()), list(sim.sessions.values()))))
    del sim
    server = StandInServer(args.socket, world).start()
    print(f"ready {server.endpoint} nodes={len(world.nodes.objects)} "
          f"tasks={len(world.tasks.objects)}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        server.stop()


if __name__ == "__main__":
    main()
