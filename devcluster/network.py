"""The cluster's pod network: one Linux bridge per cluster in the host namespace, one network namespace and
veth pair per pod (iproute2, run as root).

A cluster owns a *slot* k (1..200) for its whole life by holding an exclusive lock on
/run/taskpool-net/slot-<k>.lock; the lock dies with the owning process, so a crashed run never blocks a slot
and the next owner of the slot first removes whatever the dead one left behind. Slot k gives:

    bridge  tpbr<k>            host address 10.213.<k>.1/24 (the API server binds here: pods reach it)
    pods    10.213.<k>.2-254   namespace tp<k>n<i>, host-side veth tp<k>v<i>, pod-side eth0

Concurrent clusters (several test runs on one machine) therefore never share names, addresses or ports.
"""

from __future__ import annotations

import fcntl
import ipaddress
import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

LOCK_FOLDER = Path("/run/taskpool-net")
SUBNET_PREFIX = "10.213"
SLOTS = range(1, 201)


class NetworkError(RuntimeError):
    """The pod network could not be set up."""


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if check and result.returncode != 0:
        raise NetworkError(f"ip {' '.join(args)} failed: {result.stderr.strip()}")
    return result


@dataclass(frozen=True)
class Slot:
    index: int

    @property
    def bridge(self) -> str:
        return f"tpbr{self.index}"

    @property
    def gateway(self) -> str:
        return f"{SUBNET_PREFIX}.{self.index}.1"

    @property
    def subnet(self) -> ipaddress.IPv4Network:
        return ipaddress.IPv4Network(f"{SUBNET_PREFIX}.{self.index}.0/24")

    def netns(self, pod_index: int) -> str:
        return f"tp{self.index}n{pod_index}"

    def host_veth(self, pod_index: int) -> str:
        return f"tp{self.index}v{pod_index}"

    def pod_ip(self, pod_index: int) -> str:
        return str(self.subnet.network_address + pod_index)

    @property
    def pod_indexes(self) -> range:
        return range(2, 255)

    def port(self, offset: int) -> int:
        """Loopback ports of this cluster's components: 21000 + 10 k + offset (offset < 10)."""
        return 21000 + 10 * self.index + offset


def _subnet_in_use(subnet: ipaddress.IPv4Network, own_bridge: str) -> bool:
    routes = json.loads(ip("-j", "route", "show").stdout or "[]")
    for route in routes:
        dst = route.get("dst", "")
        if dst in ("default", "") or route.get("dev") == own_bridge:
            continue
        if ipaddress.ip_network(dst, strict=False).overlaps(subnet):
            return True
    return False


def remove_leftovers(slot: Slot) -> None:
    """Deletes the namespaces and bridge a previous (dead) owner of the slot left behind."""
    prefix = f"tp{slot.index}n"
    for line in ip("netns", "list").stdout.splitlines():
        name = line.split()[0] if line.strip() else ""
        if name.startswith(prefix) and name[len(prefix) :].isdigit():
            ip("netns", "delete", name, check=False)
    ip("link", "delete", slot.bridge, check=False)


class SlotLease:
    """Holds a slot (and its bridge) for the life of this object's owner process."""

    def __init__(self) -> None:
        LOCK_FOLDER.mkdir(parents=True, exist_ok=True)
        for index in SLOTS:
            path = LOCK_FOLDER / f"slot-{index}.lock"
            fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            slot = Slot(index)
            remove_leftovers(slot)
            if _subnet_in_use(slot.subnet, slot.bridge):
                os.close(fd)
                continue
            self.slot = slot
            self._fd: int | None = fd
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
            break
        else:
            raise NetworkError(f"no free network slot in {LOCK_FOLDER} (all {len(SLOTS)} are held)")
        try:
            ip("link", "add", slot.bridge, "type", "bridge")
            ip("addr", "add", f"{slot.gateway}/24", "dev", slot.bridge)
            ip("link", "set", slot.bridge, "up")
        except NetworkError:
            self.release()
            raise

    def release(self) -> None:
        if self._fd is None:
            return
        remove_leftovers(self.slot)
        os.close(self._fd)
        self._fd = None


def add_pod_interface(slot: Slot, pod_index: int) -> str:
    """Creates the pod's namespace with eth0 on the bridge; returns the pod IP."""
    netns, veth, pod_ip = slot.netns(pod_index), slot.host_veth(pod_index), slot.pod_ip(pod_index)
    ip("netns", "delete", netns, check=False)
    ip("netns", "add", netns)
    try:
        ip("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", netns)
        ip("link", "set", veth, "master", slot.bridge, "up")
        ip("-n", netns, "addr", "add", f"{pod_ip}/24", "dev", "eth0")
        ip("-n", netns, "link", "set", "eth0", "up")
        ip("-n", netns, "link", "set", "lo", "up")
        ip("-n", netns, "route", "add", "default", "via", slot.gateway)
    except NetworkError:
        remove_pod_interface(slot, pod_index)
        raise
    return pod_ip


def remove_pod_interface(slot: Slot, pod_index: int) -> None:
    # Deleting the namespace destroys eth0 and with it the host-side end of the pair.
    ip("netns", "delete", slot.netns(pod_index), check=False)
    ip("link", "delete", slot.host_veth(pod_index), check=False)
