"""Pinning by name under a pin root: reuse, and incompatibility errors naming each difference."""

from __future__ import annotations

import os

import pytest

import pybpf
from pybpf.consts import MapType
from pybpf.maps import Map, check_compatible, differences, open_pinned, pin_path
from pybpf.spec import MapSpec

pytestmark = pytest.mark.kernel


def test_pinned_map_is_reused(bpf_objects, pin_dir):
    spec = pybpf.load_collection_spec(bpf_objects["maps_kinds"])
    with pybpf.load(spec, pin_root=pin_dir) as first:
        assert os.path.exists(pin_dir / "maps_pinned")
        first.maps["maps_pinned"][1] = 11
        first_id = first.maps["maps_pinned"].info().id
    with pybpf.load(spec, pin_root=pin_dir) as second:           # the pin kept it alive
        m = second.maps["maps_pinned"]
        assert m.info().id == first_id and m[1] == 11 and m.name == "maps_pinned"
    reopened = open_pinned(spec.maps["maps_pinned"], pin_dir)
    assert reopened is not None
    with reopened:
        assert reopened.info().id == first_id and reopened.spec is spec.maps["maps_pinned"]
        assert reopened[1] == 11                                  # decoded through the spec's BTF


def test_incompatible_pinned_map(bpf_objects, pin_dir):
    spec = pybpf.load_collection_spec(bpf_objects["maps_kinds"])
    pybpf.load(spec, pin_root=pin_dir).close()
    bigger = spec.copy()
    bigger.maps["maps_pinned"].max_entries = 32
    with pytest.raises(pybpf.IncompatibleError,
                       match=r"maps_pinned.*max_entries 16 \(pinned\) != 32 \(spec\)"):
        pybpf.load(bigger, pin_root=pin_dir)
    with pytest.raises(pybpf.IncompatibleError, match="max_entries"):
        open_pinned(bigger.maps["maps_pinned"], pin_dir)


def test_differences_name_every_attribute(pin_dir):
    spec = MapSpec("compat", MapType.HASH, 4, 8, 16)
    with Map.create(spec) as m:
        m.pin(pin_path(spec, pin_dir))
        assert differences(spec, m) == []
        check_compatible(spec, m)
        other = MapSpec("compat", MapType.LRU_HASH, 8, 16, 32, flags=0x1, map_extra=0)
        assert differences(other, m) == [
            "type HASH (pinned) != LRU_HASH (spec)", "key_size 4 (pinned) != 8 (spec)",
            "value_size 8 (pinned) != 16 (spec)", "max_entries 16 (pinned) != 32 (spec)",
            "flags 0x0 (pinned) != 0x1 (spec)"]
        with pytest.raises(pybpf.IncompatibleError, match="pinned map compat is incompatible"):
            open_pinned(other, pin_dir)
    assert open_pinned(MapSpec("absent", MapType.HASH, 4, 4, 1), pin_dir) is None
    assert pin_path(spec) == "/sys/fs/bpf/compat"
