"""Output caps: what a remote system sends is never held whole past its cap, and a
person is told how much was cut."""
from __future__ import annotations

import asyncio
import json
import tracemalloc

from opsconsole.providers import powershell as ps
from opsconsole.providers.base import Capped, CappedLines, read_capped
from opsconsole.providers.haproxy import HAProxy
from opsconsole.providers.powershell import remote
from opsconsole.providers.ssh import SSH

MiB = 1 << 20


def test_capped_keeps_head_and_tail_and_counts_the_middle():
    c = Capped(10, tail=True)
    for chunk in (b"abcdef", b"0123456789" * 3, b"XYZ"):
        c.add(chunk)
    assert c.cut == 6 + 30 + 3 - 10
    assert c.value() == "abcde\n… 29 bytes cut\n89XYZ".encode()
    head_only = Capped(4)
    head_only.add(b"abcdefgh")
    assert head_only.value() == "abcd\n… 4 bytes cut\n".encode() and head_only.cut == 4
    small = Capped(100, tail=True)
    small.add(b"all of it")
    assert small.value() == b"all of it" and small.cut == 0


def test_capped_lines_cut_long_lines_and_the_total():
    got: list[tuple[object, str]] = []
    lines = CappedLines(lambda s, line: got.append((s, line)), line_cap=5, total_cap=12)
    lines.feed("out", b"abc\r\nabcdefgh")
    lines.feed("err", b"e1\n")
    lines.feed("out", b"ij\nzz\n")
    lines.feed("out", b"after the cap\nmore\n")
    lines.close()
    assert got == [("out", "abc"), ("err", "e1"), ("out", "abcde … 5 bytes cut"),
                   ("out", "… more than 12 bytes of output: the rest is not shown"),
                   (None, "… 22 bytes cut")]       # zz, after the cap, more: with newlines


def test_capped_lines_flush_an_unfinished_last_line_once():
    got: list[str] = []
    lines = CappedLines(lambda s, line: got.append(line))
    lines.feed(1, "é".encode()[:1] + b"\nlast")     # a broken character is replaced, not raised
    lines.close()
    lines.close()
    assert got == ["\ufffd", "last"]


class _Stream:
    """Reads like asyncssh's SSHReader in binary mode, from a list of chunk counts."""

    def __init__(self, parts: list[tuple[bytes, int]]) -> None:
        self.parts = parts

    async def read(self, n: int) -> bytes:
        while self.parts:
            chunk, times = self.parts[0]
            if times:
                self.parts[0] = (chunk, times - 1)
                return chunk
            self.parts.pop(0)
        return b""


class _Proc:
    def __init__(self, out, err) -> None:
        self.stdout, self.stderr = _Stream(out), _Stream(err)
        self.exit_status, self.exit_signal = 0, None

    async def wait(self) -> None:
        return None

    def close(self) -> None:
        pass


def ssh_with(proc: _Proc, **kw) -> SSH:
    ssh = SSH([], **kw)

    async def channel(vm, start):
        return object(), proc
    ssh._channel = channel      # type: ignore[method-assign]
    return ssh


def test_a_200_mib_line_without_newline_is_never_held_whole():
    block = b"x" * (1 << 16)
    proc = _Proc([(b"opsconsole-pgid 4242\n", 1), (block, 200 * 16), (b"\nshort\n", 1)],
                 [(b"warn\n", 1)])
    seen: list[str] = []
    tracemalloc.start()
    try:
        code = asyncio.run(ssh_with(proc).run("vm-01", "cat /dev/zero", 60, seen.append))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert code == 0
    assert peak < 4 * MiB, f"held {peak} bytes"
    long = next(line for line in seen if line.startswith("x"))
    assert long == "x" * (64 * 1024) + f" … {200 * MiB - 64 * 1024} bytes cut"
    assert "short" in seen and "warn" in seen
    assert not any("opsconsole-pgid" in line for line in seen)    # the marker is not output


def test_a_command_streams_at_most_its_output_cap():
    proc = _Proc([(b"line of output\n", 10_000)], [])
    seen: list[str] = []
    asyncio.run(ssh_with(proc, output_cap=1000).run("vm-01", "yes", 60, seen.append))
    shown = [line for line in seen if line == "line of output"]
    assert len(shown) == 1000 // 15
    assert seen[len(shown)] == "… more than 1000 bytes of output: the rest is not shown"
    assert seen[-1] == f"… {(10_000 - len(shown)) * 15} bytes cut"


def test_winrm_output_keeps_the_answer_at_its_end():
    noise = b"WARNING: chatty profile\r\n" * 1000
    answer = json.dumps({"state": "Running"}).encode() + b"\r\n"
    replies = [(noise, b"E" * 1000, 0, False)] * 200 + [(answer, b"", 0, True)]

    class Protocol:
        def get_command_output_raw(self, shell, command):
            return replies.pop(0)
    code, out, err = remote._receive(Protocol(), "shell", "cmd", 60, cap=64 * 1024)
    assert len(out.value()) < 64 * 1024 + 100 and out.cut == len(noise) * 200 + len(answer) \
        - 64 * 1024
    assert b" bytes cut\n" in out.value()
    assert ps.parse_answer("hv-01", "get-vm", code, out.value(), err.value()) == \
        {"state": "Running"}
    assert len(err.value()) < 64 * 1024 + 100 and err.cut == 200 * 1000 - 64 * 1024


def test_haproxy_answers_are_read_up_to_the_cap():
    async def run():
        reader = asyncio.StreamReader()
        reader.feed_data(b"a" * 100)
        reader.feed_eof()
        assert await read_capped(reader, 1000) == (b"a" * 100, False)
        reader = asyncio.StreamReader()
        reader.feed_data(b"b" * 5000)          # no EOF: the rest is never waited for
        assert await asyncio.wait_for(read_capped(reader, 1000), 1) == (b"b" * 1000, True)
    asyncio.run(run())


def test_a_haproxy_answer_past_the_cap_is_cut_at_a_line_and_said(tmp_path):
    state = b"1\n# be_id be_name srv_id srv_name srv_admin_state\n" + \
        b"".join(b"3 portail %d vm-%02d 0\n" % (i, i) for i in range(1, 400))

    async def run():
        async def serve(reader, writer):
            cmd = (await reader.readline()).decode().strip()
            writer.write(ANSWERS.get(cmd, state if cmd == "show servers state" else b""))
            await writer.drain()
            writer.close()
        path = str(tmp_path / "h.sock")
        server = await asyncio.start_unix_server(serve, path)
        async with server:
            h = HAProxy(f"unix://{path}", timeout=5, answer_cap=2000)
            _, servers, _ = await h.read()
            return h, servers
    h, servers = asyncio.run(run())
    assert h.parse_problems == [
        "`show servers state`: answer longer than 2000 bytes; the rest was not read"]
    assert [(s.name, s.admin) for s in servers] == [("vm-01", "ready")]


ANSWERS = {
    "show info": b"Name: HAProxy\nPid: 10\nUptime_sec: 5\n",
    "show stat": b"# pxname,svname,scur,stot,status,weight,\nportail,BACKEND,0,0,UP,1,\n"
                 b"portail,vm-01,0,0,UP,1,\n",
    "show sess": b"",
    "show table": b"",
}
