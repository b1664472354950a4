"""Commands on the VMs over SSH (asyncssh, native asyncio).

Connections use the operator's keys or agent and their OpenSSH config
(Host/HostName/User/Port/IdentityFile/UserKnownHostsFile). Host keys are
always verified: against keys pinned for the VM in the inventory, else
against known_hosts. An unknown host or a changed key is refused, never
learned, and a config that turns checking off (UserKnownHostsFile none) is
refused too.

A command string is the operator's (from the inventory) and runs as written
in the login shell. Anything the console itself puts into a command line
goes through `shell_command` (shlex quoting).
"""
from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import signal as signals
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import asyncssh

from .base import LINE_CAP, OUTPUT_CAP, CappedLines, LineSink, ProviderError

PGID_MARK = "opsconsole-pgid "      # first stdout line: the command's process group
CHUNK = 1 << 16                     # bytes read from a command's output at a time
BOOT_ID = "cat /proc/sys/kernel/random/boot_id"


def shell_command(*argv: str) -> str:
    """A POSIX shell command line that runs exactly `argv`."""
    return shlex.join(argv)


@dataclass(frozen=True)
class SSHTarget:
    """How to reach one VM; built by the caller from the inventory."""
    vm: str
    address: str = ""                   # "" means the VM name (the ssh config may map it)
    user: str = ""                      # "" means the ssh config's User, else the local user
    port: int = 0                       # 0 means the ssh config's Port, else 22
    host_keys: tuple[str, ...] = ()     # pinned keys ("ssh-ed25519 AAAA..."); () = known_hosts


class SSH:
    """The Shell interface over SSH.

    `config`, `known_hosts` and `client_keys` default to what OpenSSH would
    use (~/.ssh/config, its UserKnownHostsFile or ~/.ssh/known_hosts,
    ~/.ssh/id_* and the agent); pass paths to override, `config=None` to
    read no config file.
    """

    def __init__(self, targets: Iterable[SSHTarget], *, config: Sequence[str] | None | tuple = (),
                 known_hosts: Sequence[str] | tuple = (), client_keys: Sequence[str] | tuple = (),
                 agent_path: str | None | tuple = (), connect_timeout: float = 10.0,
                 poll: float = 0.1, line_cap: int = LINE_CAP,
                 output_cap: int = OUTPUT_CAP) -> None:
        self.targets = {t.vm: t for t in targets}
        # asyncssh reads a tuple as (trusted, CA, revoked) keys and a list as file names
        self.config, self.known_hosts = config, list(known_hosts) if known_hosts != () else ()
        self.client_keys, self.agent_path = client_keys, agent_path
        self.connect_timeout, self.poll = connect_timeout, poll
        self.line_cap, self.output_cap = line_cap, output_cap     # of a command's output
        # one connection per VM, reused by commands (a login costs a key exchange and sshd's
        # re-exec: ~0.25 s on the lab); reboot probes always log in afresh
        self._open: dict[str, asyncssh.SSHClientConnection] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    def _target(self, vm: str) -> SSHTarget:
        return self.targets.get(vm) or SSHTarget(vm)

    # -- connecting ---------------------------------------------------------------------
    async def _options(self, t: SSHTarget) -> asyncssh.SSHClientConnectionOptions:
        pinned = self._pinned(t)
        kwargs: dict = {"known_hosts": ([*pinned], [], []) if pinned else self.known_hosts,
                        "connect_timeout": self.connect_timeout,
                        "login_timeout": self.connect_timeout,
                        # a kept connection to a VM that vanished is noticed, not waited on
                        "keepalive_interval": 10, "keepalive_count_max": 3}
        for key, value in (("username", t.user), ("port", t.port)):
            if value:
                kwargs[key] = value
        if self.client_keys != ():
            kwargs["client_keys"] = list(self.client_keys)
        if self.agent_path != ():
            kwargs["agent_path"] = self.agent_path
        try:
            opts = await asyncssh.SSHClientConnectionOptions.construct(
                None, config=self.config, host=t.address or t.vm, **kwargs)
        except (OSError, ValueError, asyncssh.Error) as e:
            raise ProviderError(f"{t.vm}: ssh options: {e}") from None
        if opts.known_hosts is None:    # "UserKnownHostsFile none" in the ssh config
            raise ProviderError(f"{t.vm}: the ssh config disables host key checking "
                                "(UserKnownHostsFile none); the console refuses to connect so")
        return opts

    def _pinned(self, t: SSHTarget) -> list[asyncssh.SSHKey]:
        try:
            return [asyncssh.import_public_key(k) for k in t.host_keys]
        except (asyncssh.KeyImportError, ValueError) as e:
            raise ProviderError(f"{t.vm}: pinned host key unreadable: {e}") from None

    async def _connect(self, vm: str) -> asyncssh.SSHClientConnection:
        t = self._target(vm)
        opts = await self._options(t)
        try:
            return await asyncssh.connect(t.address or t.vm, options=opts, config=None)
        except asyncssh.HostKeyNotVerifiable:
            raise ProviderError(await self._host_key_problem(t, opts)) from None
        except asyncssh.PermissionDenied:
            raise ProviderError(f"{vm}: ssh login refused for user {opts.username!r} "
                                "(no key accepted)") from None
        except (TimeoutError, OSError, asyncssh.Error) as e:
            raise _Down(f"{vm}: no ssh connection to {_where(t, opts)}: {_words(e)}") from None

    async def _kept(self, vm: str, stale: asyncssh.SSHClientConnection | None = None):
        """The VM's kept connection; a new one if there is none or it is `stale`."""
        async with self._locks.setdefault(vm, asyncio.Lock()):
            conn = self._open.get(vm)
            if conn is None or conn is stale or conn.is_closed():
                if conn is not None:
                    conn.close()
                self._open[vm] = conn = await self._connect(vm)
            return conn

    async def _channel(self, vm: str, start):
        """`start(conn)` on the VM's kept connection; once more on a new one if that fails
        (the VM rebooted or vanished under the kept one)."""
        stale = None
        for attempt in (1, 2):
            conn = await self._kept(vm, stale)
            try:
                return conn, await asyncio.wait_for(start(conn), self.connect_timeout)
            except (TimeoutError, asyncssh.Error, OSError) as e:
                if attempt == 2:
                    self._forget(vm)
                    raise _Down(f"{vm}: ssh session refused: {_words(e)}") from None
                stale = conn

    def _forget(self, vm: str) -> asyncssh.SSHClientConnection | None:
        conn = self._open.pop(vm, None)
        if conn is not None:
            conn.close()
        return conn

    async def _host_key_problem(self, t: SSHTarget, opts) -> str:
        """Unknown host or changed key, with the key it offered, for a person to check."""
        host, port = opts.host, opts.port
        offered = ""
        try:
            key = await asyncio.wait_for(asyncssh.get_server_host_key(
                host, port, config=None), self.connect_timeout)
            offered = f" It offered {key.get_algorithm()} {key.get_fingerprint()}." if key else ""
        except (TimeoutError, OSError, asyncssh.Error):
            pass
        if t.host_keys:
            return (f"{t.vm}: host key of {host}:{port} does not match the key pinned in the "
                    f"inventory; refusing to connect.{offered}")
        listed = False
        known = opts.known_hosts
        paths = [known] if isinstance(known, str) else known if isinstance(known, list) else None
        if paths == []:                 # asyncssh's default, as OpenSSH's
            paths = ["~/.ssh/known_hosts"]
        if paths and all(isinstance(p, str) for p in paths):
            # a few stat calls, only to explain a refused host key
            files = [f for f in (os.path.expanduser(p) for p in paths)  # noqa: ASYNC240
                     if os.access(f, os.R_OK)]
            try:
                found = asyncssh.read_known_hosts(files).match(host, host, port) if files else ()
                listed = bool(found and (found[0] or found[1]))
            except (OSError, ValueError, asyncssh.Error):
                pass
        if listed:
            return (f"{t.vm}: host key of {host}:{port} has CHANGED from the one in known_hosts "
                    f"(a reinstalled VM, or someone in between); refusing to connect.{offered}")
        return (f"{t.vm}: host {host}:{port} is unknown (not in known_hosts, no key pinned); "
                f"refusing to connect. Check its fingerprint, then add it.{offered}")

    # -- running ------------------------------------------------------------------------
    async def run(self, vm: str, command: str, timeout: float,
                  on_line: LineSink | None = None) -> int:
        """Run the operator's command; stream its lines; its exit status.

        Past `timeout` the command's whole process group is killed and a
        ProviderError says so. The login shell must be POSIX (it prints $$).
        """
        # The shell sshd starts leads its own process group: $$ names it.
        conn, proc = await self._channel(vm, lambda c: c.create_process(
            f"echo {PGID_MARK}$$\n{command}", encoding=None))
        pgid: list[str] = []

        def emit(stream, line: str) -> None:
            if stream is proc.stdout and not pgid and line.startswith(PGID_MARK):
                pgid.append(line[len(PGID_MARK):].strip())
            elif on_line:
                on_line(line)
        # read in chunks, never a whole line: a line may have no end (capped per line
        # and per command; the rest is counted, and said, not kept)
        lines = CappedLines(emit, self.line_cap, self.output_cap)

        async def pump(stream) -> None:
            while chunk := await stream.read(CHUNK):    # b"" only at the end
                lines.feed(stream, chunk)
        try:
            await asyncio.wait_for(asyncio.gather(pump(proc.stdout), pump(proc.stderr),
                                                  proc.wait()), timeout)
            lines.close()
        except TimeoutError:
            lines.close()
            killed = await self._kill(conn, pgid[0] if pgid else "")
            proc.close()
            raise ProviderError(f"{vm}: `{command}` timed out after {timeout:g} s; "
                                + ("killed it" if killed else "could not kill it")) from None
        except (asyncssh.Error, OSError) as e:
            raise ProviderError(f"{vm}: connection lost during `{command}`: "
                                f"{_words(e)}") from None
        if proc.exit_status is not None and proc.exit_status >= 0:
            return proc.exit_status
        sig = (proc.exit_signal or ("",))[0]
        try:
            return 128 + signals.Signals["SIG" + sig].value
        except KeyError:
            return 255

    async def _kill(self, conn: asyncssh.SSHClientConnection, pgid: str) -> bool:
        """TERM, then KILL, the command's process group, over a second channel."""
        if not pgid.isdigit():
            return False
        group = shlex.quote("-" + pgid)
        script = (f"kill -TERM -- {group} 2>/dev/null; sleep 1; kill -KILL -- {group} "
                  "2>/dev/null; true")
        try:
            await asyncio.wait_for(conn.run(script, check=False), 10)
            return True
        except (TimeoutError, asyncssh.Error, OSError):
            return False

    # -- reboots ------------------------------------------------------------------------
    async def boot_id(self, vm: str) -> str:
        """The VM's kernel boot id: changes with every boot."""
        _, result = await self._channel(vm, lambda c: c.run(BOOT_ID, check=False,
                                                            errors="replace"))
        return str(result.stdout or "").strip()[:64]

    async def _probe(self, vm: str) -> str | None:
        """The boot id when the VM answers (a login of its own), None while it does not
        (nor while it answers without one: a VM on its way down or up)."""
        try:
            async with await self._connect(vm) as conn:
                result = await asyncio.wait_for(conn.run(BOOT_ID, check=False,
                                                         errors="replace"),
                                                self.connect_timeout)
            return str(result.stdout or "").strip()[:64] or None
        except _Down:
            return None
        except (TimeoutError, asyncssh.Error, OSError):   # went away mid-login
            return None

    async def wait_reboot(self, vm: str, down_timeout: float, up_timeout: float,
                          boot_id: str = "") -> str:
        """Wait for the VM to go away, then to answer SSH again; its new boot id.

        With `boot_id` (read before the reboot), an answer with another boot id
        is the end, whether or not a probe saw the VM gone. Probes come every
        `poll` seconds and are cheap while the VM is down (a refused or
        unreachable port), so the return is noticed within `poll`. Host key and
        login problems are raised at once: they do not mean "still down".
        """
        self._forget(vm)                    # the kept connection goes down with the VM
        loop = asyncio.get_running_loop()
        down_at: float | None = None
        deadline = loop.time() + down_timeout
        while True:
            now_id = await self._probe(vm)
            if now_id is None:
                if down_at is None:
                    down_at = loop.time()
                    deadline = down_at + up_timeout
            elif (boot_id and now_id != boot_id) or down_at is not None:
                return now_id
            if loop.time() >= deadline:
                if down_at is None:
                    raise ProviderError(f"{vm}: still answering after {down_timeout:g} s; "
                                        "it did not go down")
                raise ProviderError(f"{vm}: no SSH answer {up_timeout:g} s after it went down")
            await asyncio.sleep(min(self.poll, max(0.0, deadline - loop.time())))

    async def close(self) -> None:
        """Close the kept connections."""
        for conn in [c for vm in list(self._open) if (c := self._forget(vm)) is not None]:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(conn.wait_closed(), 2)


class _Down(ProviderError):
    """No connection at all (refused, unreachable, timed out)."""


def _where(t: SSHTarget, opts) -> str:
    return f"{opts.username}@{opts.host}:{opts.port}" if getattr(opts, "host", "") else t.vm


def _words(e: BaseException) -> str:
    if isinstance(e, ConnectionRefusedError):
        return "connection refused"
    if isinstance(e, asyncio.TimeoutError):
        return "timed out"
    return str(e) or type(e).__name__
