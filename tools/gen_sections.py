#!/usr/bin/env python3
"""Regenerate the SEC() table in pybpf/elf/sections.py from a libbpf.c.

libbpf's ``section_defs`` array is the reference for what a section name
means.  This tool reads the ``SEC_DEF("pattern", PROG_TYPE, BPF_ATTACH, FLAGS,
...)`` lines of a libbpf.c (the GitHub libbpf or the kernel's
tools/lib/bpf copy), derives pybpf's ``attach_kind`` for each entry, and
renders the rows between the ``# BEGIN GENERATED`` / ``# END GENERATED``
markers of sections.py.

    python tools/gen_sections.py path/to/libbpf.c            # print the rows
    python tools/gen_sections.py path/to/libbpf.c --check    # exit 1 if out of date
    python tools/gen_sections.py path/to/libbpf.c --write    # update sections.py

Entries whose flags use a libbpf flag pybpf does not know make the tool fail,
so a new libbpf feature is looked at rather than silently mistranslated.
"""

from __future__ import annotations

import argparse
import pathlib
import re
import sys
from typing import List, Optional, Tuple

SECTIONS_PY = pathlib.Path(__file__).resolve().parent.parent / "pybpf" / "elf" / "sections.py"
BEGIN = "# BEGIN GENERATED"
END = "# END GENERATED"

Row = Tuple[str, str, Optional[str], str, Optional[str]]

# libbpf flag name -> the alias sections.py uses for it.
_FLAG_ALIASES = {
    "SEC_NONE": "_N",
    "SEC_ATTACHABLE": "_A",
    "SEC_ATTACHABLE_OPT": "_AO",
    "SEC_ATTACH_BTF": "_BTF",
    "SEC_ATTACH_BTF_MULTI": "_MULTI",
    "SEC_SLEEPABLE": "_S",
    "SEC_XDP_FRAGS": "_FRAGS",
    "SEC_USDT": "_USDT",
}
# Pre-1.0 libbpf marker for lenient prefix matching; pybpf handles that rule itself.
_IGNORED_FLAGS = {"SEC_SLOPPY_PFX"}

# attach_kind for section heads whose kind is not simply the head with '.' -> '_'.
_KIND_OVERRIDES = {
    "tp": "tracepoint",
    "raw_tracepoint": "raw_tp",
    "raw_tracepoint.w": "raw_tp",
    "raw_tp.w": "raw_tp",
    "xdp.frags": "xdp",
    "classifier": "tc",
    "action": None,          # act_bpf: attached as a TC action, not by a link
    "lwt_in": None,          # lwt_*: installed with a route (netlink), not by a link
    "lwt_out": None,
    "lwt_xmit": None,
    "lwt_seg6local": None,
    "sockops": "cgroup",
    "cgroup_skb": "cgroup",
}

_SECTION_DEFS = re.compile(r"section_defs\[\]\s*=\s*\{(.*?)\n\};", re.S)
_SEC_DEF = re.compile(
    r'SEC_DEF\(\s*"(?P<pattern>[^"]+)"\s*,\s*(?P<ptype>\w+)\s*,\s*(?P<atype>\w+)\s*,'
    r'\s*(?P<flags>[A-Z_|\s]+?)\s*(?:,[^)]*)?\)')


def attach_kind(pattern: str) -> Optional[str]:
    """pybpf's attach mechanism for a libbpf section pattern."""
    head, _, tail = pattern.rstrip("+").partition("/")
    if head.endswith(".s"):
        head = head[:-2]
    if head in ("xdp", "xdp.frags") and tail in ("devmap", "cpumap"):
        return None         # stored in a DEVMAP/CPUMAP value, never attached
    if head == "tc" and tail:
        return "tcx"        # tc/ingress, tc/egress are tcx aliases
    if head in _KIND_OVERRIDES:
        return _KIND_OVERRIDES[head]
    return head.replace(".", "_")


def _flags(expr: str, pattern: str) -> str:
    names = [n.strip() for n in expr.split("|") if n.strip()]
    aliases = []
    for n in names:
        if n in _IGNORED_FLAGS:
            continue
        if n not in _FLAG_ALIASES:
            raise SystemExit(f"{pattern}: unknown libbpf flag {n}; teach pybpf.elf.sections about it")
        aliases.append(_FLAG_ALIASES[n])
    if len(aliases) > 1 and "_N" in aliases:
        aliases.remove("_N")
    return " | ".join(aliases) or "_N"


def rows_from_libbpf(text: str) -> List[Row]:
    """The SEC_DEF entries of libbpf.c's ``section_defs``, as sections.py rows."""
    m = _SECTION_DEFS.search(text)
    if not m:
        raise SystemExit("no 'section_defs[] = {' array found")
    rows: List[Row] = []
    for d in _SEC_DEF.finditer(m.group(1)):
        pattern, atype = d["pattern"], d["atype"]
        rows.append((pattern, d["ptype"], None if atype == "0" else atype.removeprefix("BPF_"),
                     _flags(d["flags"], pattern), attach_kind(pattern)))
    if not rows:
        raise SystemExit("section_defs has no SEC_DEF entries")
    return rows


def render(rows: List[Row]) -> str:
    """The table block as it appears in sections.py (markers excluded)."""
    out = ["# (pattern, program type, expected attach type, flags, attach kind)",
           "_ROWS: Tuple[Tuple[str, str, Optional[str], SecFlag, Optional[str]], ...] = ("]
    for pattern, ptype, atype, flags, kind in rows:
        a = "None" if atype is None else f'"{atype}"'
        k = "None" if kind is None else f'"{kind}"'
        out.append(f'    ("{pattern}", "{ptype}", {a}, {flags}, {k}),')
    out.append(")")
    return "\n".join(out) + "\n"


def replace_block(module_text: str, block: str) -> str:
    """``module_text`` with the lines between the markers replaced by ``block``."""
    begin = module_text.index(BEGIN)
    begin = module_text.index("\n", begin) + 1
    end = module_text.index(END, begin)
    return module_text[:begin] + block + module_text[end:]


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("libbpf_c", type=pathlib.Path, help="path to libbpf.c")
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true", help="exit 1 if sections.py is out of date")
    mode.add_argument("--write", action="store_true", help="rewrite the table in sections.py")
    args = ap.parse_args(argv)

    block = render(rows_from_libbpf(args.libbpf_c.read_text()))
    current = SECTIONS_PY.read_text()
    updated = replace_block(current, block)
    if args.check:
        if updated != current:
            print(f"{SECTIONS_PY} is out of date with {args.libbpf_c}", file=sys.stderr)
            return 1
        return 0
    if args.write:
        SECTIONS_PY.write_text(updated)
        return 0
    sys.stdout.write(block)
    return 0


if __name__ == "__main__":
    sys.exit(main())
