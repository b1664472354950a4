"""Who may SSH in, and in which role: the service account's `authorized_keys`.

Each person is one line (or one per key) the console writes:

    command="/usr/local/bin/opsconsole ssh-entry --role oncall --user alice",restrict,pty \
        ssh-ed25519 AAAA… opsconsole:alice

`restrict` turns off port, agent and X11 forwarding and ~/.ssh/rc; `pty` gives back the
terminal the TUI needs. Lines the console did not write are kept as they are. The file is
written whole to a temporary file, 0600, synced, and renamed over the old one.
"""
from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .ops.roles import Role
from .sshentry import NAME, key_fingerprint

KEY_TYPES = ("ssh-ed25519", "ssh-rsa", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384",
             "ecdsa-sha2-nistp521", "sk-ssh-ed25519@openssh.com",
             "sk-ecdsa-sha2-nistp256@openssh.com")
MARK = "opsconsole:"        # the comment of the lines the console writes


class AccessError(Exception):
    """Bad input for the access file: the message names what and where."""


@dataclass(frozen=True)
class PublicKey:
    type: str
    blob: str               # base64
    fingerprint: str


@dataclass(frozen=True)
class Entry:
    """A line of authorized_keys that lets a person in through ssh-entry."""
    line: int               # 1-based
    user: str
    role: str
    key: PublicKey


def read_key(path: Path) -> PublicKey:
    """The one public key in `path`; AccessError unless it is exactly one valid public key
    (checked by `ssh-keygen -l`), without options: a private key is refused."""
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise AccessError(f"{path}: cannot read the key: {getattr(e, 'strerror', None) or e}")\
            from None
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
    if "PRIVATE KEY" in text:
        raise AccessError(f"{path}: this is a private key; give the public one (.pub)")
    if len(lines) != 1:
        raise AccessError(f"{path}: expected one public key line, found {len(lines)}")
    words = lines[0].split()
    if len(words) < 2 or words[0] not in KEY_TYPES:
        raise AccessError(f"{path}: not a public key line (TYPE BASE64 [COMMENT], TYPE one of "
                          f"{', '.join(KEY_TYPES)})")
    fingerprint = key_fingerprint(words[1])
    with tempfile.NamedTemporaryFile("w", suffix=".pub") as f:
        f.write(f"{words[0]} {words[1]}\n")
        f.flush()
        try:
            check = subprocess.run(["ssh-keygen", "-l", "-f", f.name], capture_output=True,
                                   text=True, timeout=10, check=False)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise AccessError(f"cannot check the key with ssh-keygen: {e}") from None
    if check.returncode != 0 or not fingerprint or fingerprint not in check.stdout:
        raise AccessError(f"{path}: ssh-keygen does not take it as a public key: "
                          f"{(check.stderr or check.stdout).strip()[:200]}")
    return PublicKey(words[0], words[1], fingerprint)


def default_entry(inventory: Path | None) -> list[str]:
    """The forced command's program: this opsconsole, with its inventory."""
    exe = sys.argv[0]
    program = [sys.executable, "-m", "opsconsole"] if exe.endswith("__main__.py") or \
        not os.path.isabs(exe) and not Path(exe).exists() else [os.path.abspath(exe)]
    return program + (["-i", str(inventory.resolve())] if inventory else [])


def forced_command(entry: list[str], role: Role, user: str) -> str:
    command = shlex.join([*entry, "ssh-entry", "--role", role, "--user", user])
    if re.search(r'["\\\x00-\x1f\x7f]', command):
        raise AccessError(f"the forced command cannot hold a double quote, a backslash or a "
                          f"control character: {command!r}")
    return command


def _options_and_rest(line: str) -> tuple[str, str]:
    """An authorized_keys line split into its options (may be empty) and the key part."""
    if line.split(None, 1)[0] in KEY_TYPES:
        return "", line
    quoted, i = False, 0
    while i < len(line):
        c = line[i]
        if c == "\\" and quoted and line[i + 1:i + 2] == '"':
            i += 2
            continue
        if c == '"':
            quoted = not quoted
        elif c in " \t" and not quoted:
            return line[:i], line[i:].strip()
        i += 1
    return line, ""


def _forced_user(options: str) -> tuple[str, str] | None:
    """(role, user) when the options force `… ssh-entry --role R --user U`."""
    m = re.search(r'(?:^|,)command="((?:[^"\\]|\\.)*)"', options)
    if not m:
        return None
    try:
        words = shlex.split(m.group(1).replace('\\"', '"'))
    except ValueError:
        return None
    if "ssh-entry" not in words:
        return None
    rest = words[words.index("ssh-entry") + 1:]
    found = {rest[i]: rest[i + 1] for i in range(len(rest) - 1) if rest[i] in ("--role",
                                                                               "--user")}
    if "--role" in found and "--user" in found:
        return found["--role"], found["--user"]
    return None


class AuthorizedKeys:
    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self.lines = path.read_text().splitlines() if path.exists() else []
        except (OSError, UnicodeDecodeError) as e:
            raise AccessError(f"{path}: cannot read: {getattr(e, 'strerror', None) or e}")\
                from None

    def entries(self) -> list[Entry]:
        out = []
        for n, line in enumerate(self.lines, 1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            options, rest = _options_and_rest(line.strip())
            forced = _forced_user(options) if options else None
            words = rest.split()
            if forced and len(words) >= 2:
                out.append(Entry(n, forced[1], forced[0],
                                 PublicKey(words[0], words[1], key_fingerprint(words[1]))))
        return out

    def others(self) -> int:
        """Lines that are not the console's (kept as they are)."""
        ours = {e.line for e in self.entries()}
        return sum(1 for n, ln in enumerate(self.lines, 1) if ln.strip() and n not in ours)

    def _line_with(self, key: PublicKey) -> int:
        for n, line in enumerate(self.lines, 1):
            if key.blob in line.split():
                return n
        return 0

    def add(self, user: str, role: Role, key: PublicKey, entry: list[str]) -> str:
        if not NAME.fullmatch(user):
            raise AccessError(f"user name {user!r}: letters, digits, . _ - (up to 32), "
                              "starting with a letter or _")
        n = self._line_with(key)
        if n:
            raise AccessError(f"{self.path}:{n}: this key ({key.fingerprint}) is already "
                              "there; sshd would use that line: remove it first")
        other = next((e for e in self.entries() if e.user == user and e.role != role), None)
        if other:
            raise AccessError(f"{self.path}:{other.line}: {user} has role {other.role}; "
                              f"`opsconsole access remove {user}` first")
        line = (f'command="{forced_command(entry, role, user)}",restrict,pty '
                f"{key.type} {key.blob} {MARK}{user}")
        self.lines.append(line)
        return line

    def remove(self, user: str) -> list[Entry]:
        gone = [e for e in self.entries() if e.user == user]
        if not gone:
            known = ", ".join(sorted({e.user for e in self.entries()})) or "none"
            raise AccessError(f"{self.path}: no access for {user!r} (known: {known})")
        drop = {e.line for e in gone}
        self.lines = [ln for n, ln in enumerate(self.lines, 1) if n not in drop]
        return gone

    def save(self) -> None:
        """Whole, atomically: a temporary file in the same folder, 0600, synced, renamed;
        owned like the old file (root editing a service account's keys keeps them its own).
        The folder is created 0700 when missing."""
        folder = self.path.parent
        if not folder.is_dir():
            folder.mkdir(mode=0o700, parents=True)
        owner = os.stat(self.path) if self.path.exists() else os.stat(folder)
        fd, tmp = tempfile.mkstemp(prefix=".authorized_keys.", dir=folder)
        try:
            with os.fdopen(fd, "w") as f:
                os.fchmod(f.fileno(), 0o600)
                if os.geteuid() == 0:
                    os.fchown(f.fileno(), owner.st_uid, owner.st_gid)
                f.write("".join(line + "\n" for line in self.lines))
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
            folder_fd = os.open(folder, os.O_RDONLY)
            try:
                os.fsync(folder_fd)     # the rename itself survives a crash
            finally:
                os.close(folder_fd)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
