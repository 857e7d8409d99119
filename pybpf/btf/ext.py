"""The .BTF.ext section: func_info, line_info and CO-RE relocation records.

Records are grouped by the ELF section (program section) they describe.
Instruction offsets are kept as in the ELF (bytes from the section start);
the loader converts them to instruction indices when it builds programs.
"""

from __future__ import annotations

import struct
from typing import Dict, List, Optional, Tuple

import attrs

from ..consts import CoreReloKind
from ..errors import ParseError
from .parse import Spec

__all__ = ["FuncInfo", "LineInfo", "COREReloKind", "CORERelo", "ExtInfo", "parse_ext"]


@attrs.frozen
class FuncInfo:
    """A function's start: ``insn_off`` (bytes) and its BTF FUNC type id."""
    insn_off: int
    type_id: int


@attrs.frozen
class LineInfo:
    """Source position of the instruction at ``insn_off`` (bytes)."""
    insn_off: int
    file_name_off: int
    line_off: int
    line: int
    col: int
    file_name: str = ""
    line_text: str = ""


# enum bpf_core_relo_kind, generated from kernel BTF with the other kernel enums.
COREReloKind = CoreReloKind


@attrs.frozen
class CORERelo:
    """One CO-RE relocation: patch the instruction at ``insn_off`` (bytes) with
    a fact about local type ``type_id`` reached through ``access_str`` ("0:1:2")."""
    insn_off: int
    type_id: int
    access_str: str
    kind: COREReloKind


@attrs.frozen
class ExtInfo:
    """Parsed .BTF.ext: per-section record lists plus the record sizes the object used."""
    func_info: Dict[str, List[FuncInfo]]
    line_info: Dict[str, List[LineInfo]]
    core_relos: Dict[str, List[CORERelo]]
    func_info_rec_size: int = 8
    line_info_rec_size: int = 16


def parse_ext(data: bytes, btf: Spec, *, file: Optional[str] = None) -> ExtInfo:
    """Parse a .BTF.ext section; strings are resolved through the object's ``btf``."""
    where = file or "<bytes>"
    sec = ".BTF.ext"

    def fail(msg: str, off: Optional[int] = None) -> ParseError:
        return ParseError(msg, file=where, section=sec, offset=off)

    if len(data) < 24:
        raise fail(f"{len(data)} bytes is shorter than the .BTF.ext header")
    if data[0:2] == b"\x9f\xeb":
        bo = "<"
    elif data[0:2] == b"\xeb\x9f":
        bo = ">"
    else:
        raise fail(f"bad magic {data[0:2].hex()}", 0)
    if bo != btf.byteorder:
        raise fail(".BTF.ext and .BTF differ in byte order")
    _m, version, _flags, hdr_len = struct.unpack_from(bo + "HBBI", data, 0)
    if version != 1:
        raise fail(f"unsupported .BTF.ext version {version}", 2)
    if hdr_len < 24 or hdr_len > len(data):
        raise fail(f"bad header length {hdr_len}", 4)
    fi_off, fi_len, li_off, li_len = struct.unpack_from(bo + "IIII", data, 8)
    cr_off = cr_len = 0
    if hdr_len >= 32:
        cr_off, cr_len = struct.unpack_from(bo + "II", data, 24)

    def string(off: int) -> str:
        try:
            return btf.string(off)
        except ParseError as e:
            raise fail(f"bad string offset {off}: {e.reason}") from None

    def blocks(off: int, length: int, what: str, min_rec: int) -> Tuple[int, Dict[str, List[bytes]]]:
        out: Dict[str, List[bytes]] = {}
        if length == 0:
            return min_rec, out
        start = hdr_len + off
        end = start + length
        if end > len(data) or start < hdr_len:
            raise fail(f"{what} [{off}, +{length}) outside the section")
        if length < 4:
            raise fail(f"{what} too short for its record size")
        (rec_size,) = struct.unpack_from(bo + "I", data, start)
        if rec_size < min_rec or rec_size % 4 or rec_size > 1024:
            raise fail(f"{what} has bad record size {rec_size}", start)
        pos = start + 4
        while pos < end:
            if pos + 8 > end:
                raise fail(f"{what} block header truncated", pos)
            name_off, n = struct.unpack_from(bo + "II", data, pos)
            pos += 8
            if n == 0:
                raise fail(f"{what} block for section {string(name_off)!r} has no records", pos)
            if pos + n * rec_size > end:
                raise fail(f"{what} records for section {string(name_off)!r} run past the end", pos)
            recs = [data[pos + i * rec_size: pos + (i + 1) * rec_size] for i in range(n)]
            out.setdefault(string(name_off), []).extend(recs)
            pos += n * rec_size
        return rec_size, out

    fi_rec, fi_raw = blocks(fi_off, fi_len, "func_info", 8)
    li_rec, li_raw = blocks(li_off, li_len, "line_info", 16)
    _cr_rec, cr_raw = blocks(cr_off, cr_len, "core_relo", 16)

    u2 = struct.Struct(bo + "II")
    u4 = struct.Struct(bo + "IIII")
    func_info = {s: [FuncInfo(*u2.unpack_from(r)) for r in recs] for s, recs in fi_raw.items()}
    line_info: Dict[str, List[LineInfo]] = {}
    for s, recs in li_raw.items():
        lst = []
        for r in recs:
            insn_off, fname, loff, lc = u4.unpack_from(r)
            lst.append(LineInfo(insn_off, fname, loff, lc >> 10, lc & 0x3FF, string(fname), string(loff)))
        line_info[s] = lst
    core: Dict[str, List[CORERelo]] = {}
    for s, recs in cr_raw.items():
        lst2 = []
        for r in recs:
            insn_off, tid, acc, kind = u4.unpack_from(r)
            try:
                k = COREReloKind(kind)
            except ValueError:
                raise fail(f"unknown CO-RE relocation kind {kind} in section {s!r}") from None
            if tid >= len(btf) or tid == 0:
                raise fail(f"CO-RE relocation in {s!r} refers to bad type id {tid}")
            lst2.append(CORERelo(insn_off, tid, string(acc), k))
        core[s] = lst2
    return ExtInfo(func_info, line_info, core, fi_rec, li_rec)
