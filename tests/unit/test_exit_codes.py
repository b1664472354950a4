"""Every exit code of the README, proved with real subprocesses (`python3 -m opsconsole`).

0 success; 2 bad input (inventory, names, usage); 3 refused (a guard, read-only mode,
or not confirmed, stdin closed included); 4 an operation failed; 5 aborted or
interrupted (SIGINT, SIGTERM, SIGHUP); 6 a remote system could not be reached; 7 the
loss of a single host or VM would not be survived (`resilience`).

Each test has its own state dir (XDG_STATE_HOME, HOME), so journals never mix. The
simulated cluster is rebuilt from its seed in each process: what one command changed
the next one does not see, only the journal carries over (as after a console restart).
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from unitkit import sim_snapshot

from opsconsole.ops import catalog
from opsconsole.ops.plans import Timing
from opsconsole.ops.records import JOURNAL_VERSION, JsonLines
from opsconsole.providers.sim import SimCluster

ROOT = Path(__file__).resolve().parents[2]
UNREACHABLE = '[swarm]\nendpoints = ["unix:///nonexistent/docker.sock"]\n'


class Console:
    """Runs opsconsole in a state dir of its own."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.started: list[subprocess.Popen] = []      # ended by the fixture if still running
        self.env = {k: v for k, v in os.environ.items()
                    if not k.startswith(("OPSCONSOLE_", "DOCKER_", "XDG_"))}
        self.env.update(XDG_STATE_HOME=str(tmp / "state"), HOME=str(tmp / "home"),
                        PYTHONPATH=os.pathsep.join(filter(None, (
                            str(ROOT), os.environ.get("PYTHONPATH", "")))),
                        PYTHONUNBUFFERED="1", COLUMNS="200", NO_COLOR="1")
        self.sim_dir = tmp / "state/opsconsole/sim"     # the simulated cluster's records
        self.site_dir = tmp / "state/opsconsole"        # an inventory's records

    def argv(self, args) -> list[str]:
        return [sys.executable, "-m", "opsconsole", *args]

    def __call__(self, *args: str, input: str | None = None, stdin=None,
                 timeout: float = 30) -> subprocess.CompletedProcess:
        r = subprocess.run(self.argv(args), check=False, env=self.env, input=input,
                           stdin=stdin, capture_output=True, text=True, timeout=timeout)
        return _honest(r)

    def each(self, *commands: tuple[str, ...]) -> list[subprocess.CompletedProcess]:
        """Commands that do not depend on each other, run side by side (stdin closed)."""
        procs = [self.popen(c, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True) for c in commands]
        done = []
        for c, proc in zip(commands, procs):
            out, err = proc.communicate(timeout=30)
            done.append(_honest(subprocess.CompletedProcess(c, proc.returncode, out, err)))
        return done

    def popen(self, args, **kw) -> subprocess.Popen:
        proc = subprocess.Popen(self.argv(args), env=self.env, **kw)
        self.started.append(proc)
        return proc

    def start(self, *args: str, stdin=subprocess.DEVNULL) -> Running:
        return Running(self.popen(args, stdin=stdin, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE))

    def inventory(self, text: str, name: str = "site.toml") -> str:
        path = self.tmp / name
        path.write_text(text)
        return str(path)

    def records(self, folder: Path, op: str | None = None) -> list[dict]:
        path = folder / "journal.jsonl"
        if not path.exists():
            return []
        recs = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        return [r for r in recs if op is None or r.get("op") == op]

    def unfinished(self, folder: Path, op: str, kind: str, target: str, *,
                   host: str = "elsewhere", pid: int = 1, **timing) -> None:
        """A journal 'begin' with no end, of the plan the simulated cluster makes for
        `kind target` (as a console on `host`, `pid` left it)."""
        plan = catalog.build(kind, sim_snapshot(SimCluster(seed=1)), target, Timing(**timing))
        JsonLines(folder / "journal.jsonl").append({
            "v": JOURNAL_VERSION, "event": "begin", "op": op, "kind": plan.kind,
            "target": plan.target, "params": plan.params, "who": "tester@elsewhere",
            "steps": [s.title for s in plan.steps], "keys": [s.key for s in plan.steps],
            "host": host, "pid": pid, "time": time.time() - 3600})   # its last sign of life


def _honest(r: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    """Honest exits never end in a Python trace nor in Click's bare "Aborted!"."""
    for stream in (r.stdout, r.stderr):
        assert "Traceback" not in stream and "Aborted!" not in stream, stream
    return r


class Running:
    """A console started in the background; its output collected as it comes."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.proc, self.out, self.err = proc, bytearray(), bytearray()
        self._readers = [threading.Thread(target=self._drain, args=(s, b), daemon=True)
                         for s, b in ((proc.stdout, self.out), (proc.stderr, self.err))]
        for t in self._readers:
            t.start()

    @staticmethod
    def _drain(stream, into: bytearray) -> None:
        while chunk := os.read(stream.fileno(), 4096):
            into.extend(chunk)

    def wait_for(self, text: str, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while text.encode() not in self.out:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.proc.kill()
                raise AssertionError(f"never printed {text!r}: {self.out.decode()}"
                                     f"{self.err.decode()}")
            time.sleep(0.02)

    def finish(self, timeout: float = 20) -> tuple[int, str, str]:
        code = self.proc.wait(timeout)
        for t in self._readers:
            t.join(5)
        r = _honest(subprocess.CompletedProcess(self.proc.args, code, self.out.decode(),
                                                self.err.decode()))
        return code, r.stdout, r.stderr


@pytest.fixture
def oc(tmp_path: Path):
    console = Console(tmp_path)
    yield console
    for proc in console.started:     # a test that failed half-way leaves none running
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def ends(records: list[dict]) -> list[dict]:
    return [r for r in records if r["event"] == "end"]


# -- 0: success -------------------------------------------------------------------------

def test_0_status_plan_and_a_confirmed_run(oc):
    r = oc("status")
    assert r.returncode == 0, r.stderr
    assert "nodes 6/6 ready" in r.stdout and r.stderr == ""
    r = oc("status", "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["problems"] == []
    r = oc("plan", "cordon", "vm-02")
    assert r.returncode == 0 and "1. set vm-02 availability to pause" in r.stdout
    assert oc.records(oc.sim_dir) == []                 # a plan changes nothing
    r = oc("run", "cordon", "vm-02", "--yes")
    assert r.returncode == 0, r.stderr
    assert "✔ set vm-02 availability to pause" in r.stdout
    [end] = ends(oc.records(oc.sim_dir))
    assert end["state"] == "done"


# -- 2: bad input ----------------------------------------------------------------------

def test_2_bad_inventory_names_file_and_line(oc):
    broken = oc.inventory("[swarm\nendpoints = 1\n", "broken.toml")
    r = oc("-i", broken, "status")
    assert r.returncode == 2 and f"{broken}:1" in r.stderr and "not valid TOML" in r.stderr
    wrong = oc.inventory('[swarm]\nendpoints = ["unix:///x"]\nmanagers = 3\n', "wrong.toml")
    r = oc("-i", wrong, "run", "drain", "vm-01", "--yes")
    assert r.returncode == 2 and f"{wrong}:3: swarm.managers: unknown key" in r.stderr
    r = oc("-i", str(oc.tmp / "missing.toml"), "status")
    assert r.returncode == 2 and "missing.toml" in r.stderr


def test_2_unknown_node(oc):
    r = oc("plan", "drain", "vm-99")
    assert r.returncode == 2 and "no node named 'vm-99'" in r.stderr, r.stderr
    r = oc("run", "drain", "vm-99", "--yes")
    assert r.returncode == 2 and "no node named 'vm-99'" in r.stderr
    assert oc.records(oc.sim_dir) == []


def test_2_unknown_operation_id(oc):
    oc.unfinished(oc.sim_dir, "dead-1", "cordon", "vm-04")
    verbs = ("resume", "rollback", "abandon")
    for verb, r in zip(verbs, oc.each(*((v, "nope-7", "--yes") for v in verbs))):
        assert r.returncode == 2, (verb, r.stderr)
        assert "no unfinished operation 'nope-7'" in r.stderr and "unfinished: dead-1" in r.stderr
    assert [r["event"] for r in oc.records(oc.sim_dir)] == ["begin"]


def test_2_usage(oc):
    r = oc("run", "reboot-everything", "vm-01")
    assert r.returncode == 2 and "Invalid value" in r.stderr


# -- 3: refused ------------------------------------------------------------------------

def test_3_read_only(oc):
    r = oc("--read-only", "run", "cordon", "vm-02", "--yes")
    assert r.returncode == 3 and "read-only mode" in r.stderr
    assert oc.records(oc.sim_dir) == []


def test_3_not_confirmed_wrong_word(oc):
    r = oc("run", "cordon", "vm-03", input="vm-04\n")
    assert r.returncode == 3 and "not confirmed; nothing changed" in r.stderr
    assert oc.records(oc.sim_dir) == []


def test_3_stdin_closed_at_the_prompt(oc):
    r = oc("run", "cordon", "vm-03", stdin=subprocess.DEVNULL)
    assert r.returncode == 3, r.stderr
    assert "not confirmed: no input (stdin closed); nothing changed" in r.stderr
    assert oc.records(oc.sim_dir) == []


def test_5_signal_at_the_prompt_ends_at_once_nothing_changed(oc):
    """Waiting for the operator to type (stdin open, nothing typed): any of the three
    signals ends the console at once, exit 5, nothing recorded. (The prompt used to
    read in a thread that kept the process alive after SIGINT: kill -9 was the way.)"""
    runs = {sig: oc.start("run", "cordon", "vm-03", stdin=subprocess.PIPE)
            for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    for sig, run in runs.items():
        run.wait_for("Type vm-03 to confirm")
        run.proc.send_signal(sig)
    for sig, run in runs.items():
        code, out, err = run.finish(timeout=10)
        assert code == 5, (sig, out, err)
        assert f"interrupted by {sig.name}; nothing changed" in err
        run.proc.stdin.close()
    assert oc.records(oc.sim_dir) == []


def test_3_resume_of_a_live_operation_is_refused(oc):
    """The console that runs it is alive (this machine, a live pid): resume, rollback and
    abandon refuse; once it is gone, resume goes ahead."""
    alive = subprocess.Popen(["sleep", "60"])
    try:
        oc.unfinished(oc.sim_dir, "live-1", "cordon", "vm-04", host=socket.gethostname(),
                      pid=alive.pid)
        verbs = ("resume", "rollback", "abandon")
        listed, *refused = oc.each(("journal",), *((v, "live-1", "--yes") for v in verbs))
        assert listed.returncode == 0 and f"running in pid {alive.pid}" in listed.stdout
        for verb, r in zip(verbs, refused):
            assert r.returncode == 3, (verb, r.stdout, r.stderr)
            assert f"live-1 is not dead: running in pid {alive.pid} on " in r.stderr, r.stderr
        assert [r["event"] for r in oc.records(oc.sim_dir)] == ["begin"]
    finally:
        alive.kill()
        alive.wait()
    r = oc("resume", "live-1", "--yes")
    assert r.returncode == 0, r.stdout + r.stderr
    assert ends(oc.records(oc.sim_dir, "live-1"))[-1]["state"] == "done"


# -- 4: failed -------------------------------------------------------------------------

def test_4_a_failed_operation_stays_unfinished_with_its_commands(oc):
    """A drain whose recorded drain_timeout is tiny: resumed, the tasks cannot move in
    time, the step fails after the node was drained: exit 4, the way out printed, and
    the journal keeps it unfinished."""
    oc.unfinished(oc.sim_dir, "slow-1", "drain", "vm-03", sessions_threshold=10**6,
                  sessions_timeout=0.05, drain_timeout=0.05, settle=0.0)
    r = oc("resume", "slow-1", "--yes")
    assert r.returncode == 4, r.stdout + r.stderr
    assert "drain vm-03 failed: timed out after" in r.stderr
    assert ("opsconsole resume slow-1 | opsconsole rollback slow-1 | "
            "opsconsole abandon slow-1") in r.stderr
    recs = oc.records(oc.sim_dir, "slow-1")
    assert ends(recs) == []
    assert recs[-1]["event"] == "failed" and "timed out" in recs[-1]["error"]
    assert any(r["event"] == "step" and r["key"] == "availability:vm-03:drain"
               and r["phase"] == "done" for r in recs)
    r = oc("journal")
    assert "UNFINISHED slow-1  drain vm-03" in r.stdout and "failed" in r.stdout


# -- 5: interrupted --------------------------------------------------------------------

def _interrupted(oc, run, sig, what: str) -> str:
    """Send `sig` once `run` has a step under way; check exit 5 and the journal; the op."""
    run.wait_for("▶ wait for sessions")
    run.proc.send_signal(sig)
    code, out, err = run.finish()
    assert code == 5, out + err
    assert f"{what} interrupted: interrupted by {sig.name}; unfinished" in err
    [begin] = [r for r in oc.records(oc.sim_dir) if r["event"] == "begin"]
    op = begin["op"]
    recs = oc.records(oc.sim_dir, op)
    assert ends(recs) == []
    assert [r["error"] for r in recs if r["event"] == "interrupted"] == \
        [f"interrupted by {sig.name}"]
    assert not (oc.sim_dir / "reports" / f"{op}.md").exists()
    assert "report:" not in out
    assert f"opsconsole resume {op}" in err
    r = oc("journal")
    assert f"UNFINISHED {op}  {what}" in r.stdout and "interrupted" in r.stdout
    return op


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP],
                         ids=lambda s: s.name)
def test_5_signal_interrupts_a_maintenance_window(oc, sig):
    run = oc.start("--demo", "run", "maintenance", "hv-02", "--yes")
    _interrupted(oc, run, sig, "maintenance hv-02")


def test_5_interrupted_then_resumed_to_the_end(oc):
    op = _interrupted(oc, oc.start("--demo", "run", "drain", "vm-02", "--yes"),
                      signal.SIGINT, "drain vm-02")
    r = oc("--demo", "resume", op, "--yes", timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert ends(oc.records(oc.sim_dir, op))[-1]["state"] == "done"
    assert "UNFINISHED" not in oc("journal").stdout


def test_5_output_gone_interrupts_like_a_hangup(oc):
    """stdout's reader leaves mid-run (ssh without a terminal dropped): the operation is
    interrupted and recorded so (it used to end 'failed' on a BrokenPipeError, exit 1)."""
    proc = oc.popen(("--demo", "run", "drain", "vm-02", "--yes"), stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    seen, deadline = b"", time.monotonic() + 20
    while "▶ wait for sessions".encode() not in seen and time.monotonic() < deadline:
        seen += proc.stdout.read1(4096) or b""
    proc.stdout.close()
    assert proc.wait(30) == 5
    [begin] = [r for r in oc.records(oc.sim_dir) if r["event"] == "begin"]
    recs = oc.records(oc.sim_dir, begin["op"])
    assert ends(recs) == [] and recs[-1]["event"] == "interrupted"
    assert "its output went away" in recs[-1]["error"]


# -- 6: unreachable --------------------------------------------------------------------

def test_6_swarm_unreachable(oc):
    site = oc.inventory(UNREACHABLE)
    changes = (("plan", "drain", "vm-01"), ("run", "drain", "vm-01", "--yes"),
               ("unlock", "--yes"))
    text, as_json, *others = oc.each(("-i", site, "status"), ("-i", site, "status", "--json"),
                                     *(("-i", site, *c) for c in changes))
    assert text.returncode == 6 and "swarm: no manager answers" in text.stdout
    assert "socket does not exist" in text.stdout
    assert as_json.returncode == 6
    problems = json.loads(as_json.stdout)["problems"]
    assert "swarm" in {p["source"] for p in problems}
    assert all("socket does not exist" in p["text"] for p in problems)
    for args, r in zip(changes, others):
        assert r.returncode == 6, (args, r.stdout, r.stderr)
        assert "cannot read the cluster: swarm: " in r.stderr
        assert "no node named" not in r.stderr and "not locked" not in r.stdout
    assert oc.records(oc.site_dir) == []


def test_6_resume_rollback_abandon_with_the_swarm_unreachable(oc):
    site = oc.inventory(UNREACHABLE)
    oc.unfinished(oc.site_dir, "dead-1", "drain", "vm-01")
    verbs = ("resume", "rollback", "abandon")
    for verb, r in zip(verbs, oc.each(*(("-i", site, v, "dead-1", "--yes") for v in verbs))):
        assert r.returncode == 6, (verb, r.stdout, r.stderr)
        assert "cannot read the cluster" in r.stderr
    assert [r["event"] for r in oc.records(oc.site_dir)] == ["begin"]


# -- 7: not resilient ------------------------------------------------------------------

def test_7_resilience_of_the_simulated_cluster_and_6_when_unreadable(oc):
    table, text, unreadable = oc.each(("resilience", "--json"), ("resilience",),
                                      ("-i", oc.inventory(UNREACHABLE), "resilience"))
    assert table.returncode == 7, table.stderr
    answer = json.loads(table.stdout)
    # two managers on two hosts: losing either host loses Raft quorum
    assert answer["survived"] is False
    assert answer["verdict"].startswith("N-1 ✘ hv-01: quorum")
    hosts = {d["name"]: d for d in answer["domains"] if d["kind"] == "host"}
    assert sorted(hosts) == ["hv-01", "hv-02"] and not any(d["survived"] for d in hosts.values())
    assert any(f["what"] == "quorum" and "third failure domain" in f["fix"]
               for f in hosts["hv-01"]["findings"])
    assert text.returncode == 7 and "✘ host hv-02" in text.stdout
    assert unreadable.returncode == 6 and "N-1 ? swarm unreadable" in unreadable.stdout
    assert "[unknown] swarm: no manager answers" in unreadable.stdout


def test_0_status_lists_the_problems_worst_first(oc):
    text, as_json = oc.each(("status",), ("status", "--json"))
    assert text.returncode == as_json.returncode == 0
    concerns = json.loads(as_json.stdout)["concerns"]
    # the simulated site: two managers, so Raft tolerates no manager loss
    assert {"kind": "quorum", "level": "warn"}.items() <= concerns[0].items()
    assert "Problems (" in text.stdout and "quorum tolerates no manager loss" in text.stdout
