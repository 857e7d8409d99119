"""USDT probes: attach to SystemTap/DTrace-style static probes, with arguments usable from BPF.

A USDT probe (``STAP_PROBE*``/``DTRACE_PROBE*`` from ``<sys/sdt.h>``) is a
``nop`` in the program plus a note in ``.note.stapsdt`` giving its provider,
name, address, optional semaphore and an argument spec string per argument
(``-4@%eax``, ``8@16(%rsp)``, ``-4@$-7``: size and signedness, then where the
value is).  Attaching one means:

1. find the notes for ``provider:name`` (there may be several sites) and turn
   their addresses into file offsets;
2. describe each site's arguments in the ``__bpf_usdt_specs`` map exactly as
   libbpf's ``<bpf/usdt.bpf.h>`` reads them (``struct __bpf_usdt_spec``), so the
   BPF side's ``bpf_usdt_arg()``, ``bpf_usdt_arg_cnt()``, ``bpf_usdt_cookie()``
   and ``BPF_USDT()`` work unchanged;
3. open a uprobe per site, with the semaphore's file offset as the uprobe
   ``ref_ctr_offset`` so the kernel raises the semaphore while attached, and
   link the program with the spec id as BPF cookie -- or, on kernels without
   BPF cookies (< 5.15), record absolute IP -> spec id in
   ``__bpf_usdt_ip_to_spec_id``, which needs the process's load address for
   PIE executables and libraries (give ``pid``).

Section names: ``SEC("usdt/PATH:PROVIDER:NAME")`` or ``SEC("usdt")`` plus
``attach(path=..., provider=..., name=...)``.
"""

from __future__ import annotations

import os
import re
import struct
import threading
from typing import Any, Dict, List, Optional, Sequence, Set, Tuple

import attrs

from ..errors import BPFError, NotSupportedError, ParseError
from ..maps.map import Map
from .base import Link, register
from .elfsym import ElfImage, proc_maps, resolve_binary
from .perf_event import LinkGroup, attach_perf_fd
from .uprobe import open_uprobe

__all__ = ["UsdtArg", "UsdtProbe", "attach_usdt", "parse_usdt_arg", "read_usdt_probes",
           "pack_usdt_spec"]

ARG_CONST, ARG_REG, ARG_REG_DEREF = 0, 1, 2     # enum __bpf_usdt_arg_type
MAX_ARGS = 12                                    # BPF_USDT_MAX_ARG_CNT
_ARG_SPEC = struct.Struct("=QihBb")              # struct __bpf_usdt_arg_spec (16 bytes)
_SPEC_TAIL = struct.Struct("=Qh6x")              # usdt_cookie, arg_cnt, padding to 8
SPEC_SIZE = _ARG_SPEC.size * MAX_ARGS + _SPEC_TAIL.size   # sizeof(struct __bpf_usdt_spec) == 208
SPECS_MAP, IP_MAP = "__bpf_usdt_specs", "__bpf_usdt_ip_to_spec_id"
EM_X86_64, EM_AARCH64 = 62, 183

# offsetof(struct pt_regs, reg) as the BPF program sees its context.
_X86_64_REGS: Dict[str, int] = {}
for _off, _names in ((0, "r15"), (8, "r14"), (16, "r13"), (24, "r12"), (32, "rbp ebp bp bpl"),
                     (40, "rbx ebx bx bl"), (48, "r11"), (56, "r10"), (64, "r9"), (72, "r8"),
                     (80, "rax eax ax al"), (88, "rcx ecx cx cl"), (96, "rdx edx dx dl"),
                     (104, "rsi esi si sil"), (112, "rdi edi di dil"), (128, "rip eip ip"),
                     (152, "rsp esp sp spl")):
    for _n in _names.split():
        _X86_64_REGS[_n] = _off
        if re.fullmatch(r"r\d+", _n):
            for _suffix in "dwb":
                _X86_64_REGS[_n + _suffix] = _off
_AARCH64_REGS: Dict[str, int] = {**{f"x{i}": i * 8 for i in range(31)},
                                 **{f"w{i}": i * 8 for i in range(31)}, "sp": 248, "pc": 256}


@attrs.frozen
class UsdtArg:
    """One argument, as ``struct __bpf_usdt_arg_spec`` holds it."""
    arg_type: int
    val_off: int = 0
    reg_off: int = 0
    signed: bool = False
    bitshift: int = 0

    def pack(self) -> bytes:
        return _ARG_SPEC.pack(self.val_off & (2 ** 64 - 1), self.arg_type, self.reg_off,
                              int(self.signed), self.bitshift)


@attrs.frozen
class UsdtProbe:
    """One probe site from ``.note.stapsdt``.

    ``address`` is its link-time address, ``offset`` its file offset (where the
    uprobe goes), ``semaphore_offset`` the semaphore's file offset (0: none);
    ``args`` the raw argument spec string.
    """
    provider: str
    name: str
    address: int
    offset: int
    semaphore: int
    semaphore_offset: int
    args: str


def parse_usdt_arg(spec: str, machine: int = EM_X86_64) -> UsdtArg:
    """Decode one argument spec (``-4@-20(%rbp)``) for ELF machine ``machine``."""
    size_s, at, loc = spec.partition("@")
    try:
        size = int(size_s)
    except ValueError:
        size = 0
    if not at or abs(size) not in (1, 2, 4, 8):
        raise BPFError(f"USDT argument {spec!r}: bad size {size_s!r}")
    signed, bitshift = size < 0, 64 - abs(size) * 8
    if machine == EM_X86_64:
        regs, patterns = _X86_64_REGS, (
            (ARG_CONST, r"\$(?P<off>-?\d+)"),
            (ARG_REG_DEREF, r"(?P<off>-?\d+)?\(%(?P<reg>\w+)\)"),
            (ARG_REG, r"%(?P<reg>\w+)"))
    elif machine == EM_AARCH64:
        regs, patterns = _AARCH64_REGS, (
            (ARG_CONST, r"(?P<off>-?\d+)"),
            (ARG_REG_DEREF, r"\[(?P<reg>\w+)(?:,\s*(?P<off>-?\d+))?\]"),
            (ARG_REG, r"(?P<reg>\w+)"))
    else:
        raise NotSupportedError(f"USDT arguments on ELF machine {machine}",
                                "pybpf decodes x86-64 and arm64 argument specs")
    for kind, pat in patterns:
        m = re.fullmatch(pat, loc)
        if m is None:
            continue
        off = int(m.groupdict().get("off") or 0)
        if kind == ARG_CONST:
            return UsdtArg(ARG_CONST, val_off=off, signed=signed, bitshift=bitshift)
        reg = m.group("reg")
        if reg not in regs:
            raise NotSupportedError(f"USDT argument {spec!r}", f"register {reg!r} is not supported")
        return UsdtArg(kind, val_off=off, reg_off=regs[reg], signed=signed, bitshift=bitshift)
    raise NotSupportedError(f"USDT argument {spec!r}",
                            "only constants, registers and register+offset memory operands are "
                            "supported (libbpf 1.1's usdt.bpf.h has no indexed or symbol operands)")


def pack_usdt_spec(args: Sequence[UsdtArg], cookie: int = 0) -> bytes:
    """``struct __bpf_usdt_spec`` for ``args`` (at most 12) and the user's ``cookie``."""
    if len(args) > MAX_ARGS:
        raise NotSupportedError(f"USDT probe with {len(args)} arguments",
                                f"usdt.bpf.h holds at most {MAX_ARGS}")
    body = b"".join(a.pack() for a in args).ljust(_ARG_SPEC.size * MAX_ARGS, b"\0")
    return body + _SPEC_TAIL.pack(cookie & (2 ** 64 - 1), len(args))


def read_usdt_probes(elf: ElfImage) -> List[UsdtProbe]:
    """Every probe site in ``elf``'s ``.note.stapsdt``."""
    word = 8 if elf.is_64 else 4
    addrs = struct.Struct(f"{elf.byteorder}3{'Q' if elf.is_64 else 'I'}")
    base_sec = elf.section(".stapsdt.base")
    out = []
    for note in elf.notes(".note.stapsdt"):
        if note.name != "stapsdt" or note.type != 3:
            continue
        if len(note.desc) < 3 * word + 3:
            raise ParseError("USDT note too short", file=elf.path, section=".note.stapsdt")
        pc, base, sema = addrs.unpack_from(note.desc)
        strings = note.desc[3 * word:].split(b"\0")
        if len(strings) < 3:
            raise ParseError("USDT note lacks provider/name/args", file=elf.path,
                             section=".note.stapsdt")
        provider, name, args = (s.decode("utf-8", "replace") for s in strings[:3])
        if base and base_sec is not None:       # the file was prelinked: shift like .stapsdt.base
            pc += base_sec.addr - base
            if sema:
                sema += base_sec.addr - base
        seg = elf.segment_of(pc, executable=True)
        if seg is None:
            raise ParseError(f"USDT probe {provider}:{name} at {pc:#x} is not in an executable "
                             "segment", file=elf.path, section=".note.stapsdt")
        sema_off = elf.addr_to_offset(sema) if sema else 0
        out.append(UsdtProbe(provider, name, pc, pc - seg.vaddr + seg.offset, sema, sema_off, args))
    return out


# -- the argument maps --------------------------------------------------------------------

class _SpecIds:
    """Spec ids in use per ``__bpf_usdt_specs`` map (by kernel map id), shared by every
    USDT attachment of the process so programs of one object never overwrite each other."""

    def __init__(self) -> None:
        self._used: Dict[int, Set[int]] = {}
        self._lock = threading.Lock()

    def take(self, map_id: int, n: int, capacity: int) -> List[int]:
        with self._lock:
            used = self._used.setdefault(map_id, set())
            free = [i for i in range(capacity) if i not in used][:n]
            if len(free) < n:
                raise BPFError(f"map {SPECS_MAP} is full ({capacity} USDT specs in use); "
                               "define BPF_USDT_MAX_SPEC_CNT larger in the BPF program")
            used.update(free)
            return free

    def give_back(self, map_id: int, ids: Sequence[int]) -> None:
        with self._lock:
            self._used.get(map_id, set()).difference_update(ids)


_SPEC_IDS = _SpecIds()


def _usdt_maps(prog: Any) -> Tuple[Map, Optional[Map]]:
    """The program's ``__bpf_usdt_specs`` and ``__bpf_usdt_ip_to_spec_id`` maps (own fds)."""
    found: Dict[str, Map] = {}
    try:
        for map_id in prog.info().map_ids:
            m = Map.from_id(map_id)
            for full in (SPECS_MAP, IP_MAP):
                if m.name == full[:15] and full not in found:
                    found[full] = m
                    break
            else:
                m.close()
        specs = found.get(SPECS_MAP)
        if specs is None:
            raise BPFError(f"program {prog.name} does not use map {SPECS_MAP}: USDT programs must "
                           "read their arguments through <bpf/usdt.bpf.h> (bpf_usdt_arg, BPF_USDT)")
        if specs.value_size != SPEC_SIZE or specs.key_size != 4:
            raise BPFError(f"map {SPECS_MAP} of program {prog.name} has key/value sizes "
                           f"{specs.key_size}/{specs.value_size}, not 4/{SPEC_SIZE}: its "
                           "usdt.bpf.h differs from libbpf 1.1's layout")
        return specs, found.get(IP_MAP)
    except BaseException:
        for m in found.values():
            m.close()
        raise


def _absolute_ip(binary: str, elf_is_dyn: bool, probe: UsdtProbe, pid: int) -> Optional[int]:
    """The probe's address in process ``pid`` (None if it cannot be known)."""
    if not elf_is_dyn:
        return probe.address
    if pid < 0:
        return None
    real = os.path.realpath(binary)
    for m in proc_maps(pid):
        if os.path.realpath(m.path) == real and m.offset <= probe.offset < m.offset + (m.end - m.start):
            return m.start + probe.offset - m.offset
    return None


def attach_usdt(prog: Any, path: str, provider: str, name: str, pid: int = -1, *,
                cookie: int = 0, legacy: Optional[bool] = None) -> LinkGroup:
    """Attach ``prog`` to every site of USDT probe ``provider:name`` in ``path``.

    ``path`` is an executable or library (bare names are resolved as for uprobes);
    ``pid`` limits the probe to one process; ``cookie`` is what ``bpf_usdt_cookie()``
    returns in the program.  Returns a :class:`~pybpf.link.perf_event.LinkGroup`
    with one uprobe link per site; closing it releases the spec ids.
    """
    binary = resolve_binary(path, pid)
    with ElfImage(binary) as elf:
        probes = [p for p in read_usdt_probes(elf) if p.provider == provider and p.name == name]
        machine, is_dyn = elf.machine, elf.is_pie_or_lib
    target = f"{binary}:{provider}:{name}"
    if not probes:
        raise BPFError(f"{binary} has no USDT probe {provider}:{name}")
    specs: Dict[bytes, List[UsdtProbe]] = {}
    for p in probes:
        args = [parse_usdt_arg(a, machine) for a in p.args.split()]
        specs.setdefault(pack_usdt_spec(args, cookie), []).append(p)
    spec_map, ip_map = _usdt_maps(prog)
    try:
        map_id = spec_map.info().id
        ids = _SPEC_IDS.take(map_id, len(specs), spec_map.max_entries)
    except BaseException:
        spec_map.close()
        if ip_map is not None:
            ip_map.close()
        raise
    links: List[Link] = []
    ip_keys: List[bytes] = []

    def release() -> None:
        try:
            if ip_map is not None:
                for k in ip_keys:
                    try:
                        ip_map.delete_raw(k)
                    except BPFError:
                        pass
        finally:
            _SPEC_IDS.give_back(map_id, ids)
            spec_map.close()
            if ip_map is not None:
                ip_map.close()

    try:
        site_ids: List[Tuple[UsdtProbe, int]] = []
        for spec_id, (packed, sites) in zip(ids, specs.items()):
            spec_map.update_raw(struct.pack("=I", spec_id), packed)
            site_ids.extend((p, spec_id) for p in sites)
        need_ip_map = False
        for p, spec_id in site_ids:
            where = f"usdt {provider}:{name} at {binary}:{p.offset:#x}"
            pfd, res = open_uprobe(binary, p.offset, pid=pid, ref_ctr_offset=p.semaphore_offset,
                                   legacy=legacy, context=where)
            link = attach_perf_fd(prog, pfd, kind="usdt", target=f"{target}@{p.offset:#x}",
                                  cookie=spec_id, cookie_required=False, resources=res)
            links.append(link)
            need_ip_map = need_ip_map or not link.is_bpf_link
        if need_ip_map:      # no BPF cookies: usdt.bpf.h finds the spec by instruction pointer
            if ip_map is None:
                raise BPFError(f"program {prog.name} has no {IP_MAP} map, needed on kernels "
                               "without BPF cookies")
            for p, spec_id in site_ids:
                ip = _absolute_ip(binary, is_dyn, p, pid)
                if ip is None:
                    raise NotSupportedError(
                        f"USDT {provider}:{name} in {binary} without a pid",
                        "this kernel has no BPF cookies (5.15+), so the probe's absolute address "
                        "is needed, and a PIE executable or library moves: give pid=")
                key = struct.pack("=q", ip)
                ip_map.update_raw(key, struct.pack("=I", spec_id))
                ip_keys.append(key)
    except BaseException:
        for l in reversed(links):
            l.close()
        release()
        raise
    return LinkGroup(links, program=prog, kind="usdt", target=target, on_close=release)


_USDT_TARGET = re.compile(r"(?P<path>.+):(?P<provider>[^:]+):(?P<name>[^:]+)")


@register("usdt")
def _auto_usdt(prog: Any, path: Optional[str] = None, provider: Optional[str] = None,
               name: Optional[str] = None, **kw: Any) -> Link:
    if path is None:
        target = prog.spec.attach_to if prog.spec is not None else ""
        m = _USDT_TARGET.fullmatch(target or "")
        if m is None:
            raise BPFError(f"usdt program {prog.name}: section target {target!r} is not "
                           "PATH:PROVIDER:NAME; call attach(path=..., provider=..., name=...)")
        path = m.group("path")
        provider = provider or m.group("provider")
        name = name or m.group("name")
    if not provider or not name:
        raise BPFError(f"usdt program {prog.name}: give provider= and name=")
    return attach_usdt(prog, path, provider, name, **kw)
