"""The `user` collector: an operator's own object plus a YAML mapping of maps to metrics."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from .conftest import LIBC

pytestmark = pytest.mark.kernel

HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def user_object(tmp_path_factory, agent_objects) -> Path:
    import shutil
    from tools.build_bpf import build
    from .conftest import AGENT_BPF
    out = tmp_path_factory.mktemp("userprog")
    for name in ("vmlinux.h", "vmlinux.h.src"):   # reuse the header generated for programs/
        if (AGENT_BPF / name).exists():
            shutil.copy2(AGENT_BPF / name, out / name)
    return build(out, [HERE / "progs" / "user_counts.bpf.c"])[0]


def test_user_program_counters_and_histogram(start_collector, user_object):
    if os.uname().machine != "x86_64":
        pytest.skip("syscall numbers below are x86_64's")
    prog = {
        "name": "calls",
        "object": str(user_object),
        "rodata": {"target_tgid": os.getpid()},
        "counters": [{
            "name": "user_calls", "help": "calls by syscall and comm", "map": "calls",
            "labels": [
                {"name": "syscall", "size": 4, "decoders": [{"name": "syscall"}]},
                {"name": "comm", "size": 16, "decoders": [
                    {"name": "string"}, {"name": "regexp", "regexps": ["^(py).*", "^pytest"]}]},
            ]}],
        "histograms": [{
            "name": "user_nr_log2", "help": "syscall numbers", "map": "arg_sizes",
            "bucket_type": "exp2", "bucket_min": 0, "bucket_max": 10,
            "labels": [{"name": "syscall", "decoders": [{"name": "uint"},
                                                        {"name": "static_map", "static_map": {"39": "getpid"},
                                                         "allow_unknown": True}]},
                       {"name": "bucket"}]}],
    }
    r = start_collector("user", programs=[prog])
    assert r.c.state == "up"
    for _ in range(25):
        LIBC.syscall(39)
    m = r.metrics()
    comm = "py"   # the regexp's first group
    assert m["user_calls"].samples[("getpid", comm)] == 25
    h = m["user_nr_log2"].samples[("getpid",)]
    # ceil(log2(39)) = 6 -> le = 64
    assert h.count == 25 and dict(h.buckets)[64.0] == 25 and dict(h.buckets)[32.0] == 0


def test_user_program_missing_object_is_reported(start_collector):
    from pybpf_agent.collectors.base import CollectorError
    with pytest.raises(CollectorError, match="nonexistent"):
        start_collector("user", programs=[{"name": "x", "object": "/nonexistent.bpf.o"}])
