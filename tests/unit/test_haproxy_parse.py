"""HAProxy runtime API answers, captured from a real HAProxy 2.6, and broken ones."""
from __future__ import annotations

from pathlib import Path

import pytest

from opsconsole.providers.base import ProviderError
from opsconsole.providers.haproxy import (
    _seconds,
    parse_servers_state,
    parse_sess,
    parse_stat,
    parse_table,
    parse_tables,
)

DATA = Path(__file__).parent / "data" / "haproxy"


def text(name: str) -> str:
    return (DATA / name).read_text()


def test_show_stat_servers_and_backends():
    backends, servers = parse_stat(text("show_stat.txt"))
    assert [b.name for b in backends] == ["portail"]
    by_name = {s.name: s for s in servers}
    assert set(by_name) == {"vm-01", "vm-02"}
    assert by_name["vm-01"].cur_sessions == 2 and by_name["vm-02"].cur_sessions == 3
    assert by_name["vm-01"].status == "UP" and by_name["vm-01"].weight == 1
    assert by_name["vm-02"].address == "127.0.0.1:18082"
    assert by_name["vm-01"].check_status == "L7OK"
    assert all(s.backend == "portail" for s in servers)


def test_show_servers_state_admin_bits():
    admin = parse_servers_state(text("show_servers_state.txt"))
    assert admin == {("portail", "vm-01"): "maint", ("portail", "vm-02"): "drain"}


def test_show_sess_keeps_only_streams_bound_to_a_server():
    sessions = parse_sess(text("show_sess.txt"), now=1000.0)
    # the CLI's own stream is not a session; the rest agree with show stat's scur (2 + 3)
    assert sorted(s.server for s in sessions) == ["vm-01", "vm-01", "vm-02", "vm-02", "vm-02"]
    assert all(s.backend == "portail" and s.client.startswith("127.0.0.1:") for s in sessions)
    assert all(s.started_at == 999.0 for s in sessions)    # age=1s


def test_stick_table_entries_are_sessions_with_hashed_keys():
    assert parse_tables("# table: portail, type: string, size:10240, used:5\n\n") == ["portail"]
    sessions = parse_table(text("show_table_portail.txt"), "portail", now=5.0)
    assert len(sessions) == 5
    assert sorted(s.server for s in sessions) == ["vm-01", "vm-01", "vm-02", "vm-02", "vm-02"]
    for s in sessions:    # the cookie value (user0...) never shows
        assert "user" not in s.session_id and "user" not in s.client
    assert len({s.session_id for s in sessions}) == 5


@pytest.mark.parametrize("age, seconds", [("0s", 0), ("12s", 12), ("3m4s", 184),
                                          ("1h2m", 3720), ("2d3h", 183600)])
def test_ages(age, seconds):
    assert _seconds(age) == seconds


@pytest.mark.parametrize("answer, words", [
    ("", "unexpected answer"),
    ("Unknown command.\n", "unexpected answer"),
    ("# pxname,svname\nportail,vm-01\n", "header lacks"),
])
def test_broken_show_stat(answer, words):
    with pytest.raises(ProviderError, match=words):
        parse_stat(answer)


def test_truncated_show_stat_names_the_line():
    lines = text("show_stat.txt").splitlines()
    cut = "\n".join(lines[:3] + [lines[3][:40]])
    with pytest.raises(ProviderError, match="truncated answer at line 4"):
        parse_stat(cut)


def test_bad_number_in_show_stat():
    lines = text("show_stat.txt").splitlines()
    row = lines[2].split(",")
    row[4] = "many"                                # scur
    with pytest.raises(ProviderError, match="bad number at line 3"):
        parse_stat("\n".join([lines[0], lines[1], ",".join(row)]))


@pytest.mark.parametrize("answer, words", [
    ("Permission denied\n", "unknown format"),
    ("1\n", "header missing"),
    ("1\n# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state\n3 portail 1\n",
     "truncated answer at line 3"),
    ("1\n# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state\n"
     "3 portail 1 vm-01 127.0.0.1 2 x\n", "bad admin state"),
])
def test_broken_servers_state(answer, words):
    with pytest.raises(ProviderError, match=words):
        parse_servers_state(answer)


def test_broken_table_answer():
    with pytest.raises(ProviderError, match="show table portail"):
        parse_table("No such table\n", "portail", 0.0)
