"""pybpf sends the kernel the same instructions libbpf does (issue 3: `inspect --insns` parity).

libbpf (libbpf.so.1 from Debian's libbpf1, present as a dependency of bpftool)
is used as a test oracle only, through ctypes.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import pybpf
from pybpf.kbtf import load_kernel_btf
from pybpf.progs.loader import prepare_insns
from tests.kernel.libbpf_oracle import LIBBPF, libbpf_insns

pytestmark = [pytest.mark.kernel,
              pytest.mark.skipif(LIBBPF is None, reason="libbpf.so.1 (test oracle) not installed")]

ANCHOR_OBJ = Path(__file__).resolve().parents[3] / "shared" / "bench-anchors" / "src" / "objload.bpf.c"


def _pybpf_insns(path):
    spec = pybpf.load_collection_spec(path)
    return {n: bytes(prepare_insns(p, {}, lambda: load_kernel_btf(None))[0])
            for n, p in spec.programs.items() if p.autoload}


def test_instructions_match_libbpf(bpf_objects, pin_dir):
    # basic: subprograms in .text and in the program section, callbacks, globals in every
    # data section, map-in-map and prog arrays.  (kinds.bpf.o has sections libbpf 1.1 predates.)
    obj = str(bpf_objects["basic"])
    ours = _pybpf_insns(obj)
    theirs = libbpf_insns(obj, pin_root=str(pin_dir))    # basic pins a map by name
    assert set(ours) == set(theirs)
    for prog in ours:
        assert ours[prog].hex() == theirs[prog].hex(), prog


def test_core_object_matches_libbpf(bpf_objects, tmp_path):
    """objload.bpf.c from the bench anchors: 8 programs, 120 CO-RE relocations."""
    if not ANCHOR_OBJ.exists():
        pytest.skip("../shared/bench-anchors not present")
    from tools.build_bpf import build
    obj = str(build(tmp_path, [ANCHOR_OBJ])[0])
    ours = _pybpf_insns(obj)
    theirs = libbpf_insns(obj)
    assert set(ours) == set(theirs) and len(ours) == 8
    for prog in ours:
        assert ours[prog].hex() == theirs[prog].hex(), prog
