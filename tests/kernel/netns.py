"""Network namespaces and veth pairs for kernel tests, always cleaned up.

Namespaces are made with iproute2 (``ip netns add``: a bind mount under
/run/netns).  Code runs inside one with :meth:`NetNS.run`: a short-lived
thread does ``setns(CLONE_NEWNET)`` and calls the function there.  Only that
thread changes namespace (a network namespace is per thread), so the test
process never leaves its own, and whatever the function creates -- sockets,
bpf links, netlink sockets -- stays bound to the namespace it was made in and
is usable from the main thread afterwards.  :meth:`NetNS.exec` runs a
command in the namespace (``ip netns exec``).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import itertools
import json
import os
import socket
import subprocess
import threading
import time
from typing import Any, Callable, Iterator, List, Sequence, Tuple, TypeVar

import attrs

T = TypeVar("T")

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)
_counter = itertools.count()


def _ip(*args: str) -> str:
    r = subprocess.run(["ip", *args], capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {r.stderr.strip()}")
    return r.stdout


@attrs.frozen
class NetNS:
    """A named network namespace (``/run/netns/<name>``)."""
    name: str

    @property
    def path(self) -> str:
        return f"/run/netns/{self.name}"

    def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``fn(*args, **kwargs)`` called in a fresh thread inside this namespace;
        its result is returned, its exception re-raised."""
        result: List[Any] = []
        error: List[BaseException] = []

        def body() -> None:
            try:
                fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
                try:
                    if _libc.setns(fd, CLONE_NEWNET) != 0:
                        e = ctypes.get_errno()
                        raise OSError(e, f"setns({self.path}): {os.strerror(e)}")
                finally:
                    os.close(fd)
                result.append(fn(*args, **kwargs))
            except BaseException as e:  # re-raised in the caller
                error.append(e)

        t = threading.Thread(target=body, name=f"netns-{self.name}")
        t.start()
        t.join()
        if error:
            raise error[0]
        return result[0]

    def exec(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess:
        """Run a command inside the namespace (``ip netns exec``)."""
        return subprocess.run(["ip", "netns", "exec", self.name, *argv], capture_output=True,
                              text=True, check=check)

    def ip(self, *args: str) -> str:
        """``ip -n <name> ARGS``' output."""
        return _ip("-n", self.name, *args)


@contextlib.contextmanager
def netns(tag: str = "ns") -> Iterator[NetNS]:
    """A new network namespace with loopback up, deleted on exit."""
    ns = NetNS(f"pybpf-{os.getpid()}-{next(_counter)}-{tag}")
    _ip("netns", "add", ns.name)
    try:
        ns.ip("link", "set", "lo", "up")
        yield ns
    finally:
        subprocess.run(["ip", "netns", "del", ns.name], capture_output=True)


@attrs.frozen
class VethPair:
    """Two namespaces joined by a veth pair: ``a``/``if_a``/``ip_a`` <-> ``b``/``if_b``/``ip_b``."""
    a: NetNS
    b: NetNS
    if_a: str = "veth0"
    if_b: str = "veth1"
    ip_a: str = "10.199.0.1"
    ip_b: str = "10.199.0.2"


def _mac(ns: NetNS, ifname: str) -> str:
    return json.loads(ns.ip("-j", "link", "show", ifname))[0]["address"]


@contextlib.contextmanager
def veth_pair() -> Iterator[VethPair]:
    """Namespaces ``a`` and ``b`` with a veth pair between them, addressed and up, with
    static neighbour entries (no ARP, so the first datagram is not held back)."""
    with netns("a") as a, netns("b") as b:
        v = VethPair(a, b)
        _ip("link", "add", v.if_a, "netns", a.name, "type", "veth", "peer", "name", v.if_b,
            "netns", b.name)
        for ns, ifname, addr in ((a, v.if_a, v.ip_a), (b, v.if_b, v.ip_b)):
            ns.ip("addr", "add", f"{addr}/24", "dev", ifname)
            ns.ip("link", "set", ifname, "up")
        a.ip("neigh", "replace", v.ip_b, "lladdr", _mac(b, v.if_b), "dev", v.if_a, "nud", "permanent")
        b.ip("neigh", "replace", v.ip_a, "lladdr", _mac(a, v.if_a), "dev", v.if_b, "nud", "permanent")
        yield v


# --- traffic helpers (call them through NetNS.run to act inside a namespace) ---

def udp_socket(addr: str, port: int = 0) -> socket.socket:
    """A UDP socket bound to ``addr:port`` (created in the calling thread's namespace)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.bind((addr, port))
    except BaseException:
        s.close()
        raise
    return s


def send_udp(dst: str, port: int, count: int = 1, payload: bytes = b"pybpf") -> List[int]:
    """Send ``count`` datagrams to ``dst:port``; the errno of each send (0: sent)."""
    out = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for _ in range(count):
            try:
                s.sendto(payload, (dst, port))
                out.append(0)
            except OSError as e:
                out.append(e.errno or errno.EIO)
    return out


def drain(sock: socket.socket, expect: int, timeout: float = 2.0) -> List[bytes]:
    """Receive up to ``expect`` datagrams (waiting at most ``timeout`` for them), then
    whatever else is already queued."""
    got: List[bytes] = []
    deadline = time.monotonic() + timeout
    while len(got) < expect:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            got.append(sock.recv(65536))
        except (socket.timeout, BlockingIOError):
            break
    sock.setblocking(False)
    while True:
        try:
            got.append(sock.recv(65536))
        except (BlockingIOError, socket.timeout):
            return got


def wait_for(predicate: Callable[[], bool], timeout: float = 2.0, what: str = "") -> None:
    """Poll ``predicate`` until true; AssertionError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or predicate}")
        time.sleep(0.01)


def free_tcp_port(addr: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((addr, 0))
        return s.getsockname()[1]


def tcp_pair(addr: str = "127.0.0.1") -> Tuple[socket.socket, socket.socket]:
    """A connected TCP ``(client, server)`` pair on ``addr``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as ls:
        ls.bind((addr, 0))
        ls.listen(1)
        c = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            c.connect(ls.getsockname())
            srv, _ = ls.accept()
        except BaseException:
            c.close()
            raise
    return c, srv


def leftover_namespaces() -> Sequence[str]:
    """Namespaces this process created that still exist (for cleanup assertions)."""
    prefix = f"pybpf-{os.getpid()}-"
    try:
        return [n for n in os.listdir("/run/netns") if n.startswith(prefix)]
    except FileNotFoundError:
        return []


__all__ = ["NetNS", "VethPair", "netns", "veth_pair", "udp_socket", "send_udp", "drain",
           "wait_for", "free_tcp_port", "tcp_pair", "leftover_namespaces"]
