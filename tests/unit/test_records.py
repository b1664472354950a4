"""Journal and audit files: private whatever the umask, damaged lines skipped and counted,
appending after them; a state dir that cannot be used is one clear error, exit code 2."""
from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from opsconsole.cli import main
from opsconsole.config import ConfigError, Inventory
from opsconsole.ops.records import Audit, Journal, JsonLines, private_dir, write_private
from opsconsole.providers.sim import SimCluster
from opsconsole.session import open_session


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def umask_000():
    old = os.umask(0)
    yield
    os.umask(old)


def test_state_dir_0700_and_records_0600_whatever_the_umask(tmp_path, umask_000):
    session = open_session(Inventory(state_dir=tmp_path / "xdg" / "opsconsole"),
                           providers=SimCluster(seed=3).providers())
    state = session.journal.path.parent
    assert state == tmp_path / "xdg" / "opsconsole" / "sim"
    for folder in (tmp_path / "xdg", state.parent, state):
        assert mode(folder) == 0o700, folder
    session.journal.append({"event": "note"})
    session.engine.actions.audit.record("test", "vm-01", "ok")
    assert mode(state / "journal.jsonl") == 0o600 and mode(state / "audit.jsonl") == 0o600
    # the reports' helper: 0600 in a 0700 folder, whole or not at all
    report = state / "reports" / "maintenance-hv-01.md"
    write_private(report, "# report\n")
    assert report.read_text() == "# report\n"
    assert mode(report) == 0o600 and mode(report.parent) == 0o700
    write_private(report, "# again\n")
    assert report.read_text() == "# again\n" and os.listdir(report.parent) == [report.name]


def test_records_left_readable_by_an_older_version_are_made_private(tmp_path, umask_000):
    path = tmp_path / "state" / "journal.jsonl"
    path.parent.mkdir(mode=0o755)
    path.write_text('{"event": "begin"}\n')
    path.chmod(0o666)
    Journal(path).check()
    assert mode(path) == 0o600 and mode(path.parent) == 0o700
    path.chmod(0o644)
    Journal(path).append({"event": "end"})
    assert mode(path) == 0o600
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    assert private_dir(shared) == shared and mode(shared) == 0o755   # not ours to change


DAMAGED = [b'{"event": "begin", "op": "a"}', b"\xff\xfe not utf-8 \xc3", b"[1]", b"null", b'"x"',
           b"42", b"{not json", b"", b"   ", b"[" * 100000 + b"]" * 100000,
           b'{"event": "end", "op": "a"}', b'{"event": "beg']   # torn last line: no newline


def test_damaged_lines_are_skipped_counted_and_appended_after(tmp_path):
    path = tmp_path / "journal.jsonl"
    path.write_bytes(b"\n".join(DAMAGED))
    records = JsonLines(path)
    assert list(records.read()) == [{"event": "begin", "op": "a"}, {"event": "end", "op": "a"}]
    assert records.skipped == 8
    assert records.skipped_note() == f"8 damaged lines skipped in {path}"
    records.append({"event": "begin", "op": "b"})   # the torn line does not swallow it
    assert [r["op"] for r in records.read()] == ["a", "a", "b"] and records.skipped == 8
    path.write_bytes(b'{"a": 1}\n[2]\n')
    assert list(records.read()) == [{"a": 1}] and records.skipped_note() == \
        f"1 damaged line skipped in {path}"
    path.write_bytes(b'{"a": 1}\n')
    assert list(records.read()) == [{"a": 1}] and records.skipped == 0
    assert records.skipped_note() == ""
    assert list(JsonLines(tmp_path / "none.jsonl").read()) == []


def test_audit_reads_like_any_records(tmp_path):
    audit = Audit(tmp_path / "audit.jsonl")
    audit.path.write_bytes(b'"x"\n{"time": "notanumber"}\n')
    audit.record("set availability", "vm-02", "ok")
    got = list(audit.read())
    assert got[0] == {"time": "notanumber"} and got[1]["target"] == "vm-02"
    assert audit.skipped == 1


def test_each_simulated_world_keeps_its_own_records(tmp_path):
    def state(**kw):
        inv = Inventory(state_dir=tmp_path)
        return open_session(inv, **kw).journal.path.parent.name
    assert state() == "sim"
    assert state(seed=7) == "sim-seed7-scale0"
    assert state(scale=8) == "sim-seed1-scale8"
    # a test's own simulated cluster: the plain sim folder
    assert state(seed=7, providers=SimCluster(seed=7).providers()) == "sim"


@pytest.mark.parametrize("how", ["file in the way", "file in the way of a parent",
                                 "read-only file system", "journal is a folder"])
def test_state_dir_that_cannot_be_used_is_one_clear_error(tmp_path, how):
    blocker = tmp_path / "blocker"
    blocker.write_text("not a folder")
    state, named = {
        "file in the way": (blocker, blocker),
        "file in the way of a parent": (blocker / "state", blocker),
        "read-only file system": (Path("/proc/1/opsconsole-state"), "/proc/1/opsconsole-state"),
        "journal is a folder": (tmp_path / "state", tmp_path / "state" / "sim" / "journal.jsonl"),
    }[how]
    if how == "journal is a folder":
        (tmp_path / "state/sim/journal.jsonl").mkdir(parents=True)
    with pytest.raises(ConfigError) as err:
        open_session(Inventory(state_dir=state))
    message = str(err.value)
    assert message.startswith("cannot use the state dir ") and str(named) in message, message
    assert "\n" not in message


def test_the_cli_says_so_and_exits_2(tmp_path, monkeypatch):
    (tmp_path / "xdg").write_text("a file where the state dir's parent should be")
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("OPSCONSOLE_INVENTORY", raising=False)
    result = CliRunner().invoke(main, ["status"])
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit)
    assert result.output.startswith(f"opsconsole: cannot use the state dir {tmp_path}/xdg/")
    assert "a file is in the way" in result.output and "Traceback" not in result.output


def test_a_real_process_on_a_read_only_state_dir(tmp_path):
    inventory = tmp_path / "site.toml"
    inventory.write_text('[console]\nstate_dir = "/proc/1/opsconsole"\n'
                         '[swarm]\nendpoints = ["unix:///nope.sock"]\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPSCONSOLE_")}
    done = subprocess.run([sys.executable, "-m", "opsconsole", "-i", str(inventory), "journal"],
                          capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 2, (done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        "opsconsole: cannot use the state dir /proc/1/opsconsole: "), done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    json.dumps(lines)   # one plain line
