"""Running one script on one host over WinRM, and saying plainly what failed.

`WinRMHost` is how to reach a host (built by the caller from the inventory,
credentials included); `make_session` turns it into a pywinrm Session or
says what the inventory lacks; `run_command` is pywinrm's run_cmd with a
deadline; `explain` turns pywinrm and transport failures into
ProviderErrors, `Unreachable` when nothing answered at all. Blocking: the
caller runs these in a thread. Credentials are never logged or shown.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import requests
import winrm
from winrm import transport as winrm_transport
from winrm.exceptions import (
    InvalidCredentialsError,
    WinRMError,
    WinRMOperationTimeoutError,
    WinRMTransportError,
    WSManFaultError,
)

from ..base import OUTPUT_CAP, Capped, ProviderError

TRANSPORTS = ("ntlm", "kerberos", "credssp", "certificate", "basic")
class Unreachable(ProviderError):
    """The host did not answer at all (refused, no route, timed out)."""


@dataclass(frozen=True)
class WinRMHost:
    """How to reach one Hyper-V host; built by the caller from the inventory."""
    name: str
    address: str = ""                   # DNS name or IP; "" means the name
    transport: str = "ntlm"             # ntlm | kerberos | credssp | certificate | basic
    scheme: str = "https"               # https (5986) or http (5985; ntlm/kerberos encrypt)
    port: int = 0                       # 0: the scheme's WinRM port
    cert_validation: bool = True        # check the host's TLS certificate
    ca_bundle: str = ""                 # CA file for that check; "" = requests' bundle
    username: str = ""
    password: str = field(default="", repr=False)
    cert_pem: str = ""                  # client certificate, transport "certificate"
    cert_key_pem: str = field(default="", repr=False)
    allow_basic: bool = False           # basic sends the password with every request
    expect_computer_name: str = ""      # refuse to act if the endpoint answers as another
    read_timeout: int = 30              # s per HTTP request; more than operation_timeout
    operation_timeout: int = 20         # s WinRM holds a Receive open while output is due
    call_timeout: float = 600.0         # s one script may run before it is terminated

    @property
    def endpoint(self) -> str:
        port = self.port or (5986 if self.scheme == "https" else 5985)
        return f"{self.scheme}://{self.address or self.name}:{port}/wsman"


def make_session(cfg: WinRMHost) -> winrm.Session:
    """A pywinrm Session, or a ProviderError saying what the inventory lacks."""
    where = f"{cfg.name}: WinRM"
    if cfg.transport not in TRANSPORTS:
        raise ProviderError(f"{where}: unknown transport {cfg.transport!r} "
                            f"(one of {', '.join(TRANSPORTS)})")
    if cfg.scheme not in ("https", "http"):
        raise ProviderError(f"{where}: scheme must be https or http, not {cfg.scheme!r}")
    if cfg.transport == "basic" and not cfg.allow_basic:
        raise ProviderError(f"{where}: transport basic sends the password with every request; "
                            "it is used only when explicitly allowed for this host")
    if cfg.transport == "certificate":
        if cfg.scheme != "https" or not (cfg.cert_pem and cfg.cert_key_pem):
            raise ProviderError(f"{where}: transport certificate needs https and a client "
                                "certificate and key")
    elif cfg.transport != "kerberos" and not (cfg.username and cfg.password):
        raise ProviderError(f"{where}: transport {cfg.transport} needs a user and a password")
    for name, present in (("ntlm", winrm_transport.HAVE_NTLM),
                          ("kerberos", winrm_transport.HAVE_KERBEROS),
                          ("credssp", winrm_transport.HAVE_CREDSSP)):
        if cfg.transport == name and not present:
            raise ProviderError(f"{where}: transport {name} needs pywinrm[{name}] installed")
    if cfg.operation_timeout < 1 or cfg.read_timeout <= cfg.operation_timeout:
        raise ProviderError(f"{where}: read_timeout must exceed operation_timeout (>= 1 s)")
    try:
        return winrm.Session(
            # None, not "": kerberos then uses the ticket cache's principal (the stubs say
            # str only)
            cfg.endpoint,
            auth=(cfg.username or None, cfg.password or None),  # type: ignore[arg-type]
            transport=cfg.transport,
            server_cert_validation="validate" if cfg.cert_validation else "ignore",
            ca_trust_path=cfg.ca_bundle or None, cert_pem=cfg.cert_pem or None,
            cert_key_pem=cfg.cert_key_pem or None, read_timeout_sec=cfg.read_timeout,
            operation_timeout_sec=cfg.operation_timeout,
            proxy=None)     # never an environment proxy: credentials go to the host only
    except (WinRMError, ValueError) as e:
        raise ProviderError(f"{where}: {e}") from None


_CONNECT_WORDS = (("Connection refused", "connection refused"),
                  ("Name or service not known", "name does not resolve"),
                  ("No route to host", "no route to host"),
                  ("Network is unreachable", "network unreachable"),
                  ("Connection reset", "connection reset"),
                  ("RemoteDisconnected", "connection closed by the host"),
                  ("Connection aborted", "connection closed by the host"))


def explain(error: BaseException, cfg: WinRMHost, script: str) -> ProviderError:
    """A pywinrm or transport failure in words; Unreachable when nothing answered."""
    where = f"{cfg.name}: {script}"
    if isinstance(error, InvalidCredentialsError):
        return ProviderError(f"{cfg.name}: WinRM rejected the credentials (HTTP 401, transport "
                             f"{cfg.transport}); check the user and password")
    if isinstance(error, WSManFaultError):
        code = error.wsman_fault_code or error.fault_subcode or error.code
        return ProviderError(f"{where}: WinRM fault: {' '.join(error.reason.split())} "
                             f"(code {code})")
    if isinstance(error, WinRMTransportError):
        return ProviderError(f"{where}: WinRM endpoint answered HTTP {error.code}")
    if isinstance(error, requests.exceptions.SSLError):
        return ProviderError(f"{cfg.name}: TLS check of {cfg.endpoint} failed "
                             f"(certificate not trusted or wrong name?)")
    if isinstance(error, requests.exceptions.ConnectTimeout):
        return Unreachable(f"{cfg.name}: no answer from {cfg.endpoint} (connect timed out)")
    if isinstance(error, requests.exceptions.ReadTimeout):
        return Unreachable(f"{where}: WinRM did not answer within {cfg.read_timeout} s")
    if isinstance(error, requests.exceptions.ConnectionError):
        text = str(error)
        words = next((w for needle, w in _CONNECT_WORDS if needle in text), "connection failed")
        return Unreachable(f"{cfg.name}: cannot reach {cfg.endpoint} ({words})")
    if isinstance(error, WinRMError):
        return ProviderError(f"{where}: {error}")
    return ProviderError(f"{where}: unexpected answer from WinRM "
                         f"({type(error).__name__}: {error})")


def _receive(p: winrm.Protocol, shell: str, command: str, deadline_s: float,
             cap: int = OUTPUT_CAP) -> tuple[int, Capped, Capped]:
    """Output up to `cap` bytes per stream: its head and its end, where the scripts
    print their JSON answer (a chatty host must not fill the console's memory)."""
    out, err, done, code = Capped(cap, tail=True), Capped(cap, tail=True), False, -1
    deadline = time.monotonic() + deadline_s
    while not done:
        try:
            o, e, code, done = p.get_command_output_raw(shell, command)
            out.add(o)
            err.add(e)
        except WinRMOperationTimeoutError:
            pass                        # WinRM's long poll ended with nothing new
        if not done and time.monotonic() > deadline:
            raise ProviderError(f"still running after {deadline_s:g} s; terminated")
    return code, out, err


def run_command(session: winrm.Session, line: str, deadline_s: float) -> tuple[int, bytes, bytes]:
    """pywinrm's run_cmd, with a deadline past which the command is terminated."""
    p = session.protocol
    try:
        shell = p.open_shell()
        command = p.run_command(shell, line)
        try:
            code, out, err = _receive(p, shell, command, deadline_s)
        except ProviderError:           # our deadline: Signal terminate, then say so
            try:
                p.cleanup_command(shell, command)
                p.close_shell(shell)
            except Exception:           # noqa: BLE001 - the deadline is the news
                pass
            raise
        p.cleanup_command(shell, command)
        p.close_shell(shell)
    except requests.exceptions.RequestException:
        p.transport.close_session()     # it stopped answering: send it nothing more
        raise
    clean = getattr(session, "_clean_error_msg", None)   # pywinrm's CLIXML reader
    # a cut CLIXML is not XML any more: it is shown as it came
    errors = clean(err.value()) if clean and err.value() and not err.cut else err.value()
    return code, out.value(), errors
