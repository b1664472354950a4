"""The PowerShell the console runs on Hyper-V hosts, and how it gets there.

Each script is a readable .ps1 file next to this module that prints one line
of compact JSON. `command_line` builds the exact command pywinrm runs:
`$Name = '<quoted>'` assignments, the shared prelude, the script, all as
UTF-16LE base64 for `powershell -EncodedCommand`, and refuses anything that
would not fit cmd.exe's command line. `parse_answer` turns what came back
into a dict or a ProviderError that names the host and the script.

This module reads only the package's own files; sending them to a host over
WinRM (pywinrm) is remote.py's job.
"""
from __future__ import annotations

import base64
import json
import re
from collections.abc import Mapping
from functools import cache
from importlib import resources
from typing import Any

from ..base import ProviderError

# PowerShell ends a single-quoted literal at any of these, not only at "'".
QUOTES = "'\u2018\u2019\u201a\u201b"
CMD_LIMIT = 8191                    # cmd.exe's longest command line, in characters
PREFIX = "powershell -NoProfile -NonInteractive -EncodedCommand "
MARKER = "# opsconsole:"
VM_NAME_MAX = 100                   # Hyper-V's own limit on VM names
PATH_MAX = 260                      # Windows MAX_PATH, for the maintenance script

# Every script: the helper files it needs after _prelude.ps1, and its
# parameters with the longest value of each. The tests build every script
# with every value at its longest, made of quote characters (which double),
# and check that it still fits.
SCRIPTS: dict[str, tuple[tuple[str, ...], dict[str, int]]] = {
    "read-host": (("_vm", "_host"), {}),
    "get-vm": (("_vm",), {"Name": VM_NAME_MAX}),
    "stop-vm": (("_vm",), {"Name": VM_NAME_MAX, "Mode": 8}),
    "start-vm": (("_vm",), {"Name": VM_NAME_MAX}),
    "save-vm": (("_vm",), {"Name": VM_NAME_MAX}),
    "restart-host": (("_host",), {}),
    "stage-updates": ((), {}),
    "install-updates": ((), {"Script": PATH_MAX}),
    "update-status": ((), {}),
}

# Names PowerShell owns: assigning them fails or changes the session.
RESERVED = frozenset(n.lower() for n in (
    "_", "args", "ConsoleFileName", "Error", "Event", "EventArgs", "EventSubscriber",
    "ExecutionContext", "false", "foreach", "HOME", "Host", "input", "IsCoreCLR", "IsLinux",
    "IsMacOS", "IsWindows", "LASTEXITCODE", "Matches", "MyInvocation", "NestedPromptLevel",
    "null", "OFS", "PID", "PROFILE", "PSBoundParameters", "PSCmdlet", "PSCommandPath",
    "PSCulture", "PSDebugContext", "PSEdition", "PSHOME", "PSItem", "PSScriptRoot",
    "PSSenderInfo", "PSUICulture", "PSVersionTable", "PWD", "Sender", "ShellId",
    "StackTrace", "switch", "this", "true"))
IDENTIFIER = re.compile(r"^[A-Za-z][A-Za-z0-9]*$")


def quote(value: str) -> str:
    """A PowerShell single-quoted literal whose value is exactly `value`.

    Inside '...' nothing is expanded ($, backtick, $() are plain text) and a
    doubled quote character stands for itself; every quote character in the
    value is doubled, so none can end the literal.
    """
    if not isinstance(value, str):
        raise TypeError(f"PowerShell parameter values are strings, got {type(value).__name__}")
    if "\x00" in value:
        raise ProviderError("a NUL character cannot be sent to PowerShell")
    return "'" + "".join(c + c if c in QUOTES else c for c in value) + "'"


def _check_name(name: str) -> None:
    if not IDENTIFIER.match(name) or name.lower() in RESERVED \
            or name.lower().endswith("preference"):
        raise ValueError(f"{name!r} cannot be a PowerShell parameter name")


def assignments(params: Mapping[str, str]) -> str:
    """`$Name = '<quoted>'` lines, one per parameter, in the order given."""
    lines = []
    for name, value in params.items():
        _check_name(name)
        lines.append(f"${name} = {quote(value)}\n")
    return "".join(lines)


def _minify(text: str) -> str:
    """Drop comment lines and indentation: the readable file, at half the size.

    Safe because the scripts use no here-strings or multi-line literals (a
    unit test checks that); the marker comment is kept for the lab's emulator.
    """
    kept = [s for s in (ln.strip() for ln in text.splitlines())
            if s and (not s.startswith("#") or s.startswith(MARKER))]
    return "\n".join(kept) + "\n"


def source(name: str) -> str:
    """The readable .ps1 file as shipped."""
    return resources.files(__package__).joinpath(f"{name}.ps1").read_text(encoding="utf-8")


@cache
def body(name: str) -> str:
    """What is sent after the assignments: the prelude, helpers, the script."""
    if name not in SCRIPTS:
        raise ValueError(f"unknown script {name!r}")
    helpers, _ = SCRIPTS[name]
    return "".join(_minify(source(part)) for part in ("_prelude", *helpers, name))


def script_text(name: str, params: Mapping[str, str] | None = None) -> str:
    params = dict(params or {})
    if name not in SCRIPTS:
        raise ValueError(f"unknown script {name!r}")
    wanted = SCRIPTS[name][1]
    if set(params) != set(wanted):
        raise ValueError(f"{name} takes {sorted(wanted)}, got {sorted(params)}")
    for key, value in params.items():
        if isinstance(value, str) and len(value) > wanted[key]:
            raise ProviderError(f"{name}: {key} is {len(value)} characters long; "
                                f"at most {wanted[key]} are allowed")
    return assignments({k: params[k] for k in wanted}) + body(name)


def encode(script: str) -> str:
    """What powershell -EncodedCommand takes (what pywinrm's run_ps sends)."""
    return base64.b64encode(script.encode("utf-16-le")).decode("ascii")


def command_line(name: str, params: Mapping[str, str] | None = None) -> str:
    """The command line for WinRM; refuses to build one cmd.exe would cut."""
    line = PREFIX + encode(script_text(name, params))
    if len(line) >= CMD_LIMIT:
        raise ProviderError(f"{name}: the encoded command is {len(line)} characters long; "
                            f"cmd.exe takes at most {CMD_LIMIT - 1}")
    return line


# -- answers ------------------------------------------------------------------------
def _excerpt(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "..."


def parse_answer(host: str, script: str, status: int, stdout: bytes | str,
                 stderr: bytes | str = b"") -> dict[str, Any]:
    """The script's JSON answer, or a ProviderError naming host and script."""
    out = stdout.decode("utf-8", "replace") if isinstance(stdout, bytes) else stdout
    err = stderr.decode("utf-8", "replace") if isinstance(stderr, bytes) else stderr
    where = f"{host}: {script}"
    # The answer is the last line that looks like JSON: a profile or a chatty
    # cmdlet may have printed something before it.
    line = next((ln.strip() for ln in reversed(out.splitlines())
                 if ln.strip().startswith("{")), "")
    if not line:
        if status != 0:
            raise ProviderError(f"{where} failed (exit {status}): "
                                f"{_excerpt(err or out) or 'no output'}")
        raise ProviderError(f"{where} gave no JSON answer"
                            + (f" (output: {_excerpt(out)})" if out.strip() else ""))
    try:
        answer = json.loads(line)
    except (ValueError, RecursionError) as e:     # RecursionError: absurdly deep nesting
        raise ProviderError(f"{where}: answer is not valid JSON ({e}): {_excerpt(line, 120)}") \
            from None
    if not isinstance(answer, dict):
        raise ProviderError(f"{where}: answer is not a JSON object: {_excerpt(line, 120)}")
    if answer.get("error"):
        raise ProviderError(f"{where}: {answer['error']}")
    if status != 0:
        raise ProviderError(f"{where} failed (exit {status}): {_excerpt(err) or 'no message'}")
    return answer


def field(answer: Mapping[str, Any], key: str, kind: type, where: str) -> Any:
    """One field of an answer, of the expected type, or a ProviderError."""
    if not isinstance(answer, Mapping) or key not in answer:
        raise ProviderError(f"{where}: answer lacks field {key!r}")
    value = answer[key]
    if kind is int and isinstance(value, float) and value.is_integer():
        value = int(value)          # some serialisers write 3.0 for 3
    ok = isinstance(value, kind) and not (kind is not bool and isinstance(value, bool))
    if not ok:
        raise ProviderError(f"{where}: field {key!r} should be {kind.__name__}, "
                            f"got {_excerpt(repr(value), 60)}")
    return value
