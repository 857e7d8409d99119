"""Networking attachments, for real: XDP, tcx, tc (netlink), netfilter on a veth pair
between two network namespaces the tests create; cgroup programs on a cgroup the tests
create, seen by a forked child moved into it; socket filters; sk_msg/sk_skb on
sockmap/sockhash.  Every namespace, cgroup, socket and link is removed even on failure."""

from __future__ import annotations

import contextlib
import errno
import os
import pickle
import select
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

import pybpf
from pybpf import sys as _sys
from pybpf.consts import AttachType
from pybpf.link.cgroup import ProgAttachLink, attach_cgroup
from pybpf.link.netfilter import attach_netfilter
from pybpf.link.netlink import resolve_ifindex
from pybpf.link.sockets import attach_sockmap, attach_socket_filter
from pybpf.link.tc import TCNetlinkLink, attach_tc, attach_tcx, tc_filters
from pybpf.link.xdp import XDPNetlinkLink, attach_xdp, xdp_query
from tests.kernel.netns import (
    drain, free_tcp_port, leftover_namespaces, send_udp, tcp_pair, udp_socket, veth_pair, wait_for,
)

pytestmark = pytest.mark.kernel

DROP_PORT = 7001
PASS_PORT = 7002
CGROUP2 = Path("/sys/fs/cgroup/unified")


# --- fixtures -------------------------------------------------------------------------------

@pytest.fixture
def veth():
    with veth_pair() as v:
        yield v
    assert not leftover_namespaces()


@pytest.fixture
def l2(bpf_objects):
    """net_l2 loaded with drop_port = DROP_PORT."""
    spec = pybpf.load_collection_spec(bpf_objects["net_l2"])
    spec.variables["drop_port"].value = DROP_PORT
    with pybpf.load(spec) as coll:
        yield coll


@pytest.fixture
def receivers(veth):
    """UDP sockets in namespace b on the drop and the pass port."""
    rd = veth.b.run(udp_socket, veth.ip_b, DROP_PORT)
    rp = veth.b.run(udp_socket, veth.ip_b, PASS_PORT)
    try:
        yield rd, rp
    finally:
        rd.close()
        rp.close()


def counts(coll) -> tuple:
    m = coll.maps["counts"]
    return m[0], m[1]


def check_drops(coll, veth, receivers, n_drop: int = 4, n_pass: int = 3) -> None:
    """Send datagrams a -> b: the ones to DROP_PORT are counted and dropped, the others
    counted and delivered."""
    rd, rp = receivers
    before = counts(coll)
    assert veth.a.run(send_udp, veth.ip_b, DROP_PORT, n_drop) == [0] * n_drop
    assert veth.a.run(send_udp, veth.ip_b, PASS_PORT, n_pass) == [0] * n_pass
    want = (before[0] + n_drop, before[1] + n_pass)
    wait_for(lambda: counts(coll) == want, what=f"counts {want}")
    assert len(drain(rp, n_pass)) == n_pass
    assert drain(rd, 0, timeout=0.05) == []


def check_delivered(veth, receivers, n: int = 2) -> None:
    """With nothing attached, datagrams to DROP_PORT arrive."""
    rd, _ = receivers
    assert veth.a.run(send_udp, veth.ip_b, DROP_PORT, n) == [0] * n
    assert len(drain(rd, n)) == n


# --- XDP ------------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", [None, "generic"])
def test_xdp_link_counts_and_drops(l2, veth, receivers, mode):
    prog = l2.programs["xdp_count_drop"]
    with veth.b.run(prog.attach, veth.if_b, mode=mode) as link:
        assert link.is_bpf_link and link.kind == "xdp" and link.target == veth.if_b
        info = link.info()
        ifindex = veth.b.run(resolve_ifindex, veth.if_b)[0]
        assert info["prog_id"] == prog.info().id and info["xdp"]["ifindex"] == ifindex
        state = veth.b.run(xdp_query, veth.if_b)
        assert state.attached == ("generic" if mode else "driver")
        assert state.prog_id == prog.info().id
        check_drops(l2, veth, receivers)
    assert veth.b.run(xdp_query, veth.if_b).attached == "none"
    check_delivered(veth, receivers)


@pytest.mark.parametrize("mode", ["generic", "driver"])
def test_xdp_netlink_counts_and_drops(l2, veth, receivers, mode):
    prog = l2.programs["xdp_count_drop"]
    link = veth.b.run(attach_xdp, prog, veth.if_b, mode=mode, via="netlink")
    with link:
        assert isinstance(link, XDPNetlinkLink) and not link.is_bpf_link
        info = link.info()
        assert info["attached"] == mode and info["prog_id"] == prog.info().id
        check_drops(l2, veth, receivers)
        with pytest.raises(pybpf.NotSupportedError, match="only bpf_link"):
            link.pin("/sys/fs/bpf/never")
    assert veth.b.run(xdp_query, veth.if_b).attached == "none"
    check_delivered(veth, receivers)


def test_xdp_netlink_replace_semantics(l2, veth):
    p1, p2 = l2.programs["xdp_count_drop"], l2.programs["xdp_pass"]
    attach = lambda *a, **kw: veth.b.run(attach_xdp, *a, **kw)  # noqa: E731
    query = lambda: veth.b.run(xdp_query, veth.if_b)  # noqa: E731
    l1 = attach(p1, veth.if_b, mode="generic", via="netlink")
    try:
        # default: never clobber an attached program
        with pytest.raises(pybpf.SyscallError) as ei:
            attach(p2, veth.if_b, mode="generic", via="netlink")
        assert ei.value.errno == errno.EBUSY and "RTM_SETLINK" in str(ei.value)
        # a bpf_link cannot take over a netlink attachment either
        with pytest.raises(pybpf.SyscallError) as ei:
            attach(p2, veth.if_b, mode="generic", via="link")
        assert ei.value.errno == errno.EBUSY and "replace=" in str(ei.value)
        # replace only if the expected program is attached: p2 is not
        with pytest.raises(pybpf.SyscallError) as ei:
            attach(p1, veth.if_b, mode="generic", replace=p2)
        assert ei.value.errno == errno.EEXIST and "expected" in str(ei.value).lower()
        # atomic replace of p1 by p2
        l2_ = attach(p2, veth.if_b, mode="generic", replace=p1)
        with l2_:
            assert query().skb_prog_id == p2.info().id
            l1.close()                      # p1 is no longer attached: leaves p2 alone
            assert query().skb_prog_id == p2.info().id
            l2_.update(p1)                  # atomic swap through the link
            assert query().skb_prog_id == p1.info().id and l2_.program is p1
        assert query().attached == "none"
        # replace=True replaces whatever is there
        l3 = attach(p1, veth.if_b, mode="generic", via="netlink")
        with attach(p2, veth.if_b, mode="generic", replace=True):
            assert query().skb_prog_id == p2.info().id
        l3.close()
        assert query().attached == "none"
    finally:
        l1.close()


def test_xdp_link_update_and_pin(l2, veth, pin_dir):
    p1, p2 = l2.programs["xdp_count_drop"], l2.programs["xdp_pass"]
    link = veth.b.run(p1.attach, veth.if_b)
    pin = pin_dir / "xdp_link"
    try:
        link.update(p2)
        assert veth.b.run(xdp_query, veth.if_b).prog_id == p2.info().id
        link.pin(pin)
    finally:
        link.close()
    # the pin keeps the attachment alive without any fd in this process
    assert veth.b.run(xdp_query, veth.if_b).prog_id == p2.info().id
    os.unlink(pin)
    wait_for(lambda: veth.b.run(xdp_query, veth.if_b).attached == "none", what="XDP detach")


def test_xdp_errors_name_the_interface(l2, veth):
    prog = l2.programs["xdp_count_drop"]
    with pytest.raises(pybpf.SyscallError) as ei:
        veth.b.run(prog.attach, "nosuchif0")
    assert "nosuchif0" in str(ei.value) and ei.value.errno == errno.ENODEV
    with pytest.raises(pybpf.NotSupportedError, match="network interface"):
        prog.attach()
    with pytest.raises(ValueError, match="unknown XDP mode"):
        veth.b.run(prog.attach, veth.if_b, mode="turbo")
    with pytest.raises(pybpf.BPFError, match="not XDP"):
        veth.b.run(attach_xdp, l2.programs["tc_pass"], veth.if_b)
    with pytest.raises(pybpf.BPFError, match="SCHED_CLS"):
        veth.b.run(attach_tc, prog, veth.if_b)
    with pytest.raises(pybpf.BPFError, match="SCHED_CLS"):
        veth.b.run(attach_tcx, prog, veth.if_b, "ingress")


def test_malformed_netlink_attributes_are_parse_errors():
    from pybpf.link.netlink import nla_u32, parse_attrs
    good = nla_u32(6, 42) + nla_u32(7, 1)
    assert parse_attrs(good) == {6: (42).to_bytes(4, "little"), 7: (1).to_bytes(4, "little")}
    with pytest.raises(pybpf.ParseError, match="truncated attribute"):
        parse_attrs(good + (12).to_bytes(2, "little") + (8).to_bytes(2, "little") + bytes(4))


# --- tcx and tc -----------------------------------------------------------------------------

def tcx_query(veth, direction=AttachType.TCX_INGRESS) -> dict:
    ifindex = veth.b.run(resolve_ifindex, veth.if_b)[0]
    return veth.b.run(_sys.prog_query, ifindex, direction)


def test_tcx_counts_drops_and_orders(l2, veth, receivers):
    count_drop, nxt, tc_pass = (l2.programs[n] for n in ("tcx_count_drop", "tcx_next", "tc_pass"))
    with contextlib.ExitStack() as stack:
        l1 = stack.enter_context(veth.b.run(count_drop.attach, veth.if_b))
        assert l1.is_bpf_link and l1.kind == "tcx" and l1.target == f"{veth.if_b}/ingress"
        assert l1.info()["prog_id"] == count_drop.info().id
        check_drops(l2, veth, receivers)
        # ordering: tcx_next first, then tcx_count_drop, then tc_pass (a SEC("tc") program)
        stack.enter_context(veth.b.run(nxt.attach, veth.if_b, before=True))
        stack.enter_context(veth.b.run(attach_tcx, tc_pass, veth.if_b, "ingress", after=l1))
        q = tcx_query(veth)
        assert q["prog_ids"] == [p.info().id for p in (nxt, count_drop, tc_pass)]
        with pytest.raises(pybpf.SyscallError) as ei:   # the list changed since revision - 1
            veth.b.run(attach_tcx, l2.programs["tc_count_drop"], veth.if_b, "ingress",
                       expected_revision=q["revision"] - 1)
        assert ei.value.errno == errno.ESTALE
        check_drops(l2, veth, receivers)
    assert tcx_query(veth)["prog_ids"] == []
    check_delivered(veth, receivers)


def tc_show(veth, what: str) -> str:
    return veth.b.exec("tc", *what.split(), "dev", veth.if_b).stdout


def test_tc_netlink_clsact_direct_action(l2, veth, receivers):
    prog = l2.programs["tc_count_drop"]
    link = veth.b.run(prog.attach, veth.if_b)          # SEC("tc"): netlink, ingress
    with link:
        assert isinstance(link, TCNetlinkLink) and link.kind == "tc" and link.owns_qdisc
        info = link.info()
        assert info["prog_id"] == prog.info().id and info["direct_action"]
        assert info["handle"] and info["priority"]
        shown = tc_show(veth, "filter show ingress")
        assert "direct-action" in shown and "tc_count_drop" in shown
        assert "clsact" in tc_show(veth, "qdisc show")
        check_drops(l2, veth, receivers)
        link.update(l2.programs["tc_pass"])             # replace the filter's program in place
        assert link.info()["prog_id"] == l2.programs["tc_pass"].info().id
        check_delivered(veth, receivers)
    assert veth.b.run(tc_filters, veth.if_b) == []
    assert "clsact" not in tc_show(veth, "qdisc show")


def test_tcx_forced_netlink_fallback_and_shared_qdisc(l2, veth, receivers):
    prog = l2.programs["tcx_count_drop"]
    first = veth.b.run(attach_tcx, prog, veth.if_b, via="netlink")
    try:
        assert isinstance(first, TCNetlinkLink) and first.direction == "ingress"
        second = veth.b.run(attach_tc, l2.programs["tc_pass"], veth.if_b, "egress",
                            priority=7, handle=3)
        with second:
            assert not second.owns_qdisc and (second.priority, second.handle) == (7, 3)
            check_drops(l2, veth, receivers)
            with pytest.raises(pybpf.SyscallError) as ei:     # same handle/priority taken
                veth.b.run(attach_tc, prog, veth.if_b, "egress", priority=7, handle=3)
            assert ei.value.errno == errno.EEXIST
        # the egress filter is gone; the qdisc stays while first's filter is there
        assert veth.b.run(tc_filters, veth.if_b, "egress") == []
        assert "clsact" in tc_show(veth, "qdisc show")
    finally:
        first.close()
    assert "clsact" not in tc_show(veth, "qdisc show")
    check_delivered(veth, receivers)


# --- netfilter ------------------------------------------------------------------------------

def test_netfilter_local_out_drop(l2, veth, receivers):
    prog = l2.programs["nf_count_drop"]
    rd, rp = receivers
    with veth.a.run(prog.attach, "local_out", pf="ipv4", priority=-128) as link:
        assert link.is_bpf_link and link.kind == "netfilter"
        nf = link.info()["netfilter"]
        assert (nf["pf"], nf["hooknum"], nf["priority"]) == (2, 3, -128)
        # NF_DROP at LOCAL_OUT makes sendto() fail with EPERM
        assert veth.a.run(send_udp, veth.ip_b, DROP_PORT, 2) == [errno.EPERM] * 2
        assert veth.a.run(send_udp, veth.ip_b, PASS_PORT, 3) == [0] * 3
        assert len(drain(rp, 3)) == 3
        assert counts(l2) == (2, 3)
    check_delivered(veth, receivers)
    with pytest.raises(ValueError, match="unknown netfilter hook"):
        attach_netfilter(prog, "sideways")


# --- cgroups --------------------------------------------------------------------------------

@pytest.fixture
def cgroup(request) -> Iterator[Path]:
    """A fresh cgroup v2 directory, removed afterwards (its processes are gone by then)."""
    if not (CGROUP2 / "cgroup.procs").exists():
        pytest.skip(f"no cgroup2 mount at {CGROUP2}")
    path = CGROUP2 / f"pybpf-test-{os.getpid()}-{request.node.name[:30]}".replace("[", "-").replace("]", "")
    path.mkdir()
    try:
        yield path
    finally:
        for pid in (path / "cgroup.procs").read_text().split():   # normally none left
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)
        wait_for(lambda: not (path / "cgroup.procs").read_text().strip(), what="empty cgroup")
        path.rmdir()


def in_cgroup(cg: Path, fn: Callable[[], Any], timeout: float = 10.0) -> Any:
    """Run ``fn`` in a forked child moved into cgroup ``cg``; its (pickled) result."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:   # child: never returns into pytest
        try:
            os.close(r)
            (cg / "cgroup.procs").write_text(str(os.getpid()))
            try:
                res: Any = ("ok", fn())
            except BaseException as e:
                res = ("error", f"{type(e).__name__}: {e}")
            os.write(w, pickle.dumps(res))
        finally:
            os._exit(0)
    os.close(w)
    try:
        ready, _, _ = select.select([r], [], [], timeout)
        data = b""
        if ready:
            while chunk := os.read(r, 65536):
                data += chunk
    finally:
        os.close(r)
        if not data:
            os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    assert data, f"child in {cg} timed out"
    status, value = pickle.loads(data)
    assert status == "ok", value
    return value


def errno_of(fn: Callable[[], Any]) -> int:
    try:
        fn()
    except OSError as e:
        return e.errno or -1
    return 0


def udp_to_self(n: int) -> int:
    """Send n datagrams over loopback to a socket of our own; how many arrived."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as rx, \
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
        rx.bind(("127.0.0.1", 0))
        rx.settimeout(2)
        for i in range(n):
            tx.sendto(b"x" * 10, rx.getsockname())
        return sum(1 for _ in range(n) if rx.recv(100))


@pytest.fixture
def cg_coll(bpf_objects):
    with pybpf.load(bpf_objects["net_cgroup"]) as coll:
        yield coll


@pytest.mark.parametrize("via", ["auto", "attach"])
def test_cgroup_skb_counts_packets_of_the_cgroup(cg_coll, cgroup, via):
    v = cg_coll.variables
    with attach_cgroup(cg_coll.programs["cg_egress"], cgroup, via=via) as eg, \
            cg_coll.programs["cg_ingress"].attach(str(cgroup), via=via):
        assert eg.is_bpf_link == (via == "auto") and eg.target == str(cgroup)
        cg_fd = os.open(cgroup, os.O_RDONLY | os.O_DIRECTORY)
        try:
            q = _sys.prog_query(cg_fd, AttachType.CGROUP_INET_EGRESS)
            assert q["prog_ids"] == [cg_coll.programs["cg_egress"].info().id]
        finally:
            os.close(cg_fd)
        udp_to_self(3)                                   # outside the cgroup: not counted
        assert v["egress_packets"].value == 0
        assert in_cgroup(cgroup, lambda: udp_to_self(5)) == 5
        assert v["egress_packets"].value == 5 and v["ingress_packets"].value == 5
        assert v["egress_bytes"].value == 5 * (20 + 8 + 10)    # IPv4 + UDP headers + payload
    assert in_cgroup(cgroup, lambda: udp_to_self(2)) == 2
    assert v["egress_packets"].value == 5
    cg_fd = os.open(cgroup, os.O_RDONLY | os.O_DIRECTORY)
    try:
        assert _sys.prog_query(cg_fd, AttachType.CGROUP_INET_EGRESS)["prog_ids"] == []
    finally:
        os.close(cg_fd)


def test_cgroup_connect4_rewrites_the_destination_port(cg_coll, cgroup):
    port_a = free_tcp_port()                             # nothing listens here
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(4)
        listener.settimeout(5)
        port_b = listener.getsockname()[1]
        cg_coll.variables["from_port"].value = port_a
        cg_coll.variables["to_port"].value = port_b

        def connect_and_send() -> int:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as c:
                err = errno_of(lambda: c.connect(("127.0.0.1", port_a)))
                if not err:
                    c.sendall(b"hello via connect4")
                return err

        with cg_coll.programs["cg_connect4"].attach(cgroup):
            assert in_cgroup(cgroup, connect_and_send) == 0
            conn, _ = listener.accept()
            with conn:
                assert conn.recv(100) == b"hello via connect4"
            assert cg_coll.variables["connects_rewritten"].value == 1
        assert in_cgroup(cgroup, connect_and_send) == errno.ECONNREFUSED


def _sock_create() -> tuple:
    return (errno_of(lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM).close()),
            errno_of(lambda: socket.socket(socket.AF_INET, socket.SOCK_STREAM).close()))


def _sysctl() -> tuple:
    return (errno_of(lambda: Path("/proc/sys/kernel/ostype").read_text()),
            errno_of(lambda: Path("/proc/sys/kernel/osrelease").read_text()))


def _dev() -> tuple:
    return (errno_of(lambda: os.close(os.open("/dev/null", os.O_RDONLY))),
            errno_of(lambda: os.close(os.open("/dev/zero", os.O_RDONLY))))


def _setsockopt() -> tuple:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        return (errno_of(lambda: s.setsockopt(socket.SOL_SOCKET, socket.SO_PRIORITY, 3)),
                errno_of(lambda: s.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)))


def _bind4(port: int) -> tuple:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as a, \
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as b:
        return (errno_of(lambda: a.bind(("127.0.0.1", port))),
                errno_of(lambda: b.bind(("127.0.0.1", 0))))


@pytest.mark.parametrize("prog, action, counter", [
    ("cg_sock_create", _sock_create, "sock_creates_denied"),
    ("cg_sysctl", _sysctl, "sysctl_reads_denied"),
    ("cg_dev", _dev, "dev_denied"),
    ("cg_setsockopt", _setsockopt, "setsockopt_denied"),
    ("cg_bind4", "bind4", "binds_denied"),
])
def test_cgroup_hooks_deny_in_the_cgroup_only(cg_coll, cgroup, prog, action, counter):
    """Each program denies one operation (EPERM) and allows a similar one, for the
    processes of the cgroup only, and only while attached."""
    if action == "bind4":
        port = free_tcp_port()
        cg_coll.variables["denied_port"].value = port
        action = lambda: _bind4(port)  # noqa: E731
    with cg_coll.programs[prog].attach(cgroup) as link:
        assert link.info()["prog_id"] == cg_coll.programs[prog].info().id
        assert action() == (0, 0)                        # this process is not in the cgroup
        assert in_cgroup(cgroup, action) == (errno.EPERM, 0)
        assert cg_coll.variables[counter].value == 1
    assert in_cgroup(cgroup, action) == (0, 0)


def test_cgroup_attach_type_and_errors(cg_coll, cgroup, pin_dir):
    prog = cg_coll.programs["cg_skb_any"]                # SEC("cgroup/skb"): no attach type
    with pytest.raises(pybpf.NotSupportedError, match="attach_type="):
        prog.attach(cgroup)
    with prog.attach(cgroup, attach_type="egress") as link:
        assert link.info()["cgroup"]["attach_type"] == AttachType.CGROUP_INET_EGRESS
        link.pin(pin_dir / "cg")
    # pinned: still attached after close, until the pin goes
    cg_fd = os.open(cgroup, os.O_RDONLY | os.O_DIRECTORY)
    try:
        assert _sys.prog_query(cg_fd, AttachType.CGROUP_INET_EGRESS)["prog_ids"] == [prog.info().id]
        os.unlink(pin_dir / "cg")
        wait_for(lambda: not _sys.prog_query(cg_fd, AttachType.CGROUP_INET_EGRESS)["prog_ids"],
                 what="cgroup link release")
    finally:
        os.close(cg_fd)
    with pytest.raises(pybpf.SyscallError) as ei:
        prog.attach(cgroup / "does-not-exist", attach_type="egress")
    assert "does-not-exist" in str(ei.value) and ei.value.errno == errno.ENOENT
    with pytest.raises(pybpf.SyscallError) as ei:
        prog.attach("/proc", attach_type="egress")          # a directory, not a cgroup
    assert ei.value.errno == errno.EBADF and "cgroup v2" in str(ei.value)
    with pytest.raises(pybpf.NotSupportedError, match="cgroup v2 directory"):
        prog.attach()


# --- socket filter, sk_msg, sk_skb ----------------------------------------------------------

@pytest.fixture
def sock_coll(bpf_objects):
    with pybpf.load(bpf_objects["net_sock"]) as coll:
        yield coll


def test_socket_filter_drops_and_trims_on_a_socketpair(sock_coll):
    prog = sock_coll.programs["sock_filter"]
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    with a, b:
        b.settimeout(2)
        with prog.attach(b) as link:
            assert link.kind == "socket" and not link.is_bpf_link
            a.send(b"Drop me")
            a.send(b"keep only four bytes")
            assert b.recv(100) == b"keep"                # trimmed; "Drop me" never arrived
            assert sock_coll.variables["filter_dropped"].value == 1
            assert sock_coll.variables["filter_trimmed"].value == 1
        a.send(b"Drop me too")                           # detached: delivered whole
        assert b.recv(100) == b"Drop me too"
        # an fd works as well as a socket object; closing after the socket is harmless
        link = attach_socket_filter(prog, b.fileno())
    link.close()
    with pytest.raises(pybpf.SyscallError, match="SO_ATTACH_BPF"):
        attach_socket_filter(sock_coll.programs["skb_verdict"], socket.socket())


@pytest.mark.parametrize("via", ["auto", "attach"])
def test_sk_msg_verdicts_and_redirect_on_a_sockmap(sock_coll, via):
    prog, smap = sock_coll.programs["msg_verdict"], sock_coll.maps["sock_map"]
    v = sock_coll.variables
    client, server = tcp_pair()
    with client, server, prog.attach(smap, via=via) as link:
        assert link.kind == "sk_msg" and link.is_bpf_link == (via == "auto")
        q = _sys.prog_query(smap.fd, AttachType.SK_MSG_VERDICT)
        assert q["prog_ids"] == [prog.info().id]
        smap[0] = client.fileno()                        # insert after attaching
        client.settimeout(2)
        server.settimeout(2)
        client.sendall(b"hello")
        assert server.recv(100) == b"hello"
        client.sendall(b"Redirected to my own ingress")
        assert client.recv(100) == b"Redirected to my own ingress"
        # SK_DROP: sendmsg fails with EACCES (and, in the kernel, so do later sends on it)
        with pytest.raises(PermissionError):
            client.send(b"X no")
        assert (v["msg_passed"].value, v["msg_dropped"].value, v["msg_redirected"].value) == (1, 1, 1)
        del smap[0]
    assert _sys.prog_query(smap.fd, AttachType.SK_MSG_VERDICT)["prog_ids"] == []


@pytest.mark.parametrize("via", ["auto", "attach"])
def test_sk_skb_stream_verdict_on_a_sockhash(sock_coll, via):
    prog, shash = sock_coll.programs["skb_verdict"], sock_coll.maps["sock_hash"]
    client, server = tcp_pair()
    with client, server, attach_sockmap(prog, shash, via=via):
        shash[7] = server.fileno()
        server.settimeout(2)
        client.sendall(b"hello sockhash")
        got = b""
        while len(got) < 14:
            got += server.recv(100)
        assert got == b"hello sockhash"
        wait_for(lambda: sock_coll.variables["skb_bytes"].value == 14, what="skb_bytes")
        del shash[7]
    assert _sys.prog_query(shash.fd, AttachType.SK_SKB_STREAM_VERDICT)["prog_ids"] == []


def test_sk_skb_needs_an_attach_type(sock_coll):
    prog, smap = sock_coll.programs["skb_any"], sock_coll.maps["sock_map"]
    with pytest.raises(pybpf.NotSupportedError, match="attach_type="):
        prog.attach(smap)
    with prog.attach(smap, attach_type="SK_SKB_VERDICT"):
        assert _sys.prog_query(smap.fd, AttachType.SK_SKB_VERDICT)["prog_ids"] == [prog.info().id]
    with pytest.raises(pybpf.NotSupportedError, match="sockmap or sockhash"):
        prog.attach()
    with pytest.raises(pybpf.SyscallError):              # not a sockmap
        sock_coll.programs["msg_verdict"].attach(sock_coll.maps[".bss"])


def test_prog_attach_link_update_and_info(cg_coll, cgroup):
    egress, any_skb = cg_coll.programs["cg_egress"], cg_coll.programs["cg_skb_any"]
    with attach_cgroup(egress, cgroup, via="attach") as link:
        assert isinstance(link, ProgAttachLink)
        info = link.info()
        assert info["prog_ids"] == [egress.info().id] == [info["prog_id"]]
        link.update(any_skb)                             # BPF_F_REPLACE: atomic swap
        assert link.info()["prog_ids"] == [any_skb.info().id] and link.program is any_skb
    assert link.closed
    cg_fd = os.open(cgroup, os.O_RDONLY | os.O_DIRECTORY)
    try:
        assert _sys.prog_query(cg_fd, AttachType.CGROUP_INET_EGRESS)["prog_ids"] == []
    finally:
        os.close(cg_fd)


def test_dropped_netlink_links_detach(l2, veth):
    """A netlink attachment is held by the interface, not by an fd: a Link that is
    garbage collected without close() still detaches."""
    import gc
    veth.b.run(attach_xdp, l2.programs["xdp_pass"], veth.if_b, via="netlink")
    veth.b.run(attach_tc, l2.programs["tc_pass"], veth.if_b, "egress")
    gc.collect()
    assert veth.b.run(xdp_query, veth.if_b).attached == "none"
    assert veth.b.run(tc_filters, veth.if_b, "egress") == []


_EXIT_SCRIPT = """
import sys
sys.path.insert(0, {root!r})
import pybpf
from pybpf.link.cgroup import ProgAttachLink, attach_cgroup
from pybpf.link.tc import attach_tc
from pybpf.link.xdp import attach_xdp
from tests.kernel.netns import NetNS
ns = NetNS({ns!r})
l2 = pybpf.load({l2!r})
cg = pybpf.load({cg!r})
keep = [ns.run(attach_xdp, l2.programs["xdp_pass"], "veth1", mode="generic", via="netlink"),
        ns.run(attach_tc, l2.programs["tc_pass"], "veth1", "ingress"),
        attach_cgroup(cg.programs["cg_egress"], {cgroup!r}, via="attach")]
print("attached", flush=True)
# exit without closing anything
"""


def test_attachments_without_fds_detach_at_interpreter_exit(bpf_objects, veth, cgroup):
    root = str(Path(__file__).resolve().parents[2])
    script = _EXIT_SCRIPT.format(root=root, ns=veth.b.name, l2=str(bpf_objects["net_l2"]),
                                 cg=str(bpf_objects["net_cgroup"]), cgroup=str(cgroup))
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == "attached", r.stderr
    assert veth.b.run(xdp_query, veth.if_b).attached == "none"
    assert veth.b.run(tc_filters, veth.if_b) == []
    assert "clsact" not in tc_show(veth, "qdisc show")
    cg_fd = os.open(cgroup, os.O_RDONLY | os.O_DIRECTORY)
    try:
        assert _sys.prog_query(cg_fd, AttachType.CGROUP_INET_EGRESS)["prog_ids"] == []
    finally:
        os.close(cg_fd)


def test_auto_attach_registrations():
    from pybpf.link.base import ATTACHERS   # the families register when imported (above)
    for kind in ("xdp", "tcx", "tc", "cgroup", "socket", "sk_msg", "sk_skb", "netfilter"):
        assert kind in ATTACHERS, kind


def test_no_namespaces_left():
    assert not leftover_namespaces()
