"""Init of a lab VM's sshd: makes the VM safe for this machine, then execs sshd.

The lab starts it as PID 1 of new PID, mount (private propagation) and UTS
namespaces, inside the VM's network namespace, with a fresh /proc:

    nsenter --net=/run/netns/ocl-vm-01 -- unshare --uts --mount --propagation private \\
        --pid --fork --kill-child --mount-proc -- python3 -I vminit.py --vm vm-01 \\
        --root /tmp/ocl -- setpriv --bounding-set -sys_boot,... --inh-caps -all -- sshd ...

The lab VMs share this machine's kernel and filesystem. So that nothing run
over a VM's SSH can reboot or power off the machine, this, in the new mount
namespace only:
  * binds the lab's power script (asks labd to restart this VM, nothing else)
    over every file that reboot, shutdown, poweroff, halt, telinit, init and
    systemctl resolve to, and its directory over /usr/local/sbin (first in
    root's PATH) for any of those names the machine lacks;
  * binds the VM's own boot id file over /proc/sys/kernel/random/boot_id (the
    console reads it to tell that a VM rebooted);
  * binds /dev/null over /proc/sysrq-trigger, makes /proc/sys and /sys read-only;
  * puts an empty tmpfs over root's home (the VM's own: a login does not run
    this machine's shell profile) and over /run (no D-Bus, systemd, containerd or docker
    sockets of the machine) and over the lab's directory, where only this VM's
    ssh (read-only), power and disk directories come back;
  * checks all of that, and only then execs the rest of its command line
    (setpriv, which takes CAP_SYS_BOOT, CAP_SYS_ADMIN and others out of the
    bounding set, then sshd). Without CAP_SYS_ADMIN nothing in the VM can undo
    these mounts; without CAP_SYS_BOOT nothing can call reboot(2) or kexec;
    in its own PID namespace nothing can signal this machine's init.

Any failure exits non-zero before sshd starts: no safety, no sshd.
Standalone (stdlib only): it runs with `python3 -I`.
"""
from __future__ import annotations

import argparse
import codecs
import os
import subprocess
import sys

codecs.lookup("unicode_escape")     # loaded now: mountinfo() needs it after the home is covered

POWER_COMMANDS = ("reboot", "shutdown", "poweroff", "halt", "telinit", "init", "systemctl")
BIN_DIRS = ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin")
MARKER = b"# opsconsole-lab-power "
STAGE = "/run/.ocl-vm"


class Unsafe(Exception):
    pass


def sh(*cmd: str) -> None:
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode:
        raise Unsafe(f"{' '.join(cmd)}: {p.stderr.strip() or p.stdout.strip()}")


def bind(src: str, dst: str, readonly: bool = False) -> None:
    sh("mount", "--bind", src, dst)
    if readonly:
        sh("mount", "-o", "remount,bind,ro", dst)


def mountinfo() -> list[tuple[str, str, str]]:
    """(mount point, root within its filesystem, options) of every mount here."""
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            unescape = lambda s: s.encode().decode("unicode_escape")   # noqa: E731
            out.append((unescape(fields[4]), unescape(fields[3]), fields[5]))
    return out


def detach_under(path: str) -> None:
    """Lazily detach every mount at or below path (this namespace's copies), deepest first."""
    for _ in range(5):
        points = sorted({m for m, _, _ in mountinfo() if m == path or m.startswith(path + "/")},
                        key=len, reverse=True)
        if not points:
            return
        for m in points:
            subprocess.run(["umount", "-l", m], capture_output=True)
    raise Unsafe(f"mounts under {path} would not go away")


def power_targets() -> list[str]:
    """The real files behind every power command on this machine (symlinks resolved)."""
    found = set()
    for name in POWER_COMMANDS:
        for d in BIN_DIRS:
            path = os.path.join(d, name)
            if os.path.exists(path):
                found.add(os.path.realpath(path))
    return sorted(found)


def make_safe(vm: str, root: str) -> None:
    vmdir = os.path.join(root, vm)
    script = os.path.join(vmdir, "sbin", "lab-power")
    with open(script, "rb") as f:
        if not f.read(200).startswith(b"#!/bin/sh\n" + MARKER + vm.encode()):
            raise Unsafe(f"{script} is not the lab's power script for {vm}")
    with open("/proc/sys/kernel/hostname", "w") as f:
        f.write(vm)

    # the power commands: the lab's script wherever they lead
    for target in power_targets():
        bind(script, target, readonly=True)
    if os.path.isdir("/usr/local/sbin"):
        bind(os.path.join(vmdir, "sbin"), "/usr/local/sbin", readonly=True)

    # the kernel's knobs: boot id of this VM, no sysrq, read-only sysctl and sysfs
    if os.path.exists("/proc/sysrq-trigger"):     # absent from kernels without magic sysrq
        bind("/dev/null", "/proc/sysrq-trigger")
    bind("/proc/sys", "/proc/sys", readonly=True)
    bind(os.path.join(vmdir, "boot_id"), "/proc/sys/kernel/random/boot_id", readonly=True)
    sh("mount", "-o", "remount,bind,ro", "/sys")

    # /run: nothing of the machine's (D-Bus, systemd, containerd, docker, netns)
    detach_under("/run")
    sh("mount", "-t", "tmpfs", "-o", "mode=755,size=16m", "ocl-run", "/run")
    os.makedirs("/run/sshd", mode=0o755)   # sshd's privilege separation directory
    os.makedirs(STAGE)
    bind(vmdir, STAGE)

    # the lab's directory: only this VM's own ssh (read-only), power and disk
    detach_under(root)
    sh("mount", "-t", "tmpfs", "-o", "mode=755,size=16m", "ocl-lab", root)
    for sub, readonly in (("ssh", True), ("power", False), ("disk", False)):
        os.makedirs(os.path.join(vmdir, sub))
        bind(os.path.join(STAGE, sub), os.path.join(vmdir, sub), readonly)
    detach_under(STAGE)
    os.rmdir(STAGE)

    # a home of the VM's own: a login does not run this machine's ~/.bashrc (pyenv init
    # there costs 0.2 s per command, which a real VM would not have). Last: this Python
    # may live under it (what it still needs is imported at the top).
    home = os.path.expanduser("~root")
    if os.path.isdir(home):
        sh("mount", "-t", "tmpfs", "-o", "mode=700,size=1m", "ocl-home", home)
    check(vm, root)


def check(vm: str, root: str) -> None:
    """Fail closed: every power command is the lab's script, the knobs are masked."""
    points = {m: (fsroot, opts) for m, fsroot, opts in mountinfo()}
    for target in power_targets():
        with open(target, "rb") as f:
            if not f.read(200).startswith(b"#!/bin/sh\n" + MARKER + vm.encode()):
                raise Unsafe(f"{target} is not the lab's power script")
    for path in ("/proc/sysrq-trigger", "/proc/sys/kernel/random/boot_id"):
        if path not in points and os.path.exists(path):
            raise Unsafe(f"{path} is not masked")
    for path in ("/proc/sys", "/sys", f"{root}/{vm}/ssh"):
        if path not in points or "ro" not in points[path][1].split(","):
            raise Unsafe(f"{path} is not read-only")
    with open("/proc/sys/kernel/random/boot_id") as f:
        if len(f.read().strip()) != 36:
            raise Unsafe("the VM's boot id is not readable")
    leaked = [m for m in points if m.startswith(root + "/") and not m.startswith(f"{root}/{vm}/")]
    if leaked or os.listdir(root) != [vm]:
        raise Unsafe(f"other parts of the lab are visible: {leaked[:3] or os.listdir(root)}")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--vm", required=True)
    ap.add_argument("--root", required=True)
    ap.add_argument("command", nargs=argparse.REMAINDER)
    args = ap.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if os.getpid() != 1:
        print("vminit: must be PID 1 of its own PID namespace", file=sys.stderr)
        return 2
    if not command:
        print("vminit: nothing to run", file=sys.stderr)
        return 2
    try:
        make_safe(args.vm, os.path.realpath(args.root))
    except (Unsafe, OSError) as e:
        print(f"vminit {args.vm}: refusing to start sshd: {e}", file=sys.stderr)
        return 1
    sys.stdout.flush()
    os.execvp(command[0], command)
    return 127


if __name__ == "__main__":
    sys.exit(main())
