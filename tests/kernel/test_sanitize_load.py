"""BTF sanitization on the real kernel: an object whose BTF uses every newer kind still
loads and runs when the feature probes answer as a 4.18-era kernel would."""

from __future__ import annotations

import attrs
import pytest

import pybpf
from pybpf import features
from pybpf import sys as _sys
from pybpf.btf import Kind, Spec
from pybpf.btf.sanitize import ENUM64_PLACEHOLDER, BTFFeatures
from pybpf.spec import MapKind

pytestmark = pytest.mark.kernel

NEW_KINDS = {Kind.VAR, Kind.DATASEC, Kind.FUNC, Kind.FUNC_PROTO, Kind.FLOAT, Kind.DECL_TAG,
             Kind.TYPE_TAG, Kind.ENUM64}
XDP_PASS = 2


@pytest.fixture
def spec(bpf_objects):
    return pybpf.load_collection_spec(bpf_objects["sanitize"])


def kinds(btf: Spec) -> set:
    return {btf.kind_of(i) for i in range(1, len(btf))}


def test_the_object_uses_every_kind_old_kernels_refuse(spec):
    assert NEW_KINDS <= kinds(spec.btf)
    from pybpf.btf import Linkage
    assert any(t.kind == Kind.FUNC and t.linkage == Linkage.GLOBAL for _, t in spec.btf.types())
    assert any(t.kind == Kind.ENUM and t.signed for _, t in spec.btf.types())


def test_this_kernel_needs_no_sanitization(spec):
    assert features.btf_features() == BTFFeatures.all()
    assert features.prepare_object_btf(spec.btf) is spec.btf


@pytest.mark.parametrize("missing", [f.name for f in attrs.fields(BTFFeatures)])
def test_each_sanitized_variant_loads(spec, missing):
    btf = features.prepare_object_btf(spec.btf, attrs.evolve(BTFFeatures.all(), **{missing: False}))
    assert btf is not spec.btf
    _sys.btf_load(btf.raw, context=f"object BTF without {missing}").close()


def test_no_btf_at_all(spec):
    with features.override({"btf": False}):
        assert features.prepare_object_btf(spec.btf) is None


def loaded_btf_kinds(m: pybpf.Map) -> set:
    info = _sys.map_info(m.fd)
    with _sys.btf_get_fd_by_id(info["btf_id"]) as fd:
        raw = _sys.btf_info(fd.fileno(), data=True)["btf"]
    btf = Spec.parse(raw)
    names = {t.name for _, t in btf.types()}
    return kinds(btf), names


def test_old_kernel_answer_still_loads_and_runs(spec):
    with features.override(features.OLD_KERNEL_BTF):
        feats = features.btf_features()
        assert feats == BTFFeatures.none()
        kernel_btf = features.prepare_object_btf(spec.btf)
    assert not kinds(kernel_btf) & NEW_KINDS
    assert [i for i in range(1, len(spec.btf)) if spec.btf.kind_of(i) == Kind.STRUCT] == \
        [i for i in range(1, len(spec.btf))
         if spec.btf.kind_of(i) == Kind.STRUCT and kernel_btf.kind_of(i) == Kind.STRUCT]
    # What the loader does with such an answer (see docs/features.md, "Loader integration"):
    # send the sanitized copy, create data-section maps without BTF type ids (the kernel
    # wants a DATASEC there) and load programs without func/line info.
    spec.btf = kernel_btf
    for ms in spec.maps.values():
        if ms.kind == MapKind.DATA and not feats.datasec:
            ms.key_type_id = ms.value_type_id = 0
    for ps in spec.programs.values():
        if not feats.func_info:
            ps.func_info, ps.line_info = [], []
    with pybpf.load(spec) as coll:
        prog = coll.programs["sanitized"]
        assert prog.test_run(bytes(64)).retval == XDP_PASS
        assert prog.test_run(bytes(64)).retval == XDP_PASS
        assert coll.variables["last_result"].value == 14 * 3 + 5   # global subprog + .data.tagged
        assert coll.variables["runs"].value == 2
        sample = coll.maps["samples"][0]      # decoded through the object's own (full) BTF
        assert sample.big.name == "BIG_LARGE" and sample.big.value == 1 << 32
        assert sample.sign.name == "NEG_ONE" and sample.counter == 2
        loaded, names = loaded_btf_kinds(coll.maps["samples"])
        assert not loaded & NEW_KINDS and ENUM64_PLACEHOLDER in names
        info = _sys.prog_info(prog.fd)
        assert info["nr_func_info"] == 0 and info["nr_line_info"] == 0 and info["btf_id"] == 0
