"""``pybpf load OBJ``: load every program of an object, optionally pinning everything.

Loading is all or nothing: if one map or program fails, everything created so
far is closed and the error (for a verifier rejection: the cause, the last
lines of the verifier log and the failing source line) is reported.

Pin layout of ``--pin DIR`` (bpftool's ``prog loadall OBJ DIR pinmaps DIR/maps``)::

    DIR/<program name>          every loaded program
    DIR/maps/<map name>         every map; '.' becomes '_' (bpffs reserves dots),
                                global data maps use their kernel name: basic_rodata

Maps declared with ``pinning = LIBBPF_PIN_BY_NAME`` are also pinned (and
reused when already there) at ``PIN_ROOT/<map name>``, ``/sys/fs/bpf`` by
default, exactly as libbpf does.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any, Dict, List, Tuple

from ..errors import BPFError, SyscallError, VerifierError
from ..spec import MapKind, Pinning
from .listing import boot_offset_ns, describe_map, describe_prog
from .output import Table, emit_json

__all__ = ["register", "ensure_bpffs", "pin_name"]

BPFFS_DEFAULT = "/sys/fs/bpf"


# -- bpffs ------------------------------------------------------------------------------------

def ensure_bpffs(path: str) -> None:
    """Make sure ``path`` (which need not exist yet) lies on a bpffs mount.

    When it is under ``/sys/fs/bpf`` and nothing is mounted there, bpffs is
    mounted at ``/sys/fs/bpf`` (and a note goes to stderr); anywhere else a
    missing bpffs is an error, since mounting over an arbitrary directory
    would hide what is in it.
    """
    from .. import sys as _sys
    if _sys.is_bpffs(path):
        return
    real = os.path.realpath(path)
    if real == BPFFS_DEFAULT or real.startswith(BPFFS_DEFAULT + "/"):
        if _sys.mount_bpffs(BPFFS_DEFAULT):
            print(f"pybpf: mounted bpffs at {BPFFS_DEFAULT}", file=sys.stderr)
        return
    raise BPFError(f"{path} is not on a bpffs mount; pin under {BPFFS_DEFAULT} or mount one "
                   "first: mount -t bpf bpf DIR")


def pin_name(name: str) -> str:
    """A bpffs-safe file name: bpffs refuses '.' in names (reserved for its own files)."""
    return name.replace(".", "_").replace("/", "_")


# -- pinning ----------------------------------------------------------------------------------

def _pin(obj: Any, path: str) -> None:
    try:
        obj.pin(path)
    except SyscallError as e:   # its message names the object, not where it was going
        raise BPFError(f"cannot pin at {path}: {e}") from None


def _pin_all(coll: Any, pin_dir: str) -> Tuple[Dict[str, str], Dict[str, str]]:
    """Pin every program and map of ``coll`` under ``pin_dir``; all or nothing."""
    maps_dir = os.path.join(pin_dir, "maps")
    created: List[str] = []
    progs: Dict[str, str] = {}
    maps: Dict[str, str] = {}
    try:
        for d in (pin_dir, maps_dir):
            if not os.path.isdir(d):
                os.makedirs(d)
                created.append(d)
        for name, prog in coll.programs.items():
            path = os.path.join(pin_dir, pin_name(name))
            _pin(prog, path)
            created.append(path)
            progs[name] = path
        for name, m in coll.maps.items():
            if coll.spec.maps[name].kind == MapKind.DATA:   # ".rodata" -> "basic.rodata"
                name_on_disk = coll.spec.kernel_map_names.get(name, name)
            else:
                name_on_disk = name
            path = os.path.join(maps_dir, pin_name(name_on_disk))
            _pin(m, path)
            created.append(path)
            maps[name] = path
    except BaseException:
        for path in reversed(created):
            try:
                os.rmdir(path) if os.path.isdir(path) else os.unlink(path)
            except OSError:
                pass
        raise
    return progs, maps


# -- command ----------------------------------------------------------------------------------

def run(args: argparse.Namespace) -> int:
    from .. import load as load_collection
    from ..elf import load_collection_spec
    path = os.fspath(args.object)
    spec = load_collection_spec(path)
    pin_root = args.pin_root or BPFFS_DEFAULT
    if any(m.pinning == Pinning.BY_NAME for m in spec.maps.values()):
        ensure_bpffs(pin_root)
        os.makedirs(pin_root, exist_ok=True)
    if args.pin:
        ensure_bpffs(args.pin)
    try:
        coll = load_collection(spec, kernel_btf=args.btf, pin_root=pin_root)
    except VerifierError as e:
        if args.verifier_log:
            print(e.format_log(), file=sys.stderr)
        raise
    with coll:
        prog_pins: Dict[str, str] = {}
        map_pins: Dict[str, str] = {}
        if args.pin:
            try:
                prog_pins, map_pins = _pin_all(coll, args.pin)
            except OSError as e:
                if isinstance(e, BPFError):       # SyscallError: already says what failed
                    raise
                raise BPFError(f"cannot pin under {args.pin}: {e}") from None
        offset = boot_offset_ns()
        progs = [dict(describe_prog(p.fd, offset), program=n, pinned=prog_pins.get(n))
                 for n, p in coll.programs.items()]
        maps = [dict(describe_map(m.fd), map=n, pinned=map_pins.get(n))
                for n, m in coll.maps.items()]
        if args.json:
            emit_json({"file": path, "pinned": args.pin, "programs": progs, "maps": maps})
            return 0
        kept = f"pinned under {args.pin}" if args.pin else \
            "not pinned: they are released when pybpf exits"
        print(f"loaded {path}: {len(progs)} programs, {len(maps)} maps ({kept})")
        t = Table(["PROGRAM", "ID", "TYPE", "TAG", "PINNED"], right=["ID"])
        for p in progs:
            t.add(p["program"], p["id"], p["type"], p["tag"], p["pinned"])
        print(t.render())
        t = Table(["MAP", "ID", "TYPE", "KERNEL NAME", "PINNED"], right=["ID"])
        for m in maps:
            t.add(m["map"], m["id"], m["type"], m["name"], m["pinned"])
        print(t.render())
    return 0


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "load", parents=[common], help="load every program of an object into the kernel",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Create the maps and load every program (all or nothing) of OBJ. Exit status "
                    "0 means every program passed the verifier.\n\n"
                    "Without --pin, the programs and maps are released when pybpf exits (only "
                    "maps declared with LIBBPF_PIN_BY_NAME stay, pinned under --pin-root).",
        epilog="--pin DIR layout (like 'bpftool prog loadall OBJ DIR pinmaps DIR/maps'):\n"
               "  DIR/<program>       every program, by its function name\n"
               "  DIR/maps/<map>      every map; global data maps by kernel name, '.' -> '_'\n"
               "                      (e.g. DIR/maps/basic_rodata)\n"
               "DIR must be on bpffs; under /sys/fs/bpf, bpffs is mounted when missing.\n"
               "Remove everything with: rm -r DIR")
    p.add_argument("object", metavar="OBJ", help="BPF ELF object")
    p.add_argument("--pin", metavar="DIR", help="pin programs at DIR/<name> and maps at DIR/maps/<name>")
    p.add_argument("--pin-root", metavar="DIR",
                   help="where LIBBPF_PIN_BY_NAME maps are pinned/reused (default: /sys/fs/bpf)")
    p.add_argument("--btf", metavar="FILE",
                   help="target BTF for CO-RE: raw BTF or an ELF with .BTF "
                        "(default: /sys/kernel/btf/vmlinux)")
    p.add_argument("--verifier-log", action="store_true",
                   help="on a verifier rejection, print the complete verifier log to stderr")
    p.set_defaults(func=run)
