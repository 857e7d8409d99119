"""``pybpf inspect OBJ``: what an ELF object holds, without loading it.

The default report lists programs, maps, global variables and a BTF summary.
``--insns`` prints each program's instructions exactly as they would be sent
to the kernel (subprograms linked, CO-RE applied, map fd immediates shown as
0), one 16-hex-digit instruction per line in memory order, so two loaders'
outputs can be diffed.  ``--core`` explains every CO-RE relocation: which
instruction, what access in source terms, and what it resolved to.

Everything here is parsing plus the pure CO-RE code; the kernel-side inputs
are the target BTF file (``/sys/kernel/btf/vmlinux`` unless ``--btf``) and,
for programs with ``__ksym`` externs, the running kernel's BTF and kallsyms.
"""

from __future__ import annotations

import argparse
import collections
import os
from typing import Any, Callable, Dict, List, Optional

from ..btf import Kind, Spec
from ..errors import BPFError, CORERelocationError
from ..spec import CollectionSpec, MapSpec, Pinning, ProgramSpec
from .output import Table, emit_json, format_value, jsonable, map_flags_names, map_type_name
from .output import prog_type_name, yes_no

__all__ = ["register", "inspect_report", "render_report", "program_insns", "core_report",
           "render_core"]


# -- data -------------------------------------------------------------------------------------

def _typed_size(btf: Optional[Spec], type_id: int, size: int) -> Dict[str, Any]:
    name = None
    if btf is not None and type_id:
        name = btf.type_name(type_id)
        if btf.kind_of(type_id) == Kind.DATASEC:
            name = f"datasec {name}"
    return {"type": name, "type_id": type_id or None, "size": size}


def _map_entry(spec: CollectionSpec, name: str, ms: MapSpec) -> Dict[str, Any]:
    return {
        "name": name,
        "kernel_name": spec.kernel_map_names.get(name, ms.kernel_name),
        "type": map_type_name(ms.type),
        "key": _typed_size(ms.btf or spec.btf, ms.key_type_id, ms.key_size),
        "value": _typed_size(ms.btf or spec.btf, ms.value_type_id, ms.value_size),
        "max_entries": ms.max_entries,
        "flags": ms.flags,
        "kind": ms.kind.value,
        "section": ms.section,
        "pinning": "by_name" if ms.pinning == Pinning.BY_NAME else None,
        "inner_map": ms.inner_map.name if ms.inner_map is not None else None,
    }


def _prog_entry(ps: ProgramSpec) -> Dict[str, Any]:
    return {
        "name": ps.name,
        "section": ps.section,
        "type": prog_type_name(ps.prog_type),
        "insns": ps.insn_count,
        "autoload": ps.autoload,
        "attach_kind": ps.attach_kind,
        "attach_to": ps.attach_to or None,
        "sleepable": ps.sleepable,
        "maps": sorted({r.map for r in ps.map_refs}),
        "core_relos": len(ps.core_relos),
        "func_info": len(ps.func_info),
        "line_info": len(ps.line_info),
        "supported": ps.supported,
        "unsupported_reason": ps.unsupported_reason or None,
    }


def _variable_value(v: Any) -> Any:
    try:
        return v.value
    except BPFError:
        return v.raw


def _btf_summary(spec: CollectionSpec, data: bytes) -> Optional[Dict[str, Any]]:
    btf = spec.btf
    if btf is None:
        return None
    kinds: Dict[str, int] = collections.Counter(btf.kind_of(i).name for i in range(btf.start_id, len(btf)))
    summary: Dict[str, Any] = {
        "types": len(btf) - btf.start_id,
        "kinds": dict(sorted(kinds.items(), key=lambda kv: (-kv[1], kv[0]))),
        "strings_bytes": len(btf.strings_raw),
        "btf_ext": False, "func_info": 0, "line_info": 0, "core_relos": 0,
    }
    from ..btf.ext import parse_ext
    from ..elf.elffile import read_elf
    ext_sec = read_elf(data, spec.file or "<bytes>").section(".BTF.ext")
    if ext_sec is not None:
        ext = parse_ext(ext_sec.data, btf, file=spec.file)
        summary.update(btf_ext=True,
                       func_info=sum(len(v) for v in ext.func_info.values()),
                       line_info=sum(len(v) for v in ext.line_info.values()),
                       core_relos=sum(len(v) for v in ext.core_relos.values()))
    return summary


def inspect_report(path: str) -> Dict[str, Any]:
    """Everything ``pybpf inspect`` shows about the object at ``path``, as JSON-ready data."""
    from ..elf import load_collection_spec
    spec = load_collection_spec(path)
    with open(path, "rb") as f:       # readable: load_collection_spec just read it
        data = f.read()
    return {
        "file": path,
        "name": spec.name,
        "byteorder": "little" if spec.byteorder == "<" else "big",
        "license": spec.license,
        "kern_version": spec.kern_version,
        "programs": [_prog_entry(p) for p in spec.programs.values()],
        "maps": [_map_entry(spec, n, m) for n, m in spec.maps.items()],
        "variables": [
            {"name": v.name, "section": v.section, "offset": v.offset, "size": v.size,
             "type": v.btf.type_name(v.type_id) if v.btf is not None and v.type_id else None,
             "value": jsonable(_variable_value(v))}
            for v in sorted(spec.variables.values(), key=lambda v: (v.section, v.offset))],
        "btf": _btf_summary(spec, data),
    }


def _typed_text(kv: Dict[str, Any]) -> str:
    return f"{kv['type']} ({kv['size']})" if kv["type"] else str(kv["size"])


def render_report(r: Dict[str, Any]) -> str:
    """The human-readable form of :func:`inspect_report`'s data."""
    out: List[str] = [
        f"{r['file']}: {r['byteorder']}-endian BPF object '{r['name']}', license "
        f"{r['license']!r}, {len(r['programs'])} programs, {len(r['maps'])} maps, "
        f"{len(r['variables'])} variables"]
    progs = Table(["NAME", "SECTION", "TYPE", "INSNS", "AUTOLOAD", "MAPS"], right=["INSNS"], indent=2)
    for p in r["programs"]:
        typ = p["type"] if p["supported"] else f"{p['type']} (unsupported: {p['unsupported_reason']})"
        progs.add(p["name"], p["section"], typ, p["insns"], yes_no(p["autoload"]),
                  ",".join(p["maps"]) or None)
    out += ["", "Programs:", progs.render() if progs else "  (none)"]
    maps = Table(["NAME", "KERNEL NAME", "TYPE", "KEY", "VALUE", "MAX_ENTRIES", "FLAGS"],
                 right=["MAX_ENTRIES"], indent=2)
    for m in r["maps"]:
        flags = map_flags_names(m["flags"])
        if m["pinning"]:
            flags += "  pinned by name"
        maps.add(m["name"], m["kernel_name"], m["type"], _typed_text(m["key"]),
                 _typed_text(m["value"]), m["max_entries"], flags)
    out += ["", "Maps:", maps.render() if maps else "  (none)"]
    variables = Table(["NAME", "SECTION", "OFFSET", "SIZE", "TYPE", "VALUE"],
                      right=["OFFSET", "SIZE"], indent=2)
    for v in r["variables"]:
        variables.add(v["name"], v["section"], v["offset"], v["size"], v["type"],
                      format_value(v["value"]))
    out += ["", "Global variables:", variables.render() if variables else "  (none)"]
    b = r["btf"]
    out += ["", "BTF:"]
    if b is None:
        out.append("  none (built without -g: no BTF maps, CO-RE or source lines)")
    else:
        kinds = ", ".join(f"{k} {n}" for k, n in b["kinds"].items())
        out.append(f"  {b['types']} types: {kinds}")
        if b["btf_ext"]:
            out.append(f"  .BTF.ext: {b['func_info']} func_info, {b['line_info']} line_info, "
                       f"{b['core_relos']} CO-RE relocations")
        else:
            out.append("  no .BTF.ext (no func/line info, no CO-RE relocations)")
    return "\n".join(out)


# -- instructions and CO-RE -------------------------------------------------------------------

KernelBTF = Callable[[], Spec]


def _target_btf(path: Optional[str]) -> KernelBTF:
    """A lazy loader of the target BTF: only objects with CO-RE relocations read it."""
    cache: List[Spec] = []

    def load() -> Spec:
        if not cache:
            from ..kbtf import load_kernel_btf
            cache.append(load_kernel_btf(path))
        return cache[0]
    return load


def _select(spec: CollectionSpec, name: Optional[str]) -> List[ProgramSpec]:
    if name is None:
        return list(spec.programs.values())
    if name not in spec.programs:
        have = ", ".join(spec.programs) or "none"
        raise BPFError(f"{spec.file}: no program named {name!r} (programs: {have})")
    return [spec.programs[name]]


def program_insns(spec: CollectionSpec, kernel_btf: KernelBTF,
                  name: Optional[str] = None) -> Dict[str, bytes]:
    """Each program's instructions as they would go to the kernel, map fds as 0.

    Subprograms are linked and CO-RE relocations applied against
    ``kernel_btf()`` (called only when a program has relocations).
    """
    from ..progs.loader import prepare_insns
    return {ps.name: bytes(prepare_insns(ps, {}, kernel_btf, ksyms=_ksyms(ps))[0])
            for ps in _select(spec, name)}


def _ksyms(ps: ProgramSpec) -> Optional[Dict[str, Any]]:
    """``__ksym`` externs resolved against the running kernel, as libbpf would resolve
    them (module BTF fds shown as 0, like map fds); None when the program has none."""
    if not any(r.section == ".ksyms" for r in ps.extern_refs):
        return None
    import attrs
    from ..externs import KsymResolver
    from ..kbtf import load_kernel_btf
    with KsymResolver(lambda: load_kernel_btf(None)) as resolver:
        found = resolver.resolve_all(ps.name, ps.btf, ps.extern_refs)
    return {n: attrs.evolve(k, btf_fd=0) for n, k in found.items()}


def core_report(spec: CollectionSpec, kernel_btf: KernelBTF,
                name: Optional[str] = None) -> List[Dict[str, Any]]:
    """One record per CO-RE relocation of each program (or a per-program error record)."""
    from ..core.accessor import KIND_NAMES
    from ..progs.loader import prepare_insns
    rows: List[Dict[str, Any]] = []
    for ps in _select(spec, name):
        if not ps.core_relos:
            continue
        try:
            _, fixups = prepare_insns(ps, {}, kernel_btf)
        except CORERelocationError as e:
            rows.append({"program": ps.name, "error": str(e)})
            continue
        for fx in fixups:
            rows.append({
                "program": ps.name,
                "insn": fx.insn_index,
                "kind": KIND_NAMES[fx.kind],
                "access": fx.path,
                "local_type": spec.btf.type_name(fx.local_type_id) if fx.local_type_id else None,
                "local": fx.local_value,
                "target": None if fx.poisoned else fx.target_value,
                "poisoned": fx.poisoned,
                "reason": fx.reason or None,
                "target_type": fx.target_type or None,
                "access_size": [fx.local_size, fx.target_size] if fx.new_size is not None else None,
            })
    return rows


def render_core(rows: List[Dict[str, Any]]) -> str:
    if not rows:
        return "no CO-RE relocations"
    t = Table(["PROGRAM", "INSN", "KIND", "ACCESS", "LOCAL", "TARGET", "RESOLVED TO"],
              right=["INSN", "LOCAL", "TARGET"])
    errors = []
    for r in rows:
        if "error" in r:
            errors.append(f"{r['program']}: error: {r['error']}")
            continue
        if r["poisoned"]:
            what = f"POISONED: {r['reason']}"
        else:
            what = r["target_type"] or ""
            if r["reason"]:
                what = f"not found: {r['reason']}"
            if r["access_size"]:
                what += f" (access size {r['access_size'][0]} -> {r['access_size'][1]})"
        t.add(r["program"], r["insn"], r["kind"], r["access"], r["local"], r["target"], what)
    return "\n".join(([t.render()] if t else []) + errors)


# -- command ----------------------------------------------------------------------------------

def run(args: argparse.Namespace) -> int:
    path = os.fspath(args.object)
    if not (args.insns or args.core):
        if args.prog is not None:
            raise BPFError("--prog selects programs for --insns or --core")
        report = inspect_report(path)
        emit_json(report) if args.json else print(render_report(report))
        return 0
    from ..elf import load_collection_spec
    spec = load_collection_spec(path)
    kbtf = _target_btf(args.btf)
    doc: Dict[str, Any] = {}
    status = 0
    if args.insns:
        insns = program_insns(spec, kbtf, args.prog)
        if args.json:
            doc["insns"] = {n: [b[i:i + 8].hex() for i in range(0, len(b), 8)] for n, b in insns.items()}
        else:
            for n, b in insns.items():
                print(f"# {n}")
                for i in range(0, len(b), 8):
                    print(b[i:i + 8].hex())
    if args.core:
        rows = core_report(spec, kbtf, args.prog)
        status = 1 if any("error" in r for r in rows) else 0
        if args.json:
            doc["core"] = rows
        else:
            print(render_core(rows))
    if args.json:
        emit_json(doc)
    return status


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "inspect", parents=[common], help="show what a BPF object holds (no kernel needed)",
        description="List the programs, maps, global variables and BTF of a clang-built BPF "
                    "object without loading anything.",
        epilog="--insns prints, per program, '# NAME' and then one instruction per line as 16 "
               "hex digits in memory order: subprograms linked and CO-RE applied, exactly as "
               "they would be sent to the kernel except that map fds are shown as 0 "
               "(.kconfig externs load from the .kconfig map; __ksym externs are resolved "
               "against the running kernel, module BTF fds shown as 0). --core lists each CO-RE "
               "relocation: program, instruction index, kind, access path, local -> target "
               "value, or why it was poisoned. Both read the target BTF (--btf, default "
               "/sys/kernel/btf/vmlinux) only when the object has CO-RE relocations.")
    p.add_argument("object", metavar="OBJ", help="BPF ELF object (clang -target bpf -g)")
    p.add_argument("--insns", action="store_true", help="dump instructions as loaded (hex)")
    p.add_argument("--core", action="store_true", help="explain every CO-RE relocation")
    p.add_argument("--prog", metavar="NAME", help="only this program (with --insns/--core)")
    p.add_argument("--btf", metavar="FILE",
                   help="target BTF for CO-RE: raw BTF or an ELF with .BTF "
                        "(default: /sys/kernel/btf/vmlinux)")
    p.set_defaults(func=run)
