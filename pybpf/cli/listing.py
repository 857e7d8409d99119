"""``pybpf prog list|show`` and ``pybpf map list|show|dump``: what the kernel has loaded.

Like ``bpftool prog list`` / ``map list``: every object is found by walking
the kernel's id space (BPF_*_GET_NEXT_ID), opened by id and described with
BPF_OBJ_GET_INFO_BY_FD; the memlock and frozen figures come from the fd's
``/proc/self/fdinfo`` entry, as bpftool reads them.  JSON output uses
bpftool's key names (``bytes_xlated``, ``bytes_key`` ...) so scripts written
against ``bpftool --json`` need little change.
"""

from __future__ import annotations

import argparse
import errno
import time
from typing import Any, Callable, Dict, Iterator, List, Optional

from ..errors import BPFError, SyscallError
from .output import Table, emit_json, hex_bytes, hex_list, map_flags_names, map_type_name
from .output import prog_type_name

__all__ = ["register", "prog_records", "map_records", "prog_record", "map_record", "describe_prog",
           "describe_map", "boot_offset_ns"]


# -- kernel access ----------------------------------------------------------------------------

def _ids(next_id: Callable[..., Optional[int]]) -> Iterator[int]:
    cur = 0
    while True:
        nxt = next_id(cur)
        if nxt is None:
            return
        yield nxt
        cur = nxt


def _fdinfo(fd: int) -> Dict[str, str]:
    """The ``key: value`` lines of /proc/self/fdinfo/FD (``memlock``, ``frozen``, ``map_type`` ...)."""
    out: Dict[str, str] = {}
    try:
        with open(f"/proc/self/fdinfo/{fd}") as f:
            for line in f:
                key, sep, value = line.partition(":")
                if sep:
                    out[key.strip()] = value.strip()
    except OSError:
        pass
    return out


def _int_or_none(text: Optional[str]) -> Optional[int]:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def boot_offset_ns() -> int:
    """Nanoseconds to add to a CLOCK_BOOTTIME timestamp (a program's ``load_time``) to get
    Unix time.  (bpftool subtracts whole seconds, so it can differ from us by one second.)"""
    return time.clock_gettime_ns(time.CLOCK_REALTIME) - time.clock_gettime_ns(time.CLOCK_BOOTTIME)


def _open(kind: str, ref: str) -> Any:
    """An owned fd for program/map ``ref``: a numeric id or a bpffs path."""
    from .. import sys as _sys
    try:
        if ref.isdigit():
            getter = _sys.prog_get_fd_by_id if kind == "program" else _sys.map_get_fd_by_id
            return getter(int(ref))
        fd = _sys.obj_get(ref)
    except SyscallError as e:
        if e.errno == errno.ENOENT:
            if ref.isdigit():
                raise BPFError(f"no {kind} with id {ref}") from None
            raise BPFError(f"nothing is pinned at {ref}") from None
        raise
    # A pin may hold any kind of object; fdinfo says which (prog_type: / map_type: / link_type:).
    key = "prog_type" if kind == "program" else "map_type"
    if key not in _fdinfo(fd.fileno()):
        fd.close()
        raise BPFError(f"{ref} is not a {kind}")
    return fd


def describe_prog(fd: int, boot_offset: int) -> Dict[str, Any]:
    """The program behind ``fd`` as a record with bpftool's ``--json`` keys.

    ``boot_offset`` is :func:`boot_offset_ns` (taken once per listing).
    """
    from .. import sys as _sys
    i = _sys.prog_info(fd)
    fdinfo = _fdinfo(fd)
    return {
        "id": i["id"],
        "type": prog_type_name(i["type"]),
        "name": i["name"],
        "tag": bytes(i["tag"]).hex(),
        "gpl_compatible": bool(i["gpl_compatible"] & 1),
        "loaded_at": (boot_offset + i["load_time"]) // 1_000_000_000,
        "uid": i["created_by_uid"],
        "bytes_xlated": i["xlated_prog_len"],
        "jited": i["jited_prog_len"] > 0,
        "bytes_jited": i["jited_prog_len"],
        "bytes_memlock": _int_or_none(fdinfo.get("memlock")),
        "map_ids": list(i.get("map_ids", [])),
        "btf_id": i["btf_id"] or None,
        "verified_insns": i.get("verified_insns"),
        "run_time_ns": i.get("run_time_ns", 0),
        "run_cnt": i.get("run_cnt", 0),
        "recursion_misses": i.get("recursion_misses", 0),
    }


def describe_map(fd: int) -> Dict[str, Any]:
    """The map behind ``fd`` as a record with bpftool's ``--json`` keys."""
    from .. import sys as _sys
    i = _sys.map_info(fd)
    fdinfo = _fdinfo(fd)
    return {
        "id": i["id"],
        "type": map_type_name(i["type"]),
        "name": i["name"],
        "flags": i["map_flags"],
        "bytes_key": i["key_size"],
        "bytes_value": i["value_size"],
        "max_entries": i["max_entries"],
        "bytes_memlock": _int_or_none(fdinfo.get("memlock")),
        "frozen": _int_or_none(fdinfo.get("frozen")) or 0,
        "btf_id": i["btf_id"] or None,
        "btf_key_type_id": i["btf_key_type_id"] or None,
        "btf_value_type_id": i["btf_value_type_id"] or None,
        "map_extra": i.get("map_extra", 0),
    }


def prog_record(ref: str) -> Dict[str, Any]:
    """The description of one program (``ref``: id or pinned path)."""
    with _open("program", ref) as fd:
        return describe_prog(fd.fileno(), boot_offset_ns())


def map_record(ref: str) -> Dict[str, Any]:
    """The description of one map (``ref``: id or pinned path)."""
    with _open("map", ref) as fd:
        return describe_map(fd.fileno())


def _records(next_id: Callable[..., Optional[int]], get_fd: Callable[[int], Any],
             describe: Callable[[int], Dict[str, Any]]) -> List[Dict[str, Any]]:
    out = []
    for obj_id in _ids(next_id):
        try:
            fd = get_fd(obj_id)
        except SyscallError as e:
            if e.errno == errno.ENOENT:   # freed between GET_NEXT_ID and GET_FD_BY_ID
                continue
            raise
        with fd:
            out.append(describe(fd.fileno()))
    return out


def prog_records() -> List[Dict[str, Any]]:
    """Every program loaded in the kernel, in id order."""
    from .. import sys as _sys
    offset = boot_offset_ns()
    return _records(_sys.prog_get_next_id, _sys.prog_get_fd_by_id,
                    lambda fd: describe_prog(fd, offset))


def map_records() -> List[Dict[str, Any]]:
    """Every map in the kernel, in id order."""
    from .. import sys as _sys
    return _records(_sys.map_get_next_id, _sys.map_get_fd_by_id, describe_map)


# -- rendering --------------------------------------------------------------------------------

def _when(epoch: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(epoch))


def _ids_text(ids: List[int]) -> Optional[str]:
    return ",".join(map(str, ids)) or None


def render_progs(recs: List[Dict[str, Any]]) -> str:
    t = Table(["ID", "TYPE", "NAME", "TAG", "LOADED AT", "UID", "XLATED", "JITED", "MAP IDS", "BTF"],
              right=["ID", "UID", "XLATED", "JITED", "BTF"])
    for r in recs:
        t.add(r["id"], r["type"], r["name"] or None, r["tag"], _when(r["loaded_at"]), r["uid"],
              r["bytes_xlated"], r["bytes_jited"] if r["jited"] else None, _ids_text(r["map_ids"]),
              r["btf_id"])
    return t.render()


def render_maps(recs: List[Dict[str, Any]]) -> str:
    t = Table(["ID", "TYPE", "NAME", "KEY", "VALUE", "MAX_ENTRIES", "FLAGS", "BTF"],
              right=["ID", "KEY", "VALUE", "MAX_ENTRIES", "BTF"])
    for r in recs:
        flags = map_flags_names(r["flags"]) + ("  frozen" if r["frozen"] else "")
        t.add(r["id"], r["type"], r["name"] or None, r["bytes_key"], r["bytes_value"],
              r["max_entries"], flags, r["btf_id"])
    return t.render()


def _render_fields(rows: List[tuple]) -> str:
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k.ljust(width)}  {'-' if v is None else v}" for k, v in rows)


def render_prog(r: Dict[str, Any]) -> str:
    rows = [("id", r["id"]), ("type", r["type"]), ("name", r["name"] or None), ("tag", r["tag"]),
            ("gpl_compatible", "yes" if r["gpl_compatible"] else "no"),
            ("loaded_at", _when(r["loaded_at"])), ("uid", r["uid"]),
            ("xlated", f"{r['bytes_xlated']}B"),
            ("jited", f"{r['bytes_jited']}B" if r["jited"] else "no"),
            ("memlock", f"{r['bytes_memlock']}B" if r["bytes_memlock"] is not None else None),
            ("map_ids", _ids_text(r["map_ids"])), ("btf_id", r["btf_id"]),
            ("verified_insns", r["verified_insns"])]
    if r["run_cnt"] or r["run_time_ns"]:
        rows += [("run_cnt", r["run_cnt"]), ("run_time_ns", r["run_time_ns"])]
    if r["recursion_misses"]:
        rows.append(("recursion_misses", r["recursion_misses"]))
    return _render_fields(rows)


def render_map(r: Dict[str, Any]) -> str:
    rows = [("id", r["id"]), ("type", r["type"]), ("name", r["name"] or None),
            ("flags", map_flags_names(r["flags"])), ("key", f"{r['bytes_key']}B"),
            ("value", f"{r['bytes_value']}B"), ("max_entries", r["max_entries"]),
            ("memlock", f"{r['bytes_memlock']}B" if r["bytes_memlock"] is not None else None),
            ("frozen", "yes" if r["frozen"] else "no"), ("btf_id", r["btf_id"]),
            ("btf_key_type_id", r["btf_key_type_id"]), ("btf_value_type_id", r["btf_value_type_id"])]
    if r["map_extra"]:
        rows.append(("map_extra", hex(r["map_extra"])))
    return _render_fields(rows)


# -- map dump ---------------------------------------------------------------------------------

def _dump_entries(ref: str) -> tuple:
    """(per-CPU?, [(key, value or [value per CPU])]) of map ``ref``, as raw bytes."""
    from ..maps.map import Map, possible_cpus
    with Map.from_fd(_open("map", ref)) as m:
        if not m.percpu:
            return False, [(k, v[:m.value_size]) for k, v in m.items_raw()]
        stride = (m.value_size + 7) & ~7      # each CPU's slot is 8-byte aligned
        ncpu = possible_cpus()
        return True, [(k, [v[c * stride:c * stride + m.value_size] for c in range(ncpu)])
                      for k, v in m.items_raw()]


def run_map_dump(args: argparse.Namespace) -> int:
    percpu, entries = _dump_entries(args.map)
    if args.json:
        doc = []
        for key, value in entries:
            if percpu:
                doc.append({"key": hex_list(key),
                            "values": [{"cpu": c, "value": hex_list(v)} for c, v in enumerate(value)]})
            else:
                doc.append({"key": hex_list(key), "value": hex_list(value)})
        emit_json(doc)
        return 0
    for key, value in entries:
        if percpu:
            print(f"key: {hex_bytes(key)}")
            for c, v in enumerate(value):
                print(f"  value (CPU {c:02d}): {hex_bytes(v)}")
        else:
            print(f"key: {hex_bytes(key)}  value: {hex_bytes(value)}")
    print(f"Found {len(entries)} element{'s' if len(entries) != 1 else ''}")
    return 0


# -- commands ---------------------------------------------------------------------------------

def run_prog_list(args: argparse.Namespace) -> int:
    recs = prog_records()
    emit_json(recs) if args.json else print(render_progs(recs))
    return 0


def run_prog_show(args: argparse.Namespace) -> int:
    rec = prog_record(args.prog)
    emit_json(rec) if args.json else print(render_prog(rec))
    return 0


def run_map_list(args: argparse.Namespace) -> int:
    recs = map_records()
    emit_json(recs) if args.json else print(render_maps(recs))
    return 0


def run_map_show(args: argparse.Namespace) -> int:
    rec = map_record(args.map)
    emit_json(rec) if args.json else print(render_map(rec))
    return 0


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    ref_help = "numeric id, or the path where it is pinned on bpffs"
    p = sub.add_parser("prog", help="programs loaded in the kernel",
                       description="Programs the kernel has loaded (any loader's), like bpftool prog.")
    ps = p.add_subparsers(dest="prog_command", metavar="COMMAND", required=True)
    ps.add_parser("list", parents=[common], help="list every loaded program",
                  description="List every program loaded in the kernel: id, type, name, tag, load "
                              "time, owner uid, translated/JITed size, map ids, BTF id."
                  ).set_defaults(func=run_prog_list)
    show = ps.add_parser("show", parents=[common], help="describe one program",
                         description="Describe one loaded program.")
    show.add_argument("prog", metavar="PROG", help=ref_help)
    show.set_defaults(func=run_prog_show)

    m = sub.add_parser("map", help="maps in the kernel",
                       description="Maps in the kernel (any loader's), like bpftool map.")
    ms = m.add_subparsers(dest="map_command", metavar="COMMAND", required=True)
    ms.add_parser("list", parents=[common], help="list every map",
                  description="List every map in the kernel: id, type, name, key/value size, "
                              "max_entries, flags, BTF id.").set_defaults(func=run_map_list)
    show = ms.add_parser("show", parents=[common], help="describe one map",
                         description="Describe one map.")
    show.add_argument("map", metavar="MAP", help=ref_help)
    show.set_defaults(func=run_map_show)
    dump = ms.add_parser("dump", parents=[common], help="print every key and value (hex)",
                         description="Print every entry of a map as hex bytes, like bpftool map "
                                     "dump; per-CPU maps show one value per possible CPU.")
    dump.add_argument("map", metavar="MAP", help=ref_help)
    dump.set_defaults(func=run_map_dump)
