"""The forced command's side of SSH: what a person may ask for, and who they are.

`opsconsole ssh-entry --role ROLE --user NAME` is the command an `authorized_keys` line
forces (`command="…",restrict,pty`). What the person typed after `ssh host` arrives in
SSH_ORIGINAL_COMMAND; it is split like a shell would split words (shlex) but never run by
one, and only the console's own commands are accepted, each with only its own flags: no
option of the console itself (--role, --inventory, --read-only…) can be given, so role,
user and inventory come only from the forced command. The command then asks the
operations layer for its role, as it does for everyone.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

MAX_COMMAND = 1024      # longer is not a console command: refused before it is split
NAME = re.compile(r"[a-z_][a-z0-9_.-]{0,31}", re.IGNORECASE)       # a person's name
WORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9._,:@+-]{0,199}")          # a target, an id
CONTROL = re.compile(r"[\x00-\x1f\x7f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


class Refused(Exception):
    """Not something a person may run through the forced command (exit 3)."""


@dataclass(frozen=True)
class Allowed:
    """A console command that may be asked for over SSH: its own flags (none takes a
    value) and how many arguments. Whether the role allows it, the command itself asks the
    operations layer, as it does for everyone."""
    flags: tuple[str, ...]
    arguments: int


ALLOWED: dict[str, Allowed] = {
    "status": Allowed(("--json",), 0),
    "plan": Allowed(("--force",), 2),
    "journal": Allowed((), 0),
    "run": Allowed(("--yes", "--force"), 2),
    "resume": Allowed(("--yes",), 1),
    "rollback": Allowed(("--yes",), 1),
    "abandon": Allowed(("--yes",), 1),
    "unlock": Allowed(("--yes",), 0),
}


@dataclass(frozen=True)
class Request:
    command: str
    args: tuple[str, ...]       # its arguments and flags, as they were given


def parse(text: str) -> Request:
    """SSH_ORIGINAL_COMMAND as a console command, or Refused saying why."""
    if len(text) > MAX_COMMAND:
        raise Refused(f"command refused: longer than {MAX_COMMAND} characters")
    bad = CONTROL.search(text)
    if bad:
        raise Refused(f"command refused: it contains the control character "
                      f"U+{ord(bad.group()):04X} (one command per connection, on one line)")
    lexer = shlex.shlex(text, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    lexer.commenters = ""
    try:
        words = list(lexer)
    except ValueError as e:     # no closing quotation
        raise Refused(f"command refused: {e}") from None
    if words[:1] == ["opsconsole"]:
        words = words[1:]
    if not words:
        raise Refused("command refused: no command (ssh without one starts the console)")
    command, args = words[0], words[1:]
    allowed = ALLOWED.get(command)
    if allowed is None:
        raise Refused(f"command refused: {command[:60]!r} is not an opsconsole command "
                      f"allowed over SSH (allowed: {', '.join(ALLOWED)}); nothing is run "
                      "through a shell")
    positional = []
    for word in args:
        if set(word) <= set("();<>|&"):
            raise Refused(f"{word!r} refused: nothing is run through a shell; one console "
                          "command per connection")
        if word.startswith("-"):
            if word not in allowed.flags:
                raise Refused(f"option refused: {word[:60]!r} (`{command}` takes "
                              f"{', '.join(allowed.flags) or 'no options'} over SSH; role, "
                              "user and inventory come from the forced command only)")
        elif not WORD.fullmatch(word):
            raise Refused(f"argument refused: {word[:60]!r} is not a plain name "
                          "(letters, digits and . _ , : @ + -)")
        else:
            positional.append(word)
    if len(positional) != allowed.arguments:
        raise Refused(f"`{command}` takes {allowed.arguments} argument"
                      f"{'s' if allowed.arguments != 1 else ''}, not {len(positional)}")
    return Request(command, tuple(args))


def key_fingerprint(blob_b64: str) -> str:
    """SHA256 fingerprint of a public key (its base64 blob), as ssh-keygen -l prints it."""
    try:
        blob = base64.b64decode(blob_b64, validate=True)
    except (binascii.Error, ValueError):
        return ""
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


def exposed_key(path: str) -> str:
    """The fingerprint of the key the person logged in with, from the file sshd names in
    SSH_USER_AUTH (with `ExposeAuthInfo yes`): its "publickey TYPE BASE64" line. Empty when
    there is none (sshd does not expose it, or it cannot be read)."""
    if not path:
        return ""
    try:
        lines = Path(path).read_text(errors="replace").splitlines()
    except OSError:
        return ""
    for line in lines:
        words = line.split()
        if len(words) >= 3 and words[0] == "publickey":
            return key_fingerprint(words[2])
    return ""
