"""Who acts, and what their role lets them do.

Three roles, each allowed what the one before it is: `monitor` watches (read-only mode is
this role), `oncall` runs node operations, maintenance windows and rolling updates, pauses,
aborts, resumes and rolls back, `admin` may do all (breaking the lock, abandoning an
operation). What each operation needs is in the registry (`registry.PERMISSIONS`); the
engine and the actions ask `Access.require` before anything changes.

The identity is who the audit names: the person a forced command names (`ssh-entry
--user`, with the SSH key's fingerprint when sshd exposes it), else the local account,
marked as such. What the environment merely claims (SUDO_USER, SSH_CLIENT) is kept as
"reported", never as the identity: anyone can set it.
"""
from __future__ import annotations

import os
import pwd
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

Role = Literal["monitor", "oncall", "admin"]
ROLES: tuple[Role, ...] = ("monitor", "oncall", "admin")     # each allows what those before do
MONITOR, ONCALL, ADMIN = ROLES
CHANGE: Role = ONCALL       # the least role that may change anything in the cluster
LOCAL = "local account"


def role_named(word: str) -> Role:
    """`word` as a role; ValueError naming the known ones."""
    for role in ROLES:
        if word == role:
            return role
    raise ValueError(f"unknown role {word!r} (one of {', '.join(ROLES)})")


def lowest(*roles: Role) -> Role:
    return min(roles, key=ROLES.index)


def allows(role: Role, needed: Role) -> bool:
    return ROLES.index(role) >= ROLES.index(needed)


class RoleError(Exception):
    """The role of this console does not allow what was asked. Nothing was changed."""


def _local_user() -> str:
    """The account this process runs as, from the password database by its uid (not
    getpass.getuser(), which believes $USER and $LOGNAME)."""
    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:    # no passwd entry (containers): the uid still says who
        return f"uid{os.getuid()}"


def reported() -> str:
    """What the environment claims about who and from where (unverified: anyone can set it)."""
    said = []
    if os.environ.get("SUDO_USER"):
        said.append(f"SUDO_USER={os.environ['SUDO_USER']}")
    if os.environ.get("SSH_CLIENT"):
        said.append(f"SSH_CLIENT={os.environ['SSH_CLIENT'].split(' ')[0]}")
    return ", ".join(said)


@dataclass(frozen=True)
class Identity:
    """`who` is what the audit, the journal and the lock name; `via` says how it is known."""
    who: str
    via: str                # "local account" | "ssh-entry"
    key: str = ""           # SHA256 fingerprint of the SSH key that logged in, when exposed
    reported: str = ""      # unverified claims of the environment

    @classmethod
    def local(cls) -> Identity:
        return cls(f"{_local_user()}@{socket.gethostname()}", LOCAL, reported=reported())

    @property
    def over_ssh(self) -> bool:
        """A person who came in through the forced command (not the account itself)."""
        return self.via != LOCAL

    @classmethod
    def ssh(cls, user: str, key: str = "") -> Identity:
        """A person a forced command names, logged in to this machine's service account."""
        return cls(user, f"ssh-entry as {_local_user()}@{socket.gethostname()}", key=key,
                   reported=reported())

    def fields(self) -> dict[str, Any]:
        """For an audit record: who, and how that is known."""
        out: dict[str, Any] = {"who": self.who, "via": self.via}
        if self.key:
            out["key"] = self.key
        if self.reported:
            out["reported"] = self.reported
        return out


@dataclass(frozen=True)
class Access:
    """A console's role and identity, and what each operation needs (from the registry;
    an operation it does not list needs admin)."""
    role: Role
    identity: Identity
    permissions: Mapping[str, Role]

    @property
    def read_only(self) -> bool:
        return not allows(self.role, CHANGE)

    def needs(self, name: str) -> Role:
        return self.permissions.get(name, ADMIN)

    def allows(self, name: str) -> bool:
        return allows(self.role, self.needs(name))

    def refusal(self, needed: Role, what: str) -> str:
        """The words of a refusal: 'read-only mode' for a monitor (that is what it is)."""
        if self.role == MONITOR:
            return f"read-only mode (role monitor): refused to {what}"
        return f"role {self.role} may not {what} (needs {needed})"

    def require(self, needed: Role, what: str) -> None:
        if not allows(self.role, needed):
            raise RoleError(self.refusal(needed, what))
