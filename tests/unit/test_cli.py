"""The command line on the simulated cluster: status, plan, run, journal, bad input."""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from opsconsole import __version__
from opsconsole.cli import main


@pytest.fixture
def run(tmp_path, monkeypatch):
    """Invoke the CLI with its records kept under tmp_path."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.delenv("OPSCONSOLE_READ_ONLY", raising=False)
    monkeypatch.delenv("OPSCONSOLE_INVENTORY", raising=False)

    def invoke(*args, input=None):
        return CliRunner().invoke(main, list(args), input=input)
    return invoke


def test_version(run):
    result = run("--version")
    assert result.exit_code == 0 and __version__ in result.output


def test_status_tree_shows_the_reference_cluster(run):
    result = run("status")
    assert result.exit_code == 0, result.output
    out = result.output
    assert "nodes 6/6 ready" in out and "managers 2" in out and "tolerates 0 losses" in out
    for name in ("hv-01", "hv-02", "vm-01", "vm-06", "portail", "node-exporter"):
        assert name in out
    assert "Traceback" not in out


def test_status_json_is_the_same_snapshot(run):
    result = run("status", "--json")
    assert result.exit_code == 0
    data = json.loads(result.output)
    assert data["summary"]["nodes"] == 6 and data["summary"]["managers"] == 2
    assert data["summary"]["quorum_tolerance"] == 0
    assert {v["name"] for v in data["vms"]} == {f"vm-0{i}" for i in range(1, 7)}
    assert all(t["id"] == f"task:{t['swarm_id']}" for t in data["tasks"])
    node_ids = {n["swarm_id"] for n in data["nodes"]}
    assert {t["node_id"] for t in data["tasks"] if t["desired_state"] == "running"} <= node_ids


def test_plan_changes_nothing_and_lists_steps(run):
    result = run("plan", "drain", "vm-03")
    assert result.exit_code == 0
    assert "set vm-03 availability to drain" in result.output
    assert "[ok] capacity" in result.output


def test_plan_for_an_unknown_node_exit_2(run):
    result = run("plan", "drain", "vm-99")
    assert result.exit_code == 2 and "no node named 'vm-99'" in result.output


def test_run_cordon_headless_with_yes(run, tmp_path):
    result = run("run", "cordon", "vm-05", "--yes")
    assert result.exit_code == 0, result.output
    assert "✔ set vm-05 availability to pause" in result.output
    journal = (tmp_path / "state/opsconsole/sim/journal.jsonl").read_text()
    assert '"event": "end"' in journal and '"state": "done"' in journal


def test_run_asks_to_type_the_name(run):
    result = run("run", "cordon", "vm-05", input="vm-04\n")
    assert result.exit_code == 3 and "not confirmed; nothing changed" in result.output


def test_read_only_refuses_run(run, monkeypatch):
    result = run("--read-only", "run", "cordon", "vm-05", "--yes")
    assert result.exit_code == 3 and "read-only mode" in result.output
    monkeypatch.setenv("OPSCONSOLE_READ_ONLY", "1")
    result = run("run", "activate", "vm-05", "--yes")
    assert result.exit_code == 3 and "read-only mode" in result.output


def test_bad_inventory_exit_2_with_file_and_line(run, tmp_path):
    bad = tmp_path / "site.toml"
    bad.write_text('[swarm]\nendpoints = ["unix:///x"]\nmanagers = 3\n')
    result = run("--inventory", str(bad), "status")
    assert result.exit_code == 2
    assert f"{bad}:3: swarm.managers: unknown key" in result.output
    assert "Traceback" not in result.output


def test_unreachable_swarm_exit_6_still_prints(run, tmp_path):
    inv = tmp_path / "site.toml"
    inv.write_text(f'[swarm]\nendpoints = ["unix://{tmp_path}/nope.sock"]\n')
    result = run("--inventory", str(inv), "status")
    assert result.exit_code == 6
    assert "socket does not exist" in result.output and "Traceback" not in result.output


def test_journal_lists_operations(run):
    assert run("run", "cordon", "vm-02", "--yes").exit_code == 0
    result = run("journal")
    assert result.exit_code == 0 and "cordon vm-02" in result.output


def test_rollback_and_resume_of_an_unfinished_operation(run, tmp_path):
    # a console died draining vm-03: its journal has a begin and no end
    journal = tmp_path / "state/opsconsole/sim/journal.jsonl"
    journal.parent.mkdir(parents=True)
    journal.write_text(json.dumps({"event": "begin", "op": "dead-1", "kind": "drain",
                                   "target": "vm-03", "params": {}, "steps": ["x"]}) + "\n")
    result = run("resume", "dead-2", "--yes")
    assert result.exit_code == 2 and "no unfinished operation 'dead-2'" in result.output
    assert "unfinished: dead-1" in result.output
    result = run("rollback", "dead-1", "--yes")
    assert result.exit_code == 0, result.output
    ends = [json.loads(line) for line in journal.read_text().splitlines()
            if '"event": "end"' in line]
    assert {"op": "dead-1", "state": "rolled back"}.items() <= \
        next(e for e in ends if e["op"] == "dead-1").items()
    listing = run("journal")
    assert listing.exit_code == 0, listing.output
    assert "UNFINISHED dead-1" not in listing.output and "dead-1  end  rolled back" in listing.output


def test_status_piped_keeps_whole_lines(run):
    result = run("status")           # CliRunner's output is no terminal, like a pipe
    header = next(line for line in result.output.splitlines() if "managers 2" in line)
    assert len(header) > 80 and "sessions" in header, header     # not wrapped at 80


def test_a_progress_line_says_what_is_waited_for_how_long_and_what_is_left():
    from types import SimpleNamespace

    from opsconsole.cli import progress_line
    from opsconsole.ops.engine import Waiting
    op = SimpleNamespace(waiting=Waiting("sessions to end", 42.0, 120.0, "3 session(s) left"))
    assert progress_line(op) == "  … waiting for sessions to end: 42s of 2m00s — 3 session(s) left"
    assert progress_line(SimpleNamespace(waiting=None)) == ""
