"""pybpf.sys against the running kernel: real bpf(2), perf_event_open(2), mmap and bpffs.

Programs are hand-assembled instruction bytes, so these tests need no compiler.
The only fakes are backends that inject faults the kernel cannot be made to
produce on demand (EINTR, EAGAIN, EPERM as root), each delegating to the kernel.
"""

from __future__ import annotations

import errno
import gc
import mmap as _mmap
import os
import struct
from typing import List

import pytest

from pybpf import sys as bsys
from pybpf.consts import (
    BPF_PSEUDO_MAP_FD, AttachFlags, AttachType, Cmd, LinkType, MapFlags, MapType, PerfSwId,
    PerfType, ProgType, StatsType, TaskFdType, UpdateFlags, PERF_ATTR_FLAG_DISABLED,
)
from pybpf.errors import (
    KeyExistsError, KeyNotFoundError, PermissionDeniedError, SyscallError,
)
from pybpf.sys._libc import ffi
from tests.conftest import fd_count

pytestmark = pytest.mark.kernel


# -- helpers --------------------------------------------------------------------------------

def insn(code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
    return struct.pack("<BBhi", code, (src << 4) | dst, off, imm)


def mov64_imm(dst: int, imm: int) -> bytes:
    return insn(0xB7, dst, imm=imm)            # BPF_ALU64 | BPF_MOV | BPF_K


EXIT = insn(0x95)                               # BPF_JMP | BPF_EXIT


def ld_map_fd(dst: int, fd: int) -> bytes:
    return insn(0x18, dst, BPF_PSEUDO_MAP_FD, imm=fd) + insn(0)  # BPF_LD | BPF_IMM | BPF_DW


RET7 = mov64_imm(0, 7) + EXIT


def u32(n: int) -> bytes:
    return n.to_bytes(4, "little")


def u64(n: int) -> bytes:
    return n.to_bytes(8, "little")


def is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError as e:
        assert e.errno == errno.EBADF
        return False
    return True


@pytest.fixture
def hmap():
    with bsys.map_create(MapType.HASH, 4, 8, 64, map_name="pybpf_test") as fd:
        yield fd.fileno()


def load(insns: bytes = RET7, prog_type: int = ProgType.SOCKET_FILTER, **kw) -> bsys.FD:
    return bsys.prog_load(prog_type, insns, "GPL", **kw)


# -- maps -----------------------------------------------------------------------------------

def test_hash_map_element_operations(hmap: int) -> None:
    assert hmap >= 3
    bsys.map_update_elem(hmap, u32(1), u64(11))
    bsys.map_update_elem(hmap, u32(2), u64(22), UpdateFlags.NOEXIST)
    out = bytearray(8)
    bsys.map_lookup_elem(hmap, u32(2), out)
    assert out == u64(22)
    bsys.map_update_elem(hmap, u32(2), u64(23), UpdateFlags.EXIST)
    bsys.map_lookup_elem(hmap, u32(2), out)
    assert out == u64(23)

    keys = []
    nk = bytearray(4)
    key = None
    while True:
        try:
            bsys.map_get_next_key(hmap, key, nk)
        except KeyNotFoundError:
            break
        keys.append(int.from_bytes(nk, "little"))
        key = bytes(nk)
    assert sorted(keys) == [1, 2]

    bsys.map_delete_elem(hmap, u32(1))
    with pytest.raises(KeyNotFoundError):
        bsys.map_delete_elem(hmap, u32(1))
    bsys.map_lookup_and_delete_elem(hmap, u32(2), out)
    assert out == u64(23)
    with pytest.raises(KeyNotFoundError):
        bsys.map_get_next_key(hmap, None, nk)


def test_errors_name_the_command_and_context(hmap: int) -> None:
    with pytest.raises(KeyNotFoundError) as ei:
        bsys.map_lookup_elem(hmap, u32(99), bytearray(8), context="map counts")
    e = ei.value
    assert isinstance(e, KeyError) and isinstance(e, SyscallError)
    assert e.errno == errno.ENOENT and e.call == "BPF_MAP_LOOKUP_ELEM"
    assert str(e).startswith("map counts: BPF_MAP_LOOKUP_ELEM:")

    bsys.map_update_elem(hmap, u32(5), u64(5))
    with pytest.raises(KeyExistsError) as ei2:
        bsys.map_update_elem(hmap, u32(5), u64(6), UpdateFlags.NOEXIST)
    assert ei2.value.call == "BPF_MAP_UPDATE_ELEM"
    with pytest.raises(KeyNotFoundError):
        bsys.map_update_elem(hmap, u32(6), u64(6), UpdateFlags.EXIST)

    with pytest.raises(SyscallError) as ei3:
        bsys.map_lookup_elem(987654, u32(1), bytearray(8))
    assert ei3.value.errno == errno.EBADF and not isinstance(ei3.value, KeyError)


def test_map_full_and_bad_create() -> None:
    with bsys.map_create(MapType.HASH, 4, 4, 1) as fd:
        bsys.map_update_elem(fd.fileno(), u32(1), u32(1))
        with pytest.raises(SyscallError) as ei:
            bsys.map_update_elem(fd.fileno(), u32(2), u32(2))
        assert ei.value.errno == errno.E2BIG and "full" in str(ei.value)
    with pytest.raises(SyscallError) as ei2:
        bsys.map_create(MapType.HASH, 0, 4, 1, context="map broken")
    assert ei2.value.errno == errno.EINVAL and "map broken: BPF_MAP_CREATE" in str(ei2.value)


def test_batch_operations(hmap: int) -> None:
    n = 40
    keys = b"".join(u32(i) for i in range(n))
    values = b"".join(u64(i * 10) for i in range(n))
    assert bsys.map_update_batch(hmap, keys, values, n) == n

    seen = {}
    in_batch = None
    out_batch = bytearray(4)
    while True:
        kbuf, vbuf = bytearray(4 * 16), bytearray(8 * 16)
        count, done = bsys.map_lookup_batch(hmap, in_batch, out_batch, kbuf, vbuf, 16)
        for i in range(count):
            seen[int.from_bytes(kbuf[4 * i:4 * i + 4], "little")] = \
                int.from_bytes(vbuf[8 * i:8 * i + 8], "little")
        if done:
            break
        in_batch = bytes(out_batch)
    assert seen == {i: i * 10 for i in range(n)}

    assert bsys.map_delete_batch(hmap, keys[:4 * 10], 10) == 10
    with pytest.raises(SyscallError) as ei:
        bsys.map_delete_batch(hmap, u32(0) + u32(10), 2)   # 0 is gone
    assert ei.value.errno == errno.ENOENT and ei.value.count == 0  # type: ignore[attr-defined]

    kbuf, vbuf = bytearray(4 * 64), bytearray(8 * 64)
    count, done = bsys.map_lookup_and_delete_batch(hmap, None, bytearray(4), kbuf, vbuf, 64)
    assert count == n - 10 and done
    with pytest.raises(KeyNotFoundError):
        bsys.map_get_next_key(hmap, None, bytearray(4))


def test_large_values_and_percpu_buffers() -> None:
    size = 100_000                        # larger than the scratch buffers kept for reuse
    with bsys.map_create(MapType.ARRAY, 4, size, 2) as fd:
        value = bytes(range(256)) * (size // 256) + bytes(size % 256)
        bsys.map_update_elem(fd.fileno(), u32(1), value)
        out = bytearray(size)
        bsys.map_lookup_elem(fd.fileno(), u32(1), out)
        assert out == value
    with open("/sys/devices/system/cpu/possible") as f:
        ncpu = int(f.read().strip().split(",")[-1].split("-")[-1]) + 1
    with bsys.map_create(MapType.PERCPU_ARRAY, 4, 4, 1) as fd:   # one 8-byte slot per CPU
        value = b"".join(u32(cpu) + u32(0) for cpu in range(ncpu))
        bsys.map_update_elem(fd.fileno(), u32(0), value)
        out = bytearray(8 * ncpu)
        bsys.map_lookup_elem(fd.fileno(), u32(0), out)
        assert out == value


def test_freeze_and_mmapable_array() -> None:
    with bsys.map_create(MapType.ARRAY, 4, 8, 4, map_flags=MapFlags.MMAPABLE) as fd:
        m = bsys.mmap(fd.fileno(), bsys.PAGE_SIZE, _mmap.PROT_READ | _mmap.PROT_WRITE)
        view = memoryview(m).cast("Q")
        view[2] = 0xDEADBEEF
        out = bytearray(8)
        bsys.map_lookup_elem(fd.fileno(), u32(2), out)
        assert int.from_bytes(out, "little") == 0xDEADBEEF
        with pytest.raises(BufferError):
            m.close()                     # cannot unmap under a live view
        view.release()
        m.close()
        bsys.map_freeze(fd.fileno())
        with pytest.raises(PermissionDeniedError) as ei:
            bsys.map_update_elem(fd.fileno(), u32(0), u64(1))
        assert ei.value.call == "BPF_MAP_UPDATE_ELEM"


def test_info_and_ids(hmap: int) -> None:
    info = bsys.map_info(hmap)
    assert info["name"] == "pybpf_test" and info["type"] == MapType.HASH
    assert (info["key_size"], info["value_size"], info["max_entries"]) == (4, 8, 64)
    ids = []
    i = bsys.map_get_next_id(0)
    while i is not None:
        ids.append(i)
        i = bsys.map_get_next_id(i)
    assert info["id"] in ids
    with bsys.map_get_fd_by_id(info["id"]) as fd2:
        assert fd2.fileno() != hmap and bsys.map_info(fd2.fileno())["id"] == info["id"]
    raw = bsys.obj_get_info_by_fd(hmap, "bpf_map_info")
    assert raw.id == info["id"] and bsys.cstring(raw.name) == "pybpf_test"


# -- pinning --------------------------------------------------------------------------------

def test_pin_and_get(hmap: int, pin_dir) -> None:
    path = pin_dir / "m"
    bsys.obj_pin(hmap, path)
    assert bsys.is_bpffs(path) and not bsys.is_bpffs("/tmp")
    with bsys.obj_get(str(path)) as fd:
        assert bsys.map_info(fd.fileno())["id"] == bsys.map_info(hmap)["id"]
    with bsys.obj_get(path, MapFlags.RDONLY) as ro:
        with pytest.raises(PermissionDeniedError):
            bsys.map_update_elem(ro.fileno(), u32(1), u64(1))
    with pytest.raises(SyscallError) as ei:
        bsys.obj_pin(hmap, path)
    assert ei.value.errno == errno.EEXIST and str(path) in str(ei.value)
    with pytest.raises(SyscallError) as ei2:
        bsys.obj_get(pin_dir / "absent")
    assert ei2.value.errno == errno.ENOENT and not isinstance(ei2.value, KeyError)
    dfd = os.open(str(pin_dir), os.O_RDONLY | os.O_DIRECTORY)
    try:
        bsys.obj_pin(hmap, "rel", path_fd=dfd)
        with bsys.obj_get("rel", path_fd=dfd) as fd3:
            assert fd3.fileno() >= 3
    finally:
        os.close(dfd)


# -- programs -------------------------------------------------------------------------------

def test_prog_load_with_log_and_test_run() -> None:
    log = bytearray(64 * 1024)
    with load(prog_name="pybpf_ret7", log_level=1, log_buf=log) as fd:
        assert fd.fileno() >= 3
        assert b"processed 2 insns" in log
        r = bsys.prog_test_run(fd.fileno(), data_in=bytes(64), data_size_out=64, repeat=3)
        assert r["retval"] == 7 and len(r["data_out"]) == 64
        info = bsys.prog_info(fd.fileno())
        assert info["name"] == "pybpf_ret7" and info["type"] == ProgType.SOCKET_FILTER
        assert len(info["tag"]) == 8 and info["map_ids"] == []
        assert info["xlated_prog_len"] == len(RET7)


def test_rejected_program_reports_errno_and_log() -> None:
    log = bytearray(64 * 1024)
    with pytest.raises(SyscallError) as ei:
        load(EXIT, log_level=1, log_buf=log, context="program bad")
    e = ei.value
    assert e.errno == errno.EACCES and not isinstance(e, PermissionDeniedError)
    assert e.call == "BPF_PROG_LOAD" and "program bad" in str(e)
    text = log.split(b"\0", 1)[0].decode()
    assert "R0 !read_ok" in text
    assert e.log_true_size == len(text) + 1  # type: ignore[attr-defined]

    small = bytearray(128)                     # the smallest log the kernel accepts
    with pytest.raises(SyscallError) as ei2:
        load(EXIT, log_level=2, log_buf=small)
    assert ei2.value.errno == errno.ENOSPC
    assert ei2.value.log_true_size > len(small)  # type: ignore[attr-defined]

    with pytest.raises(ValueError):
        load(b"\0" * 7)


def test_program_using_a_map_and_bind(hmap: int) -> None:
    insns = ld_map_fd(1, hmap) + RET7
    with load(insns) as fd:
        assert bsys.prog_info(fd.fileno())["map_ids"] == [bsys.map_info(hmap)["id"]]
        with bsys.map_create(MapType.ARRAY, 4, 4, 1) as extra:
            bsys.prog_bind_map(fd.fileno(), extra.fileno())
            assert bsys.map_info(extra.fileno())["id"] in bsys.prog_info(fd.fileno())["map_ids"]
        ids = []
        i = bsys.prog_get_next_id(0)
        while i is not None:
            ids.append(i)
            i = bsys.prog_get_next_id(i)
        pid = bsys.prog_info(fd.fileno())["id"]
        assert pid in ids
        with bsys.prog_get_fd_by_id(pid) as again:
            assert bsys.prog_info(again.fileno(), map_ids=False)["id"] == pid


def test_enable_stats_counts_runs() -> None:
    with load() as prog, bsys.enable_stats(StatsType.RUN_TIME) as stats:
        assert stats.fileno() >= 3
        bsys.prog_test_run(prog.fileno(), data_in=bytes(64), repeat=5)
        assert bsys.prog_info(prog.fileno())["run_cnt"] >= 5


# -- BTF ------------------------------------------------------------------------------------

def _tiny_btf() -> bytes:
    strings = b"\0int\0"
    types = struct.pack("<III", 1, 1 << 24, 4) + struct.pack("<I", (1 << 24) | 32)  # int, signed
    return struct.pack("<HBBIIIII", 0xEB9F, 1, 0, 24, 0, len(types), len(types),
                       len(strings)) + types + strings


def test_btf_load_info_and_ids() -> None:
    raw = _tiny_btf()
    with bsys.btf_load(raw) as fd:
        info = bsys.btf_info(fd.fileno(), data=True)
        assert info["btf"] == raw and info["btf_size"] == len(raw) and not info["kernel_btf"]
        ids = []
        i = bsys.btf_get_next_id(0)
        while i is not None:
            ids.append(i)
            i = bsys.btf_get_next_id(i)
        assert info["id"] in ids
        with bsys.btf_get_fd_by_id(ids[0]) as vfd:
            vmlinux = bsys.btf_info(vfd.fileno())
        assert vmlinux["name"] == "vmlinux" and vmlinux["kernel_btf"]
    bad = bytearray(raw)
    bad[24 + 4] = 99                              # an unknown kind
    log = bytearray(4096)
    with pytest.raises(SyscallError) as ei:
        bsys.btf_load(bytes(bad), log_level=1, log_buf=log)
    assert ei.value.call == "BPF_BTF_LOAD" and log[0] != 0


# -- links ----------------------------------------------------------------------------------

def test_raw_tracepoint_link_info_and_task_fd_query() -> None:
    with load(mov64_imm(0, 0) + EXIT, ProgType.RAW_TRACEPOINT) as prog, \
            bsys.raw_tracepoint_open("sys_enter", prog.fileno()) as link:
        info = bsys.link_info(link.fileno())
        assert info["type"] == LinkType.RAW_TRACEPOINT and info["name"] == "sys_enter"
        assert info["prog_id"] == bsys.prog_info(prog.fileno())["id"]
        ids = []
        i = bsys.link_get_next_id(0)
        while i is not None:
            ids.append(i)
            i = bsys.link_get_next_id(i)
        assert info["id"] in ids
        q = bsys.task_fd_query(os.getpid(), link.fileno())
        assert q["fd_type"] == TaskFdType.RAW_TRACEPOINT and q["name"] == "sys_enter"
        with bsys.link_get_fd_by_id(info["id"]) as again:
            assert bsys.link_info(again.fileno())["id"] == info["id"]


@pytest.fixture
def cgroup():
    with open("/proc/self/mounts") as f:
        roots = [line.split()[1] for line in f if line.split()[2] == "cgroup2"]
    if not roots:
        pytest.skip("no cgroup v2 hierarchy mounted")
    path = os.path.join(roots[0], f"pybpf-test-{os.getpid()}")
    os.mkdir(path)
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        yield fd
    finally:
        os.close(fd)
        os.rmdir(path)


def test_cgroup_attach_query_link_detach(cgroup: int) -> None:
    ingress = AttachType.CGROUP_INET_INGRESS
    with load(mov64_imm(0, 1) + EXIT, ProgType.CGROUP_SKB, expected_attach_type=ingress) as p:
        pid = bsys.prog_info(p.fileno())["id"]
        bsys.prog_attach(p.fileno(), cgroup, ingress, AttachFlags.ALLOW_MULTI)
        q = bsys.prog_query(cgroup, ingress, max_progs=1)
        assert q["prog_ids"] == [pid] and q["attach_flags"] == AttachFlags.ALLOW_MULTI
        with bsys.link_create(p.fileno(), cgroup, ingress) as link:
            q2 = bsys.prog_query(cgroup, ingress, max_progs=1)   # grows to fit both
            assert q2["prog_ids"] == [pid, pid]
            assert bsys.link_info(link.fileno())["type"] == LinkType.CGROUP
            bsys.link_detach(link.fileno())
            assert bsys.prog_query(cgroup, ingress)["prog_ids"] == [pid]
        bsys.prog_detach(cgroup, ingress, p.fileno())
        assert bsys.prog_query(cgroup, ingress)["prog_ids"] == []


# -- perf -----------------------------------------------------------------------------------

def test_perf_event_open_ioctls_and_ring_mmap() -> None:
    with bsys.perf_event_open(PerfType.SOFTWARE, PerfSwId.BPF_OUTPUT, cpu=0,
                              attr_flags=PERF_ATTR_FLAG_DISABLED, sample_type=1 << 10,
                              wakeup_events=1) as fd:
        assert fd.fileno() >= 3
        assert fcntl_cloexec(fd.fileno())
        assert bsys.perf_event_id(fd.fileno()) > 0
        bsys.perf_event_enable(fd.fileno())
        bsys.perf_event_disable(fd.fileno())
        ring = bsys.mmap(fd.fileno(), 2 * bsys.PAGE_SIZE, _mmap.PROT_READ | _mmap.PROT_WRITE)
        off = ffi.offsetof("struct perf_event_mmap_page", "data_offset")
        data_offset, data_size = struct.unpack_from("=QQ", ring, off)
        assert (data_offset, data_size) == (bsys.PAGE_SIZE, bsys.PAGE_SIZE)
        ring.close()
        with pytest.raises(SyscallError) as ei:
            bsys.perf_event_set_bpf(fd.fileno(), 987654)
        assert ei.value.call == "ioctl(PERF_EVENT_IOC_SET_BPF)"
    with pytest.raises(SyscallError) as ei2:
        bsys.perf_event_open(999_999, 0, cpu=0)
    assert ei2.value.call == "perf_event_open"


def fcntl_cloexec(fd: int) -> bool:
    import fcntl
    return bool(fcntl.fcntl(fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC)


# -- fd ownership ---------------------------------------------------------------------------

def test_fd_lifecycle_never_leaks() -> None:
    before = fd_count()
    for _ in range(200):
        fd = bsys.map_create(MapType.ARRAY, 4, 4, 1)
        assert fcntl_cloexec(fd.fileno())
        fd.close()
        fd.close()                        # idempotent
    assert fd_count() == before

    fd = bsys.map_create(MapType.ARRAY, 4, 4, 1)
    n = fd.fileno()
    del fd
    gc.collect()                          # the finalizer backstop closes it
    assert not is_open(n)

    fd = bsys.map_create(MapType.ARRAY, 4, 4, 1)
    raw = fd.detach()
    assert fd.closed and is_open(raw)
    with pytest.raises(SyscallError):
        fd.fileno()
    with bsys.dup_fd(raw) as copy:
        assert copy.fileno() != raw
    os.close(raw)
    assert fd_count() == before


def test_fd_is_never_stdio() -> None:
    saved = os.dup(0)
    try:
        os.close(0)
        with bsys.map_create(MapType.ARRAY, 4, 4, 1) as fd:
            assert fd.fileno() >= 3
            assert not is_open(0)        # the kernel's fd 0 was moved, not kept
    finally:
        os.dup2(saved, 0)
        os.close(saved)


# -- the backend seam -----------------------------------------------------------------------

class Faulty:
    """Delegates to the kernel, but fails chosen commands first with chosen errnos."""

    def __init__(self, faults):
        self.real = bsys.LinuxBackend()
        self.faults = list(faults)       # [(cmd, errno)], consumed in order
        self.calls: List[int] = []
        self.injected = 0                # errno of the last injected fault, 0 after a real call

    def bpf(self, cmd, attr, size):
        self.calls.append(int(cmd))
        if self.faults and self.faults[0][0] == cmd:
            self.injected = self.faults.pop(0)[1]
            return -1
        self.injected = 0
        return self.real.bpf(cmd, attr, size)

    def perf_event_open(self, attr, pid, cpu, group_fd, flags):
        self.injected = 0
        return self.real.perf_event_open(attr, pid, cpu, group_fd, flags)

    def errno(self, result):
        return self.injected or self.real.errno(result)


def test_eintr_is_retried(hmap: int) -> None:
    fake = Faulty([(Cmd.MAP_UPDATE_ELEM, errno.EINTR), (Cmd.MAP_UPDATE_ELEM, errno.EINTR)])
    with bsys.use_backend(fake):
        bsys.map_update_elem(hmap, u32(1), u64(1))
    assert fake.calls == [Cmd.MAP_UPDATE_ELEM] * 3
    assert isinstance(bsys.get_backend(), bsys.LinuxBackend)


def test_prog_load_retries_eagain_a_few_times() -> None:
    fake = Faulty([(Cmd.PROG_LOAD, errno.EAGAIN)] * 3)
    with bsys.use_backend(fake):
        load().close()
    assert fake.calls == [Cmd.PROG_LOAD] * 4
    fake = Faulty([(Cmd.PROG_LOAD, errno.EAGAIN)] * (bsys.PROG_LOAD_EAGAIN_RETRIES + 1))
    with bsys.use_backend(fake), pytest.raises(SyscallError) as ei:
        load()
    assert ei.value.errno == errno.EAGAIN


def test_eperm_becomes_permission_denied_with_hint() -> None:
    with bsys.use_backend(Faulty([(Cmd.MAP_CREATE, errno.EPERM)])):
        with pytest.raises(PermissionDeniedError) as ei:
            bsys.map_create(MapType.HASH, 4, 4, 1, context="map secrets")
    assert "CAP_BPF" in str(ei.value) and str(ei.value).startswith("map secrets: BPF_MAP_CREATE")
    with pytest.raises(TypeError):
        bsys.set_backend(object())  # type: ignore[arg-type]


# -- the prepared element block ---------------------------------------------------------------

def test_elem_block_operations_and_errors(hmap: int) -> None:
    blk = bsys.ElemBlock(hmap, 4, 8, context="map blk")
    assert len(blk.key) == 4 and len(blk.value) == 8
    blk.key[:] = u32(5)
    assert blk.lookup() is False                      # a miss is an answer, not an exception
    blk.value[:] = u64(55)
    blk.update(UpdateFlags.NOEXIST)
    out = bytearray(8)
    bsys.map_lookup_elem(hmap, u32(5), out)           # the kernel holds what the block wrote
    assert out == u64(55)
    with pytest.raises(KeyExistsError) as ei:
        blk.update(UpdateFlags.NOEXIST)
    assert str(ei.value).startswith("map blk: BPF_MAP_UPDATE_ELEM")
    blk.value[:] = u64(0)
    assert blk.lookup() is True and bytes(blk.value) == u64(55)
    blk.value[:] = u64(56)
    blk.update(UpdateFlags.EXIST)                     # flags are rewritten when they change
    bsys.map_lookup_elem(hmap, u32(5), out)
    assert out == u64(56)
    assert blk.delete() is True and blk.delete() is False
    assert isinstance(blk.absent(), KeyNotFoundError)
    with pytest.raises(KeyNotFoundError):
        blk.update(UpdateFlags.EXIST)


def test_elem_block_retries_eintr(hmap: int) -> None:
    blk = bsys.ElemBlock(hmap, 4, 8)
    blk.key[:] = u32(9)
    blk.value[:] = u64(99)
    fake = Faulty([(Cmd.MAP_UPDATE_ELEM, errno.EINTR), (Cmd.MAP_LOOKUP_ELEM, errno.EINTR)])
    with bsys.use_backend(fake):
        blk.update()
        assert blk.lookup() is True
    assert fake.calls == [Cmd.MAP_UPDATE_ELEM] * 2 + [Cmd.MAP_LOOKUP_ELEM] * 2
    assert bytes(blk.value) == u64(99)
    with bsys.use_backend(Faulty([(Cmd.MAP_LOOKUP_ELEM, errno.ENOMEM)])):
        with pytest.raises(SyscallError) as ei:
            blk.lookup()
    assert ei.value.errno == errno.ENOMEM
