"""`pybpf btf dump OBJ --format python --type NAME` generates importable typed classes."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

from tests.conftest import ROOT


def test_generated_module_round_trips(bpf_objects, tmp_path):
    out = subprocess.run([sys.executable, "-m", "pybpf", "btf", "dump", str(bpf_objects["basic"]),
                          "--format", "python", "--type", "rec"], capture_output=True, text=True,
                         cwd=ROOT, check=True).stdout
    path = tmp_path / "basic_types.py"
    path.write_text(out)
    spec = importlib.util.spec_from_file_location("basic_types", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["basic_types"] = mod  # dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(mod)
    r = mod.rec(count=5, color=mod.color.BLUE, name="hi", p=mod.pair(a=3, b=4), small=[1, 2, 3],
                sign=-3, flag=1)
    raw = r.to_bytes()
    assert len(raw) == mod.rec.SIZE
    back = mod.rec.from_bytes(raw)
    assert back == r and back.color is mod.color.BLUE and back.sign == -3
    # The same bytes decode identically through pybpf's own BTF codec.
    import pybpf
    from pybpf.btf import Kind
    from pybpf.btf.codec import codec_for
    s = pybpf.load_collection_spec(bpf_objects["basic"])
    v = codec_for(s.btf, s.btf.find_one("rec", Kind.STRUCT)).decode(raw)
    assert (v.count, v.name, v.p.b, v.small, v.sign, v.flag) == (5, "hi", 4, [1, 2, 3], -3, 1)
