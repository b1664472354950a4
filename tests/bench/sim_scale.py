"""Benchmark: the console at scale on the simulated cluster (prints figures).

    python tests/bench/sim_scale.py [nodes]

Measures building the sim, one snapshot, a snapshot diff, the first fill of
the tree (all nodes added) and a steady refresh (a few tasks moved), with the
memory Python allocated for the snapshot.
"""
from __future__ import annotations

import asyncio
import sys
import time
import tracemalloc

from opsconsole.model import diff
from opsconsole.providers.sim import ManualClock, SimCluster
from opsconsole.session import open_session


def ms(t0: float) -> str:
    return f"{(time.perf_counter() - t0) * 1000:8.1f} ms"


async def main(nodes: int) -> None:
    from opsconsole.ui.app import OpsConsole
    from opsconsole.ui.tree import ClusterTree
    clock = ManualClock()
    t0 = time.perf_counter()
    sim = SimCluster(scale=nodes, clock=clock)
    print(f"sim build ({nodes} nodes)        {ms(t0)}")
    session = open_session(providers=sim.providers())
    tracemalloc.start()
    t0 = time.perf_counter()
    snap = await session.cluster.snapshot()
    took = ms(t0)
    size = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    print(f"snapshot: {len(snap.nodes)} nodes, {len(snap.tasks)} tasks, "
          f"{len(snap.sessions)} sessions  {took}  ({size / 2**20:.1f} MiB)")
    node = snap.nodes[len(snap.nodes) // 2]
    sim.set_availability(node.swarm_id, "drain")
    clock.advance(10)
    snap2 = await session.cluster.snapshot()
    t0 = time.perf_counter()
    d = diff(snap, snap2)
    print(f"diff: +{len(d.added)} ~{len(d.changed)} -{len(d.removed)}        {ms(t0)}")

    app = OpsConsole(session, poll_interval=3600)
    async with app.run_test(size=(160, 50)) as pilot:
        tree = app.query_one(ClusterTree)
        await pilot.pause()
        t0 = time.perf_counter()
        tree.show(snap)
        print(f"tree first fill: {len(tree.index)} tree nodes {ms(t0)}")
        t0 = time.perf_counter()
        tree.show(snap2)
        print(f"tree refresh after a drain        {ms(t0)}")
        clock.advance(2)
        snap3 = await session.cluster.snapshot()
        t0 = time.perf_counter()
        tree.show(snap3)
        print(f"tree refresh, 2 s later            {ms(t0)}")
        t0 = time.perf_counter()
        await pilot.pause()
        print(f"render after refresh               {ms(t0)}")


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 1000))
