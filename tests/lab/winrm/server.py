"""The WS-Management shell protocol, as pywinrm speaks it (winrm/protocol.py).

One POST /wsman per operation, SOAP 1.2 envelopes, Basic auth:
  Create  (transfer/Create)  -> ResourceCreated with <w:Selector Name="ShellId">
  Command (shell/Command)    -> <rsp:CommandId>; the command starts running
  Receive (shell/Receive)    -> base64 <rsp:Stream Name="stdout|stderr"> and
            <rsp:CommandState State=".../Done"><rsp:ExitCode>; while the command
            still runs after OperationTimeout: fault 2150858793 (pywinrm retries)
  Signal  (shell/Signal)     -> SignalResponse (terminate: recorded)
  Delete  (transfer/Delete)  -> DeleteResponse
Every answer echoes the request's MessageID in RelatesTo; errors are SOAP
faults with HTTP 500; bad credentials get 401.

Knobs for tests: `delay_s` (answer late: provokes read timeouts),
`inject_fault(action, ...)` (the next such request fails), `restart_down_s`
(how long a restarted host refuses connections).
"""
from __future__ import annotations

import base64
import json
import re
import socket
import threading
import time
import uuid
import xml.etree.ElementTree as ET
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from xml.sax.saxutils import escape

from opsconsole.providers import powershell as ps

from .psparse import ParseError, parse_assignments, parse_command_line
from .world import WorldError

NS = {"s": "http://www.w3.org/2003/05/soap-envelope",
      "a": "http://schemas.xmlsoap.org/ws/2004/08/addressing",
      "w": "http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd",
      "rsp": "http://schemas.microsoft.com/wbem/wsman/1/windows/shell"}
TRANSFER = "http://schemas.xmlsoap.org/ws/2004/09/transfer/"
SHELL = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/"
CMD_URI = SHELL + "cmd"
ACTIONS = {TRANSFER + "Create": "Create", SHELL + "Command": "Command",
           SHELL + "Receive": "Receive", SHELL + "Signal": "Signal",
           TRANSFER + "Delete": "Delete"}
DONE = SHELL + "CommandState/Done"
TIMED_OUT = ("w:TimedOut", 2150858793,
             "The WS-Management service cannot complete the operation within the time "
             "specified in OperationTimeout.")
SHELL_NOT_FOUND = 2150858843
CMD_LIMIT = 8191


class Fault(Exception):
    def __init__(self, subcode: str, code: int, reason: str) -> None:
        super().__init__(reason)
        self.subcode, self.code, self.reason = subcode, code, reason


class _Command:
    def __init__(self, line: str) -> None:
        self.id = str(uuid.uuid4()).upper()
        self.line = line
        self.done = threading.Event()
        self.code, self.stdout, self.stderr = -1, b"", b""
        self.delivered = False


def clixml_error(text: str) -> bytes:
    """stderr as powershell.exe writes it when its output is redirected."""
    body = escape(text).replace("\n", "_x000D__x000A_")
    return ("#< CLIXML\r\n<Objs Version=\"1.1.0.1\" xmlns=\"http://schemas.microsoft.com/"
            f"powershell/2004/04\"><S S=\"Error\">{body}_x000D__x000A_</S></Objs>").encode()


class WinRMEmulator:
    def __init__(self, world, username: str = "lab-admin", password: str = "lab-pass",
                 restart_delay_s: float = 0.3, restart_down_s: float = 2.0) -> None:
        self.world, self.username, self.password = world, username, password
        self.restart_delay_s, self.restart_down_s = restart_delay_s, restart_down_s
        self.delay_s = 0.0
        self.port = 0
        self.shells: dict[str, dict[str, _Command]] = {}
        self.requests: list[str] = []           # actions, in order
        self.scripts: list[tuple[str, dict[str, str]]] = []   # (script, params) received
        self.signals: list[tuple[str, str]] = []  # (command id, signal code)
        self.restarts = 0
        self._faults: dict[str, Fault] = {}
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._conns: set[socket.socket] = set()
        self._stopped = threading.Event()

    # -- lifecycle ----------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/wsman"

    def start(self) -> WinRMEmulator:
        server = ThreadingHTTPServer(("127.0.0.1", self.port), _Handler)
        server.daemon_threads = True
        server.emulator = self          # type: ignore[attr-defined]
        self.port = server.server_address[1]
        self._server = server
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                         daemon=True).start()
        return self

    def _go_down(self) -> None:
        """Refuse connections: close the listener and every open connection."""
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        with self._lock:
            conns, self._conns = list(self._conns), set()
            self.shells.clear()
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def stop(self) -> None:
        self._stopped.set()
        self._go_down()

    def __enter__(self) -> WinRMEmulator:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def inject_fault(self, action: str, subcode: str = "w:QuotaLimit", code: int = 2150859174,
                     reason: str = "The WS-Management service cannot process the request. "
                                   "This user is allowed a maximum number of 5 concurrent "
                                   "shells, which has been exceeded.") -> None:
        """The next `action` request (Create, Command, ...) gets this SOAP fault."""
        self._faults[action] = Fault(subcode, code, reason)

    def _reboot(self) -> None:
        time.sleep(self.restart_delay_s)      # like shutdown /t: the answer gets out first
        self._go_down()
        self.world.restart()
        self.restarts += 1
        if not self._stopped.wait(self.restart_down_s):
            self.start()                      # same port: the host is back

    # -- the protocol ----------------------------------------------------------------------
    def handle(self, body: bytes) -> tuple[int, str]:
        """(HTTP status, SOAP envelope) for one request."""
        try:
            root = ET.fromstring(body)
        except ET.ParseError:
            return 400, ""
        header = root.find("s:Header", NS)
        def text(path: str) -> str:
            return (header.findtext(path, default="", namespaces=NS) or "").strip()
        message_id = text("a:MessageID")
        action_uri = text("a:Action")
        action = ACTIONS.get(action_uri, "")
        self.requests.append(action or action_uri)
        try:
            if not action:
                raise Fault("a:ActionNotSupported", 2150858754,
                            f"The action {action_uri} is not supported by the service.")
            if text("w:ResourceURI") != CMD_URI:
                raise Fault("w:DestinationUnreachable", 2150858770,
                            f"The resource URI {text('w:ResourceURI')} was not found.")
            fault = self._faults.pop(action, None)
            if fault:
                raise fault
            shell_id = ""
            for sel in header.iterfind("w:SelectorSet/w:Selector", NS):
                if sel.get("Name") == "ShellId":
                    shell_id = (sel.text or "").strip()
            op_timeout = float(re.sub(r"[^0-9.]", "", text("w:OperationTimeout")) or 20)
            body_el = root.find("s:Body", NS)
            reply = getattr(self, f"_on_{action.lower()}")(shell_id, body_el, op_timeout)
            return 200, self._envelope(action_uri + "Response", message_id, reply)
        except Fault as f:
            return 500, self._fault(message_id, f)
        except Exception as e:         # noqa: BLE001 - an emulator bug must show, not hang
            return 500, self._fault(message_id, Fault("w:InternalError", 2150858770,
                                                      f"emulator: {e!r}"))

    def _shell(self, shell_id: str) -> dict[str, _Command]:
        with self._lock:
            shell = self.shells.get(shell_id)
        if shell is None:
            raise Fault("w:InvalidSelectors", SHELL_NOT_FOUND,
                        f"The request for the Windows Remote Shell with ShellId {shell_id} "
                        "failed because the shell was not found on the server. Possible causes "
                        "are: the specified ShellId is incorrect or the shell no longer exists "
                        "on the server.")
        return shell

    def _find_command(self, shell_id: str, command_id: str) -> _Command:
        cmd = self._shell(shell_id).get(command_id)
        if cmd is None:
            raise Fault("w:InvalidParameter", 2150858752, f"No command with id {command_id}.")
        return cmd

    def _on_create(self, shell_id: str, body, op_timeout: float) -> str:
        new = str(uuid.uuid4()).upper()
        with self._lock:
            self.shells[new] = {}
        return (f"<x:ResourceCreated><a:Address>{self.url}</a:Address><a:ReferenceParameters>"
                f"<w:ResourceURI>{CMD_URI}</w:ResourceURI><w:SelectorSet>"
                f"<w:Selector Name=\"ShellId\">{new}</w:Selector></w:SelectorSet>"
                f"</a:ReferenceParameters></x:ResourceCreated>"
                f"<rsp:Shell><rsp:ShellId>{new}</rsp:ShellId><rsp:ResourceUri>{CMD_URI}"
                f"</rsp:ResourceUri><rsp:State>Connected</rsp:State></rsp:Shell>")

    def _on_command(self, shell_id: str, body, op_timeout: float) -> str:
        shell = self._shell(shell_id)
        line = body.findtext("rsp:CommandLine/rsp:Command", default="", namespaces=NS).strip()
        args = body.findtext("rsp:CommandLine/rsp:Arguments", default="", namespaces=NS)
        cmd = _Command(f"{line} {args}".strip())
        shell[cmd.id] = cmd
        threading.Thread(target=self._execute, args=(cmd,), daemon=True).start()
        return f"<rsp:CommandResponse><rsp:CommandId>{cmd.id}</rsp:CommandId></rsp:CommandResponse>"

    def _on_receive(self, shell_id: str, body, op_timeout: float) -> str:
        stream = body.find("rsp:Receive/rsp:DesiredStream", NS)
        command_id = stream.get("CommandId", "") if stream is not None else ""
        cmd = self._find_command(shell_id, command_id)
        if not cmd.done.wait(op_timeout):
            raise Fault(*TIMED_OUT)
        parts = []
        if not cmd.delivered:
            for name, data in (("stdout", cmd.stdout), ("stderr", cmd.stderr)):
                if data:
                    parts.append(f"<rsp:Stream Name=\"{name}\" CommandId=\"{cmd.id}\">"
                                 f"{base64.b64encode(data).decode()}</rsp:Stream>")
            cmd.delivered = True
        parts += [f"<rsp:Stream Name=\"stdout\" CommandId=\"{cmd.id}\" End=\"true\"></rsp:Stream>",
                  f"<rsp:Stream Name=\"stderr\" CommandId=\"{cmd.id}\" End=\"true\"></rsp:Stream>",
                  f"<rsp:CommandState CommandId=\"{cmd.id}\" State=\"{DONE}\">"
                  f"<rsp:ExitCode>{cmd.code}</rsp:ExitCode></rsp:CommandState>"]
        return f"<rsp:ReceiveResponse>{''.join(parts)}</rsp:ReceiveResponse>"

    def _on_signal(self, shell_id: str, body, op_timeout: float) -> str:
        sig = body.find("rsp:Signal", NS)
        command_id = sig.get("CommandId", "") if sig is not None else ""
        self._find_command(shell_id, command_id)
        code = body.findtext("rsp:Signal/rsp:Code", default="", namespaces=NS).strip()
        self.signals.append((command_id, code))
        return "<rsp:SignalResponse/>"

    def _on_delete(self, shell_id: str, body, op_timeout: float) -> str:
        self._shell(shell_id)
        with self._lock:
            self.shells.pop(shell_id, None)
        return ""

    def _envelope(self, action: str, relates_to: str, body: str) -> str:
        return ("<s:Envelope xml:lang=\"en-US\" "
                + " ".join(f"xmlns:{k}=\"{v}\"" for k, v in NS.items())
                + " xmlns:x=\"http://schemas.xmlsoap.org/ws/2004/09/transfer\">"
                "<s:Header><a:To>http://schemas.xmlsoap.org/ws/2004/08/addressing/role/"
                f"anonymous</a:To><a:Action s:mustUnderstand=\"true\">{action}</a:Action>"
                f"<a:MessageID>uuid:{str(uuid.uuid4()).upper()}</a:MessageID>"
                f"<a:RelatesTo>{escape(relates_to)}</a:RelatesTo></s:Header>"
                f"<s:Body>{body}</s:Body></s:Envelope>")

    def _fault(self, relates_to: str, f: Fault) -> str:
        reason = escape(f.reason)
        body = (f"<s:Fault><s:Code><s:Value>s:Sender</s:Value><s:Subcode><s:Value>{f.subcode}"
                f"</s:Value></s:Subcode></s:Code><s:Reason><s:Text xml:lang=\"en-US\">{reason}"
                "</s:Text></s:Reason><s:Detail><f:WSManFault xmlns:f=\"http://schemas.microsoft"
                f".com/wbem/wsman/1/wsmanfault\" Code=\"{f.code}\" Machine=\"127.0.0.1\">"
                f"<f:Message>{reason}</f:Message></f:WSManFault></s:Detail></s:Fault>")
        return self._envelope("http://schemas.dmtf.org/wbem/wsman/1/wsman/fault", relates_to, body)

    # -- running what was sent ---------------------------------------------------------------
    def _execute(self, cmd: _Command) -> None:
        try:
            cmd.code, cmd.stdout, cmd.stderr = self._run(cmd.line)
        except Exception as e:         # noqa: BLE001 - a bug here must show, not hang
            cmd.code, cmd.stdout, cmd.stderr = 1, b"", clixml_error(f"emulator: {e!r}")
        cmd.done.set()

    def _run(self, line: str) -> tuple[int, bytes, bytes]:
        if len(line) >= CMD_LIMIT:
            return 1, b"", b"The command line is too long.\r\n"
        try:
            script = parse_command_line(line)
        except ParseError as e:
            word = (line.split() or [""])[0]
            return 1, b"", (f"'{word}' is not recognized as an internal or external command,"
                            f"\r\noperable program or batch file. ({e})\r\n").encode()
        # The script is the one whose marker comes last (values come before it) and
        # the text must end with exactly that script as shipped. What precedes it
        # must be nothing but `$Name = '...'` lines: a value that escaped its
        # quotes would leave text that is neither.
        markers = re.findall(r"^# opsconsole:([a-z-]+)$", script, re.MULTILINE)
        name = markers[-1] if markers else ""
        if name not in ps.SCRIPTS or not script.endswith(ps.body(name)):
            word = next((ln.split()[0] for ln in script.splitlines()
                         if ln.strip() and not ln.startswith(("#", "$"))), "?")
            return 1, b"", clixml_error(
                f"{word} : The term '{word}' is not recognized as the name of a cmdlet, "
                "function, script file, or operable program. Check the spelling of the name, "
                "or if a path was included, verify that the path is correct and try again.")
        try:
            params, rest = parse_assignments(script[:len(script) - len(ps.body(name))])
            if rest:
                raise ParseError(f"unexpected text before the script: {rest[:40]!r}")
        except ParseError as e:
            return 1, b"", clixml_error(f"At line:1 char:1 ParserError: {e}")
        self.scripts.append((name, params))
        try:
            answer = getattr(self, "_ps_" + name.replace("-", "_"))(**params)
            code = 0
        except WorldError as e:
            answer, code = {"error": str(e)}, 1
        # What Out-Json prints: compact JSON, everything outside ASCII escaped.
        return code, (json.dumps(answer, separators=(",", ":")) + "\r\n").encode("ascii"), b""

    # -- the console's scripts, acting on the world ------------------------------------------
    def _find(self, name: str) -> dict:
        """Find-VM: exact, case-sensitive, exactly one."""
        found = [v for v in self.world.list_vms() if v["name"] == name]
        host = self.world.host_info()["computer_name"]
        if not found:
            raise WorldError(f"no VM named '{name}' on {host}")
        if len(found) > 1:
            raise WorldError(f"{len(found)} VMs are named '{name}' on {host}")
        return found[0]

    def _ps_read_host(self) -> dict:
        return {"host": self.world.host_info(), "vms": self.world.list_vms()}

    def _ps_get_vm(self, Name: str) -> dict:
        return self._find(Name)

    def _ps_stop_vm(self, Name: str, Mode: str) -> dict:
        vm = self._find(Name)
        if vm["state"] in ("Off", "Saved"):
            return vm
        if Mode not in ("shutdown", "turnoff"):
            raise WorldError(f"unknown stop mode '{Mode}'")
        self.world.stop_vm(Name, Mode == "turnoff")
        return self._find(Name)

    def _ps_start_vm(self, Name: str) -> dict:
        if self._find(Name)["state"] != "Running":
            self.world.start_vm(Name)
        return self._find(Name)

    def _ps_save_vm(self, Name: str) -> dict:
        if self._find(Name)["state"] == "Running":
            self.world.save_vm(Name)
        return self._find(Name)

    def _ps_restart_host(self) -> dict:
        busy = [v["name"] for v in self.world.list_vms() if v["state"] not in ("Off", "Saved")]
        if busy:
            raise WorldError(f"VMs still running: {', '.join(busy)}")
        boot = self.world.host_info()["boot_epoch"]
        threading.Thread(target=self._reboot, daemon=True).start()
        return {"boot_epoch": boot, "restart_in_s": 5}

    def _ps_stage_updates(self) -> dict:
        self.world.stage_updates()
        return {"staged": True}

    def _ps_install_updates(self, Script: str) -> dict:
        self.world.install_updates(Script)
        return {"task": "opsconsole-updates", "started": True}

    def _ps_update_status(self) -> dict:
        return self.world.update_status()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "Microsoft-HTTPAPI/2.0"
    sys_version = ""

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in two writes: without this, Nagle and delayed
        # ACKs add 40 ms to every request.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        emu: WinRMEmulator = self.server.emulator      # type: ignore[attr-defined]
        with emu._lock:
            emu._conns.add(self.connection)

    def finish(self) -> None:
        emu: WinRMEmulator = self.server.emulator      # type: ignore[attr-defined]
        with emu._lock:
            emu._conns.discard(self.connection)
        try:
            super().finish()
        except OSError:
            pass

    def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        try:
            self.send_response(status)
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except OSError:
            self.close_connection = True      # the client gave up (read timeout)

    def do_POST(self) -> None:
        emu: WinRMEmulator = self.server.emulator      # type: ignore[attr-defined]
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if emu.delay_s:
            time.sleep(emu.delay_s)
        if self.path.rstrip("/") != "/wsman":
            return self._send(404, b"")
        expected = base64.b64encode(f"{emu.username}:{emu.password}".encode()).decode()
        if self.headers.get("Authorization", "") != f"Basic {expected}":
            return self._send(401, b"", {"WWW-Authenticate": 'Basic realm="WSMAN"'})
        if not self.headers.get("Content-Type", "").startswith("application/soap+xml"):
            return self._send(415, b"")
        status, envelope = emu.handle(body)
        self._send(status, envelope.encode("utf-8"),
                   {"Content-Type": "application/soap+xml;charset=UTF-8"})

    def log_message(self, *args) -> None:
        pass
