"""N-1 on the reference lab, checked against what happens when a host's VMs really go.

The console's table says what the loss of hv-01 would do; then hv-01's three VMs
are turned off over WinRM (the lab's Hyper-V emulator, no drain first: a
failure, not a maintenance) and docker and HAProxy say what happened: Raft has
no leader on the surviving manager, each service runs on hv-02 exactly the
tasks the table said it keeps, nothing is rescheduled while quorum is lost,
and the proxy still serves users from hv-02.
"""
from __future__ import annotations

import asyncio
import subprocess
import sys
import time

import docker
import requests

from opsconsole.ops import resilience
from opsconsole.ops.guards import FAIL

from .labkit import until, whole

HV01_VMS = ("vm-01", "vm-02", "vm-03")
SURVIVORS = ("vm-04", "vm-05", "vm-06")


def containers_of(lab, names) -> dict[str, int]:
    """service -> running containers on these VMs, from each VM's own dockerd (which
    answers without a Swarm leader)."""
    out: dict[str, int] = {}
    for name in names:
        with lab.client(name, timeout=10) as c:
            for ctr in c.containers.list(filters={"status": "running"}):
                svc = ctr.labels.get("com.docker.swarm.service.name")
                if svc:
                    out[svc] = out.get(svc, 0) + 1
    return out


def leader_error(lab, name: str) -> str:
    """Why `name` cannot list the swarm's nodes ("" when it can): no leader, or no answer
    at all while Raft looks for one."""
    try:
        with lab.client(name, timeout=10) as c:
            c.nodes.list()
    except (docker.errors.APIError, requests.exceptions.RequestException) as e:
        return str(e)
    return ""


async def test_the_n_minus_1_table_matches_a_real_host_failure(ref_lab, ref_console):
    lab, session = ref_lab, ref_console
    snap = await whole(session)
    answer = resilience.assess(snap)
    [hv01] = [o for o in answer.outcomes if o.domain.name == "hv-01"]
    said = {(f.what, f.subject): f for f in hv01.findings}
    # the reference cluster's finding: one manager per host, either host's loss loses quorum
    assert said[(resilience.QUORUM, "vm-01")].level == FAIL, hv01.findings
    assert not answer.survived and answer.verdict.startswith("N-1 ✘ hv-01: quorum")
    # what the table says each service keeps on hv-02 (nothing rescheduled without quorum)
    keeps = {}
    for svc in snap.services:
        running = [t for t in snap.tasks_of_service(svc.swarm_id) if t.wanted
                   and t.state == "running"]
        keeps[svc.name] = sum(1 for t in running if t.node_id not in hv01.domain.nodes)
        finding = said.get((resilience.OUTAGE, svc.name))
        assert (finding is not None and finding.level == FAIL) == (keeps[svc.name] == 0), \
            (svc.name, keeps, hv01.findings)
    assert keeps["web"] >= 1 and keeps["portal"] == 3

    # hv-01 fails: its VMs turned off over WinRM, no drain, no stand-in
    hyperv = session.providers.hypervisor
    await asyncio.gather(*(hyperv.stop_vm(vm, timeout=5, force=True) for vm in HV01_VMS))
    error = await until(lambda: leader_error(lab, "vm-04") or None,
                        "vm-04 to say the swarm has no leader")
    assert any(w in error for w in ("leader", "quorum", "timed out")), error
    # Swarm keeps what ran on hv-02 and reschedules nothing, for as long as we watch
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        ran = containers_of(lab, SURVIVORS)
        assert {s: ran.get(s, 0) for s in keeps} == keeps, (ran, keeps)
        await asyncio.sleep(2)
    # the proxy still sends users to hv-02's servers
    def ask() -> str:
        return requests.get(lab.portal_url, timeout=5).text.strip()
    served = {await asyncio.to_thread(ask) for _ in range(12)}
    assert served and served <= set(SURVIVORS), served

    # and the headless command says the same, exit 6 now that Swarm cannot be read
    cmd = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "opsconsole", "-i", str(lab.inventory_path),
                         "resilience"], capture_output=True, text=True, timeout=120)
    assert cmd.returncode == 6, (cmd.stdout, cmd.stderr)
    assert "N-1 ? swarm unreadable" in cmd.stdout or "N-1 ✘" in cmd.stdout, cmd.stdout

