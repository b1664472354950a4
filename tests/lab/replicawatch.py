"""Swarm's replicated tasks every 100 ms, from a process of its own (test infrastructure).

    python -m tests.lab.replicawatch --out FILE [--period 0.1] SOCKET [SOCKET ...]

Asks the first manager socket that answers for nodes, services and tasks, and writes one
JSON line per sample: {"t": wall time, "nodes": {hostname: availability},
"services": {name: {"replicas": n, "running": [[task id, hostname], ...]}}} for every
replicated service, counting the tasks Swarm wants running that run. Stops on SIGTERM.
The lab tests read it with `ReplicaWatch` (labkit.py).
"""
from __future__ import annotations

import argparse
import json
import signal
import time

import docker

API_VERSION = "1.41"


def sample(api: docker.APIClient) -> dict:
    nodes = {n["ID"]: n for n in api.nodes()}
    services = {s["ID"]: s for s in api.services()
                if "Replicated" in s["Spec"]["Mode"]}
    out: dict[str, dict] = {s["Spec"]["Name"]: {
        "replicas": s["Spec"]["Mode"]["Replicated"]["Replicas"], "running": []}
        for s in services.values()}
    for t in api.tasks(filters={"desired-state": "running"}):
        svc = services.get(t["ServiceID"])
        if svc is None or t["Status"]["State"] != "running":
            continue
        node = nodes.get(t.get("NodeID", ""), {})
        out[svc["Spec"]["Name"]]["running"].append(
            [t["ID"], node.get("Description", {}).get("Hostname", "?")])
    return {"t": time.time(), "services": out,
            "nodes": {n["Description"]["Hostname"]: n["Spec"]["Availability"]
                      for n in nodes.values()}}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--period", type=float, default=0.1)
    ap.add_argument("sockets", nargs="+")
    args = ap.parse_args()
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    clients = [docker.APIClient(base_url=s, version=API_VERSION, timeout=2) for s in args.sockets]
    with open(args.out, "a") as out:
        while not stop:
            t0 = time.monotonic()
            for api in clients:      # a manager that is down or mid-election: the next one
                try:
                    out.write(json.dumps(sample(api)) + "\n")
                    out.flush()
                    break
                except Exception:  # noqa: BLE001 - a missed sample; the next one counts
                    continue
            time.sleep(max(0.0, args.period - (time.monotonic() - t0)))


if __name__ == "__main__":
    main()
