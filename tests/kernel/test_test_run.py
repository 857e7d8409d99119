"""Program.test_run (BPF_PROG_TEST_RUN) for xdp, tc, socket filter, raw_tp, syscall and
flow dissector programs: data in/out, context in/out, repeat and duration."""

from __future__ import annotations

import errno
import os
import socket
import struct

import pytest

import pybpf
from pybpf.btf.codec import codec_for
from pybpf.btf.types import Kind
from pybpf.consts import TestRunFlags as RunFlags

pytestmark = pytest.mark.kernel

XDP_ABORTED, XDP_DROP, XDP_PASS, XDP_TX = 0, 1, 2, 3
TC_ACT_OK = 0
BPF_OK = 0

MAC_A = bytes.fromhex("020000000001")
MAC_B = bytes.fromhex("020000000002")


def ipv4_udp(src: str = "10.0.0.1", dst: str = "10.0.0.2", sport: int = 1234,
             dport: int = 5678, payload: bytes = b"payload!") -> bytes:
    """An Ethernet + IPv4 + UDP frame (checksums left zero: nothing here checks them)."""
    udp = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, socket.IPPROTO_UDP, 0,
                     socket.inet_aton(src), socket.inet_aton(dst))
    return MAC_B + MAC_A + b"\x08\x00" + ip + udp


@pytest.fixture(scope="module")
def tr(bpf_objects):
    with pybpf.load(bpf_objects["net_testrun"]) as coll:
        yield coll


def struct_codec(coll, name: str):
    """Codec of ``struct name`` from the object's BTF (encodes dicts, decodes records)."""
    btf = coll.spec.btf
    return codec_for(btf, btf.find_one(name, Kind.STRUCT))


def test_xdp_data_in_out(tr):
    pkt = ipv4_udp()
    r = tr.programs["tr_xdp_swap"].test_run(pkt, data_size_out=len(pkt) + 64)
    assert r.retval == XDP_TX
    assert r.data_out == MAC_A + MAC_B + pkt[12:]          # addresses swapped, rest unchanged


def test_xdp_data_out_grows(tr):
    pkt = ipv4_udp()
    r = tr.programs["tr_xdp_grow"].test_run(pkt, data_size_out=len(pkt) + 64)
    assert r.retval == XDP_PASS and r.data_out == b"\xde\xad\xbe\xef" + pkt


def test_xdp_data_out_too_small_is_an_error(tr):
    pkt = ipv4_udp()
    with pytest.raises(pybpf.SyscallError) as ei:
        tr.programs["tr_xdp_grow"].test_run(pkt, data_size_out=len(pkt))
    assert ei.value.errno == errno.ENOSPC and "tr_xdp_grow" in str(ei.value)


def test_xdp_ctx_in_out(tr):
    """xdp_md in/out: the kernel reports where data starts and ends (ctx_out)."""
    pkt = ipv4_udp()
    xdp_md = struct_codec(tr, "xdp_md")
    ctx_in = xdp_md.encode({"data": 0, "data_end": len(pkt)})
    r = tr.programs["tr_xdp_grow"].test_run(pkt, ctx_in=ctx_in, ctx_size_out=len(ctx_in),
                                            data_size_out=len(pkt) + 64)
    out = xdp_md.decode(r.ctx_out)
    assert r.retval == XDP_PASS and out.data_end - out.data == len(pkt) + 4


def test_repeat_and_duration(tr):
    runs = tr.variables["xdp_runs"]
    before = runs.value
    r = tr.programs["tr_xdp_busy"].test_run(ipv4_udp(), repeat=500)
    assert r.retval == XDP_DROP
    assert runs.value - before == 500
    assert 0 < r.duration_ns < 10_000_000                   # average per run, in ns
    single = tr.programs["tr_xdp_busy"].test_run(ipv4_udp())  # repeat 0 means once
    assert runs.value - before == 501 and single.retval == XDP_DROP


def test_tc_skb_ctx_in_out(tr):
    pkt = ipv4_udp()
    skb = struct_codec(tr, "__sk_buff")
    ctx_in = skb.encode({"mark": 41, "cb": [0, 5, 0, 0, 0]})
    r = tr.programs["tr_tc_ctx"].test_run(pkt, ctx_in=ctx_in, ctx_size_out=len(ctx_in),
                                          data_size_out=len(pkt))
    assert r.retval == TC_ACT_OK and r.data_out == pkt
    out = skb.decode(r.ctx_out)
    assert out.mark == 42 and out.priority == 7
    assert out.cb[:2] == [len(pkt), 5]                      # cb[0] = skb->len, cb[1] kept
    with pytest.raises(pybpf.SyscallError) as ei:          # fields the kernel does not take
        tr.programs["tr_tc_ctx"].test_run(pkt, ctx_in=skb.encode({"len": 1}))
    assert ei.value.errno == errno.EINVAL


def test_socket_filter(tr):
    prog = tr.programs["tr_socket"]
    # EtherType 0x88b5 (local experimental): the kernel would check an IPv4 header's length
    pkt = MAC_B + MAC_A + b"\x88\xb5" + b"keep this one"
    r = prog.test_run(pkt, data_size_out=len(pkt))
    assert r.retval == 8                                    # bytes to keep
    # a socket filter sees the packet from the network header: the MAC header comes back zeroed
    assert r.data_out == bytes(14) + pkt[14:]
    assert prog.test_run(MAC_B + MAC_A + b"\x88\xb5" + b"drop this one").retval == 0


def test_raw_tp_ctx_and_cpu(tr):
    prog = tr.programs["tr_raw_tp"]
    r = prog.test_run(ctx_in=struct.pack("=QQ", 20, 22))
    assert r.retval == 40 and tr.variables["raw_tp_sum"].value == 42
    cpu = os.cpu_count() - 1
    r = prog.test_run(ctx_in=struct.pack("=QQ", 1, 2), flags=RunFlags.TEST_RUN_ON_CPU, cpu=cpu)
    assert r.retval == 2 and tr.variables["raw_tp_cpu"].value == cpu
    with pytest.raises(pybpf.SyscallError) as ei:          # raw_tp runs do not repeat
        prog.test_run(ctx_in=struct.pack("=QQ", 1, 2), repeat=2)
    assert ei.value.errno == errno.EINVAL


def test_syscall_ctx_in_out(tr):
    args = struct_codec(tr, "tr_args")
    buf = bytearray(args.encode({"a": 6, "b": 7, "sum": 0}))
    r = tr.programs["tr_syscall"].test_run(ctx_in=buf)
    assert r.retval == 42
    # The kernel writes a syscall program's context back over ctx_in (it has no ctx_out).
    out = args.decode(r.ctx_out or bytes(buf))
    assert (out.a, out.b, out.sum) == (6, 7, 13)


def test_flow_dissector(tr):
    pkt = ipv4_udp(src="192.0.2.1", dst="198.51.100.7", sport=4242, dport=53)
    keys = struct_codec(tr, "bpf_flow_keys")
    size = tr.spec.btf.sizeof(tr.spec.btf.find_one("bpf_flow_keys", Kind.STRUCT))
    r = tr.programs["tr_flow"].test_run(pkt, data_size_out=size, repeat=10)
    assert r.retval == BPF_OK
    k = keys.decode(r.data_out)                             # the flow keys come back as data_out
    assert (k.nhoff, k.thoff, k.ip_proto) == (14, 34, socket.IPPROTO_UDP)
    assert (socket.ntohs(k.sport), socket.ntohs(k.dport)) == (4242, 53)
    assert socket.inet_ntoa(r.data_out[16:20]) == "192.0.2.1"   # ipv4_src/dst: an anonymous union
    assert socket.inet_ntoa(r.data_out[20:24]) == "198.51.100.7"
    assert tr.programs["tr_flow"].test_run(pkt[:20], data_size_out=size).retval != BPF_OK


def test_unsupported_program_type_names_the_program(bpf_objects):
    with pybpf.load(bpf_objects["net_cgroup"]) as coll:
        with pytest.raises(pybpf.SyscallError) as ei:
            coll.programs["cg_sock_create"].test_run(ipv4_udp())
    assert "cg_sock_create" in str(ei.value) and "BPF_PROG_TEST_RUN" in str(ei.value)


def test_closed_program_is_named(bpf_objects):
    """Using a program after its collection is closed names the program, not just an fd."""
    coll = pybpf.load(bpf_objects["net_testrun"])
    prog = coll.programs["tr_xdp_swap"]
    coll.close()
    for op in (lambda: prog.test_run(ipv4_udp()), lambda: prog.fd):
        with pytest.raises(pybpf.SyscallError, match="program tr_xdp_swap was closed"):
            op()
