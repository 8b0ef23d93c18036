"""Starts one container process inside its pod's namespaces (run by the node agent as root, stdlib only).

    python -I -S pod_shim.py SPEC.json

SPEC: {"netns": name under /run/netns (null: the host's), "hostname": pod name,
"mounts": [{"source", "target", "readOnly"}], "cwd", "argv", "env", "status_file",
"user": {"uid", "gid", "groups"}, "readOnlyRoot", "noNewPrivileges"}.

The shim joins the pod's network namespace, makes a private mount, UTS, IPC and PID namespace, bind-mounts the
pod's volumes (among them the service-account token at /var/run/secrets/kubernetes.io/serviceaccount), then
forks: the child is PID 1 of the new PID namespace, as in a container, mounts its own /proc, takes the
container's user and groups and execs the container's command. With readOnlyRoot every other mount of the host
(/proc, /sys and /dev aside, as a runtime leaves them) is remounted read-only in the pod's mount namespace, so
only the volumes are writable, as on a read-only root filesystem. The shim stays as the parent: it forwards
signals to the child and exits with the child's status (128 + signal number when killed, as container runtimes
report). If the shim dies, the kernel kills the child (parent-death signal), and when the child (PID 1) dies
the kernel kills everything else in its PID namespace, so nothing a container started can outlive it.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import socket
import sys
from typing import Any

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 16384, 1 << 18
PR_SET_PDEATHSIG = 1
PR_SET_NO_NEW_PRIVS = 38
KEPT_WRITABLE = ("/proc", "/sys", "/dev")  # a container runtime mounts its own; they stay as they are
MOUNT_FLAGS = {"nosuid": MS_NOSUID, "nodev": MS_NODEV, "noexec": MS_NOEXEC}
FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2)

libc = ctypes.CDLL(None, use_errno=True)


def check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


def mount(source: str | None, target: str, fstype: str | None, flags: int) -> None:
    enc = [None if s is None else s.encode() for s in (source, target, fstype)]
    check(libc.mount(enc[0], enc[1], enc[2], ctypes.c_ulong(flags), None), f"mount {source} on {target}")


def _under(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip("/") + "/")


def make_root_read_only(volume_targets: list[str]) -> None:
    """Remounts every writable mount read-only except the volumes (and what lies under them)."""
    with open("/proc/self/mountinfo") as mountinfo:
        entries = [line.split() for line in mountinfo]
    for fields in entries:
        # Field 5 is the mount point (spaces and the like octal-escaped), field 6 its per-mount options.
        target = fields[4].encode().decode("unicode_escape")
        options = fields[5].split(",")
        fstype = fields[fields.index("-") + 1]
        if "ro" in options or fstype == "nsfs" or any(_under(target, kept) for kept in KEPT_WRITABLE):
            continue  # nsfs: the network namespaces' handles under /run/netns, not files
        if any(_under(target, volume) for volume in volume_targets):
            continue
        kept_flags = sum(flag for name, flag in MOUNT_FLAGS.items() if name in options)
        mount(None, target, None, MS_BIND | MS_REMOUNT | MS_RDONLY | kept_flags)


def become(user: dict[str, Any], no_new_privileges: bool) -> None:
    """Takes the container's groups, then its uid: as non-root, every capability is gone."""
    uid, gid = int(user["uid"]), int(user["gid"])
    os.setgroups([int(g) for g in user["groups"]])
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
    if no_new_privileges:
        check(libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(PR_SET_NO_NEW_PRIVS)")


def die_with_parent() -> None:
    parent = os.getppid()
    check(libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0), "prctl")
    if os.getppid() != parent:  # the parent died before the prctl took effect
        os._exit(137)


def main() -> None:
    with open(sys.argv[1]) as f:
        spec = json.load(f)
    die_with_parent()
    # Everything the shim needs from the host's file system is opened before any mount can hide it: a
    # volume mounted at /tmp hides a state folder under /tmp, including the other volumes' sources.
    status = open(spec["status_file"], "w")  # noqa: SIM115 - written until the container ends
    cwd = os.open(spec["cwd"], os.O_PATH | os.O_DIRECTORY)
    mounts = sorted(spec["mounts"], key=lambda m: m["target"].rstrip("/").count("/"))  # parents first

    def record(data: dict[str, object]) -> None:
        status.seek(0)
        status.truncate()
        status.write(json.dumps(data))
        status.flush()

    if spec["netns"] is not None:  # None: hostNetwork
        with open(f"/run/netns/{spec['netns']}") as ns:
            check(libc.setns(ns.fileno(), CLONE_NEWNET), "setns")
    check(libc.unshare(CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWPID), "unshare")
    mount(None, "/", None, MS_REC | MS_PRIVATE)
    socket.sethostname(spec["hostname"])
    # Opened in the new mount namespace (a bind source must belong to it), before any mount hides them.
    sources = [(os.open(m["source"], os.O_PATH), os.path.isdir(m["source"])) for m in mounts]
    for m, (fd, is_dir) in zip(mounts, sources, strict=True):
        if is_dir:  # a file (/etc/hosts) is mounted over an existing file
            os.makedirs(m["target"], exist_ok=True)
        mount(f"/proc/self/fd/{fd}", m["target"], None, MS_BIND | MS_REC)
        if m.get("readOnly"):
            mount(None, m["target"], None, MS_BIND | MS_REMOUNT | MS_RDONLY)
        os.close(fd)
    if spec["readOnlyRoot"]:
        make_root_read_only([m["target"] for m in mounts])

    read_end, write_end = os.pipe()  # both close on exec
    pid = os.fork()
    if pid == 0:
        os.close(read_end)
        try:
            mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
            os.fchdir(cwd)
            become(spec["user"], spec["noNewPrivileges"])
            # After the uid change, which clears the parent-death signal: the container dies with its shim.
            die_with_parent()
            os.execvpe(spec["argv"][0], spec["argv"], spec["env"])
        except BaseException as exc:  # report why the container could not start, then fail like a runtime
            os.write(write_end, f"exec {spec['argv'][0]!r}: {type(exc).__name__}: {exc}".encode())
            os._exit(128)
    os.close(write_end)
    os.close(cwd)
    record({"pid": pid})
    for signum in FORWARDED:
        signal.signal(signum, lambda s, _frame: os.kill(pid, s))
    failure = b""
    while chunk := os.read(read_end, 4096):  # closes on exec (close-on-exec) or on exit
        failure += chunk
    if failure:
        record({"pid": pid, "startError": failure.decode(errors="replace")})
    _, code = os.waitpid(pid, 0)
    if os.WIFSIGNALED(code):
        os._exit(128 + os.WTERMSIG(code))
    os._exit(os.WEXITSTATUS(code))


if __name__ == "__main__":
    main()
