"""The ``pybpf`` command line against the running kernel: load, pin, list, show, dump.

What pybpf reports is cross-checked against ``bpftool ... --json`` (an oracle
only; pybpf never runs it).  Every pin lives under the ``pin_dir`` fixture,
which removes it after the test.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any, Dict

import pytest

from pybpf.cli import main

pytestmark = pytest.mark.kernel

BPFTOOL = shutil.which("bpftool")
needs_bpftool = pytest.mark.skipif(BPFTOOL is None, reason="bpftool is the oracle")

# Fields whose meaning pybpf and bpftool share, program and map side.
PROG_FIELDS = ("id", "type", "name", "tag", "gpl_compatible", "uid", "bytes_xlated", "jited",
               "bytes_jited", "bytes_memlock", "map_ids", "btf_id")
MAP_FIELDS = ("id", "type", "name", "flags", "bytes_key", "bytes_value", "max_entries",
              "bytes_memlock", "frozen", "btf_id")


def run(capsys, *argv: Any) -> tuple:
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def run_json(capsys, *argv: Any) -> Any:
    code, out, err = run(capsys, *argv, "--json")
    assert code == 0, err
    return json.loads(out)


def bpftool(*args: str) -> Any:
    r = subprocess.run([BPFTOOL, "--json", *args], capture_output=True, text=True, check=True)
    return json.loads(r.stdout)


@pytest.fixture
def loaded(capsys, bpf_objects, pin_dir) -> Dict[str, Any]:
    """basic.bpf.o loaded with every program and map pinned under pin_dir."""
    doc = run_json(capsys, "load", bpf_objects["basic"], "--pin", pin_dir,
                   "--pin-root", pin_dir / "by-name")
    return doc


def test_load_pins_everything(loaded, pin_dir):
    progs = {p["program"]: p for p in loaded["programs"]}
    maps = {m["map"]: m for m in loaded["maps"]}
    assert set(progs) == {"compute", "fill_recs", "tail_target", "tail_entry", "tail_entry2",
                          "count_pcpu", "tp_getppid", "use_inner"}
    for name, p in progs.items():
        assert p["pinned"] == str(pin_dir / name) and (pin_dir / name).exists()
        assert p["id"] > 0 and len(p["tag"]) == 16
    assert maps[".rodata"]["pinned"] == str(pin_dir / "maps" / "basic_rodata")
    assert maps[".data.custom"]["pinned"] == str(pin_dir / "maps" / "_data_custom")
    assert maps["recs"]["pinned"] == str(pin_dir / "maps" / "recs")
    assert sorted(os.listdir(pin_dir / "maps")) == sorted(Path(m["pinned"]).name for m in maps.values())
    # LIBBPF_PIN_BY_NAME maps are pinned under --pin-root as well, as libbpf does
    assert (pin_dir / "by-name" / "pinned_counter").exists()
    assert maps[".rodata"]["frozen"] == 1 and maps[".rodata"]["name"] == "basic.rodata"


@needs_bpftool
def test_prog_list_and_show_match_bpftool(capsys, loaded, pin_dir):
    listed = {p["id"]: p for p in run_json(capsys, "prog", "list")}
    for p in loaded["programs"]:
        ours = listed[p["id"]]
        theirs = bpftool("prog", "show", "id", str(p["id"]))
        for field in PROG_FIELDS:
            assert ours.get(field) == theirs.get(field), (p["program"], field)
        assert abs(ours["loaded_at"] - theirs["loaded_at"]) <= 1
        assert run_json(capsys, "prog", "show", str(p["id"])) == ours
        assert run_json(capsys, "prog", "show", p["pinned"])["id"] == p["id"]
    code, out, _ = run(capsys, "prog", "list")
    assert code == 0
    assert out.splitlines()[0].split()[:4] == ["ID", "TYPE", "NAME", "TAG"]
    compute = next(p for p in loaded["programs"] if p["program"] == "compute")
    row = next(l for l in out.splitlines() if l.split()[:1] == [str(compute["id"])])
    assert row.split()[1:4] == ["syscall", "compute", compute["tag"]]


@needs_bpftool
def test_map_list_and_show_match_bpftool(capsys, loaded):
    listed = {m["id"]: m for m in run_json(capsys, "map", "list")}
    for m in loaded["maps"]:
        ours = listed[m["id"]]
        theirs = bpftool("map", "show", "id", str(m["id"]))
        for field in MAP_FIELDS:
            assert ours.get(field) == theirs.get(field), (m["map"], field)
        assert run_json(capsys, "map", "show", m["pinned"]) == ours
    code, out, _ = run(capsys, "map", "show", str(loaded["maps"][0]["id"]))
    assert code == 0 and "max_entries" in out


@needs_bpftool
def test_map_dump_matches_bpftool(capsys, loaded, pin_dir):
    from pybpf import Program
    with Program.from_pinned(pin_dir / "compute") as prog:   # fills results[0..3]
        assert prog.test_run(repeat=0).retval == 42          # syscall programs refuse repeat
    for name in ("results", "pcpu", "basic_rodata"):
        path = pin_dir / "maps" / name
        ours = run_json(capsys, "map", "dump", path)
        theirs = bpftool("map", "dump", "pinned", str(path))
        strip = [{k: v for k, v in e.items() if k != "formatted"} for e in theirs]
        assert ours == strip, name
    code, out, _ = run(capsys, "map", "dump", pin_dir / "maps" / "results")
    lines = out.splitlines()
    assert lines[0] == "key: 00 00 00 00  value: 15 00 00 00 00 00 00 00"   # 7 * multiplier 3
    assert lines[-1] == "Found 8 elements"


def test_load_without_pin_releases_everything(capsys, bpf_objects):
    code, out, err = run(capsys, "load", bpf_objects["legacy"])
    assert code == 0, err
    assert "not pinned" in out
    doc = run_json(capsys, "load", bpf_objects["legacy"])
    (prog,) = doc["programs"]
    assert prog["program"] == "bump" and prog["pinned"] is None
    code, _, err = run(capsys, "prog", "show", str(prog["id"]))
    assert code == 1 and f"no program with id {prog['id']}" in err


# reject.bpf.c's unchecked *array* lookup is accepted by kernels that know constant in-range
# array keys never give NULL (6.13+); a hash map lookup is NULL-able on every kernel.
REJECTED_C = r"""
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, __u64);
} vals SEC(".maps");

SEC("syscall")
int bad_deref(void *ctx)
{
	__u32 k = 0;
	__u64 *v = bpf_map_lookup_elem(&vals, &k);
	*v += 1;	/* no NULL check */
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
"""


@pytest.fixture(scope="module")
def rejected_object(tmp_path_factory) -> Path:
    clang = shutil.which("clang-19")
    if clang is None:
        pytest.skip("clang-19 builds the test object")
    d = tmp_path_factory.mktemp("cli-reject")
    src = d / "hash_reject.bpf.c"
    src.write_text(REJECTED_C)
    multiarch = f"/usr/include/{os.uname().machine}-linux-gnu"
    subprocess.run([clang, "-target", "bpf", "-g", "-O2", "-idirafter", multiarch, "-c", str(src),
                    "-o", str(d / "hash_reject.bpf.o")], check=True, capture_output=True)
    return d / "hash_reject.bpf.o"


def test_load_verifier_error(capsys, rejected_object):
    code, out, err = run(capsys, "load", rejected_object)
    assert code == 1 and out == ""
    assert err.startswith("pybpf: error: program bad_deref: BPF_PROG_LOAD")
    assert "invalid mem access" in err                          # the log's last lines
    assert "hash_reject.bpf.c" in err and "*v += 1" in err       # the failing source line
    code, _, full = run(capsys, "load", rejected_object, "--verifier-log")
    assert code == 1 and len(full.splitlines()) > len(err.splitlines())
    assert "processed" in full                                   # the complete log


def test_pin_refuses_non_bpffs(capsys, bpf_objects, tmp_path):
    code, _, err = run(capsys, "load", bpf_objects["legacy"], "--pin", tmp_path / "pins")
    assert code == 1 and "not on a bpffs mount" in err
    assert not (tmp_path / "pins").exists()


def test_pin_conflict_rolls_back(capsys, bpf_objects, pin_dir):
    first = run_json(capsys, "load", bpf_objects["legacy"], "--pin", pin_dir)
    before = sorted(os.listdir(pin_dir)), sorted(os.listdir(pin_dir / "maps"))
    code, _, err = run(capsys, "load", bpf_objects["legacy"], "--pin", pin_dir)
    assert code == 1 and "BPF_OBJ_PIN" in err and "already pinned" in err
    assert (sorted(os.listdir(pin_dir)), sorted(os.listdir(pin_dir / "maps"))) == before
    (prog,) = first["programs"]
    assert run_json(capsys, "prog", "show", pin_dir / "bump")["id"] == prog["id"]


def test_show_unknown_objects(capsys, pin_dir):
    code, _, err = run(capsys, "map", "show", str(2**31 - 1))
    assert code == 1 and "no map with id" in err
    code, _, err = run(capsys, "prog", "show", pin_dir / "nothing")
    assert code == 1 and "nothing is pinned at" in err


def test_show_checks_object_kind(capsys, loaded, pin_dir):
    code, _, err = run(capsys, "prog", "show", pin_dir / "maps" / "results")
    assert code == 1 and "is not a program" in err
    code, _, err = run(capsys, "map", "dump", pin_dir / "compute")
    assert code == 1 and "is not a map" in err
