"""Logs from hostile remotes: escape sequences never reach the terminal, long lines are
cut, a frame header's claimed size never makes one read that big; the docker provider's
stream (against a fake API), the sim's, and the CLI."""
from __future__ import annotations

import io

import pytest
from click.testing import CliRunner

from opsconsole import cli
from opsconsole.providers.base import LINE_CAP, OUTPUT_CAP, printable
from opsconsole.providers.sim import SimCluster
from opsconsole.providers.swarm import READ_CHUNK, DockerSwarm, demuxed, log_line


@pytest.mark.parametrize(("raw", "shown"), [
    ("plain line", "plain line"),
    ("\x1b[31mred\x1b[0m", "red"),
    ("\x1b]0;owned title\x07after", "after"),
    ("\x1b]52;c;cm0gLXJmIC8=\x1b\\clipboard", "clipboard"),          # OSC 52: the clipboard
    ("\x1b]8;;http://evil\x1b\\link\x1b]8;;\x1b\\", "link"),          # a hyperlink
    ("\x1bPq#0;2;0;0;0\x1b\\sixel", "sixel"),                       # DCS
    ("\x1bcreset", "reset"),
    ("c1 \x9b2J csi", "c1  csi"),
    ("nul\x00 bell\x07 del\x7f", "nul\\x00 bell\\x07 del\\x7f"),
    ("cr\roverwrite", "cr\\x0doverwrite"),
    ("\u202egnp.exe", "\\u202egnp.exe"),                            # bidi override
    ("tab\there", "tab    here"),
    ("unicode é 🙂 ok", "unicode é 🙂 ok"),
])
def test_printable_removes_what_a_terminal_would_obey(raw, shown):
    assert printable(raw) == shown


def frame(data: bytes, stream: int = 1, claimed: int | None = None) -> bytes:
    size = len(data) if claimed is None else claimed
    return bytes([stream, 0, 0, 0]) + size.to_bytes(4, "big") + data


class Raw(io.BytesIO):
    """A response body that records how much each read asked for."""

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.asked: list[int] = []

    def read(self, n: int = -1) -> bytes:
        self.asked.append(n)
        return super().read(n)


def test_demux_reads_at_most_a_chunk_whatever_the_header_claims():
    raw = Raw(frame(b"a\n") + frame(b"b" * 10, claimed=0xFFFFFFFF))   # lies: 4 GiB
    assert b"".join(demuxed(raw)) == b"a\n" + b"b" * 10
    assert max(raw.asked) <= READ_CHUNK


def test_swarm_detail_becomes_the_short_task_id():
    line = ("2026-01-01T00:00:00.1Z com.docker.swarm.node.id=n1,com.docker.swarm.service.id="
            "s1,com.docker.swarm.task.id=abcdef0123456789 GET / 200")
    assert log_line(line) == "2026-01-01T00:00:00.1Z [abcdef012345] GET / 200"
    assert log_line("2026-01-01T00:00:00.1Z plain message") == \
        "2026-01-01T00:00:00.1Z plain message"


class FakeAPI:
    def __init__(self, body: bytes, tty: bool = False) -> None:
        self.body, self.tty = body, tty
        self.asked: dict = {}
        self.closed = False

    def inspect_service(self, sid):
        return {"Spec": {"TaskTemplate": {"ContainerSpec": {"TTY": self.tty}}}}

    def inspect_task(self, tid):
        return {"Spec": {"ContainerSpec": {"TTY": self.tty}}}

    def _url(self, path, *args):
        return path.format(*args)

    def _get(self, url, params, stream, timeout):
        self.asked = {"url": url, "params": params, "timeout": timeout}
        api = self

        class Response:
            raw = Raw(api.body)

            def close(self) -> None:
                api.closed = True
        return Response()

    def _raise_for_status(self, res) -> None:
        pass


async def read_all(api: FakeAPI, kind="service", follow=False) -> list[str]:
    swarm = DockerSwarm(endpoints=("tcp://127.0.0.1:9",))
    swarm._call = lambda fn, write=False: fn(api)
    return [line async for line in swarm.logs(kind, "s1", tail=50, follow=follow)]


async def test_docker_logs_hostile_lines_are_cleaned_and_cut():
    stamp = b"2026-01-01T00:00:00.000000001Z "
    body = (frame(stamp + b"com.docker.swarm.task.id=t123456789abcdef \x1b]52;c;eA==\x07"
                  b"\x1b[2Jhello\n")
            + frame(stamp + b"x" * (3 * LINE_CAP))          # one long line, in two frames
            + frame(b"y" * 100 + b"\n", stream=2) + frame(b"no newline at the end"))
    api = FakeAPI(body)
    lines = await read_all(api)
    assert lines[0] == "2026-01-01T00:00:00.000000001Z [t123456789ab] hello"
    assert len(lines[1]) < LINE_CAP + 100 and lines[1].endswith("bytes cut")
    assert lines[2:] == ["no newline at the end"]          # the last, unfinished line too
    assert api.asked["params"] == {"stdout": 1, "stderr": 1, "timestamps": 1, "details": 1,
                                   "follow": 0, "tail": "50"}
    assert api.asked["url"] == "/services/s1/logs" and api.closed


async def test_docker_logs_of_a_task_following_has_no_read_timeout():
    api = FakeAPI(b"plain tty output\n", tty=True)
    assert await read_all(api, kind="task", follow=True) == ["plain tty output"]
    assert api.asked["url"] == "/tasks/s1/logs" and api.asked["timeout"][1] is None
    assert api.asked["params"]["details"] == 0


async def test_docker_logs_without_follow_stop_at_the_output_cap():
    body = b"".join(frame(b"z" * 1000 + b"\n") for _ in range(OUTPUT_CAP // 1000 + 50))
    lines = await read_all(FakeAPI(body))
    assert sum(len(line) + 1 for line in lines) < OUTPUT_CAP + 2000
    assert "the rest is not shown" in lines[-2] and lines[-1].endswith("bytes cut")


async def test_sim_logs_tail_and_unknown_ids():
    sim = SimCluster(seed=2)
    swarm = sim.providers().swarm
    api = next(s for s in sim.services.values() if s.name == "api")
    lines = [line async for line in swarm.logs("service", api.swarm_id, tail=7)]
    assert len(lines) == 7 and all(" api." in line for line in lines)
    from opsconsole.providers.base import ProviderError
    with pytest.raises(ProviderError, match="task nope not found"):
        [line async for line in swarm.logs("task", "nope")]


def test_cli_logs_names_what_it_cannot_find(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    runner = CliRunner()
    out = runner.invoke(cli.main, ["logs", "api", "--tail", "3"])
    assert out.exit_code == 0, out.output
    assert len(out.output.splitlines()) == 3 and " api." in out.output
    out = runner.invoke(cli.main, ["logs", "nope"])
    assert out.exit_code == 2 and "no service or task named 'nope'" in out.output
    assert "Traceback" not in out.output


def test_inspected_json_escapes_what_a_remote_wrote():
    from opsconsole.ui.inspect import pretty
    text = pretty({"Labels": {"evil": "\x1b]52;c;eA==\x07\x1b[2J\u202e"}})
    assert "\x1b" not in text and "\x07" not in text and "\\u001b" in text
    assert pretty({"big": "x" * (OUTPUT_CAP + 10)}).endswith("bytes cut")


async def test_docker_inspect_refuses_an_answer_that_is_no_object():
    swarm = DockerSwarm(endpoints=("tcp://127.0.0.1:9",))

    class API:
        def inspect_task(self, tid):
            return ["not", "an", "object"]
    swarm._call = lambda fn, write=False: fn(API())
    from opsconsole.providers.base import ProviderError
    with pytest.raises(ProviderError, match="the answer is not an object"):
        await swarm.inspect("task", "t1")
