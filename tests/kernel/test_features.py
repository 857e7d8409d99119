"""Feature probing and privileges, on the real kernel.

bpftool (when installed) is the oracle for program and map types; everything
else is checked against what the kernel demonstrably does (a kprobe PMU in
sysfs, a verifier message) or against facts true of every kernel pybpf runs on.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile

import pytest

from pybpf import features, privileges
from pybpf import sys as _sys
from pybpf.cli import main as cli_main
from pybpf.consts import AttachType, FuncId, MapType, ProgType
from pybpf.errors import NotSupportedError
from pybpf.features import Code, HelperStatus, Probe
from pybpf.features.cache import FeatureCache, boot_identity
from tests.conftest import ROOT

pytestmark = pytest.mark.kernel

KERNEL = privileges.kernel_version()
BPFTOOL_NAMES = {"cgroup_storage": "cgroup_storage_deprecated",
                 "percpu_cgroup_storage": "percpu_cgroup_storage_deprecated"}


def run_python(code: str, *, env: dict = None, prefix: tuple = ()) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter (fresh in-process cache) with pybpf importable."""
    e = dict(os.environ, PYTHONPATH=str(ROOT), **(env or {}))
    return subprocess.run([*prefix, sys.executable, "-c", code], capture_output=True, text=True,
                          env=e, cwd="/", timeout=120)


@pytest.fixture(scope="module")
def bpftool():
    path = shutil.which("bpftool")
    if path is None:
        pytest.skip("bpftool is not installed (the oracle for program and map types)")
    out = subprocess.run([path, "feature", "probe", "--json"], capture_output=True, text=True)
    if out.returncode != 0:
        pytest.skip(f"bpftool feature probe failed: {out.stderr.strip()}")
    return json.loads(out.stdout)


# -- program types, map types ---------------------------------------------------------------

def test_program_types_agree_with_bpftool(bpftool):
    checked = 0
    for key, available in bpftool["program_types"].items():
        name = key[len("have_"):-len("_prog_type")]
        p = features.probe(f"prog_type:{name}")
        assert p.supported == available, (name, p)
        assert p.supported or p.reason
        checked += 1
    assert checked >= 25


def test_map_types_agree_with_bpftool(bpftool):
    for key, available in bpftool["map_types"].items():
        name = key[len("have_"):-len("_map_type")]
        assert features.have_map_type(BPFTOOL_NAMES.get(name, name)) == available, name


def test_basic_types_every_kernel_has():
    for pt in (ProgType.SOCKET_FILTER, ProgType.XDP, ProgType.SCHED_CLS, ProgType.TRACEPOINT,
               ProgType.KPROBE, ProgType.CGROUP_SKB):
        assert features.have_prog_type(pt)
        features.require_prog_type(pt)
    for mt in (MapType.HASH, MapType.ARRAY, MapType.PERCPU_ARRAY, MapType.LRU_HASH,
               MapType.RINGBUF, MapType.HASH_OF_MAPS, MapType.SK_STORAGE):
        assert features.have_map_type(mt)
    assert features.have_map_type("ringbuf") and features.have_prog_type("XDP")


def test_missing_type_raises_with_reason_and_version():
    assert not features.have_map_type(MapType.UNSPEC)
    with pytest.raises(NotSupportedError) as e:
        features.require_map_type(MapType.UNSPEC)
    assert e.value.feature == "map type unspec" and "EINVAL" in e.value.reason
    with features.override({"map_type:ringbuf": False}):
        with pytest.raises(NotSupportedError, match=r"map type ringbuf .*Linux 5\.8"):
            features.require_map_type(MapType.RINGBUF)


def test_trampolines_are_refused_here_with_a_clear_reason(bpftool):
    """This host's kernel refuses BPF trampolines with EPERM: the answer is a conclusive
    no that says so (in the guest kernels, fentry loads)."""
    tracing = bpftool["program_types"]["have_tracing_prog_type"]
    assert features.have_prog_type(ProgType.TRACING) == tracing
    if tracing:
        assert features.have_feature("fentry")
        return
    p = features.probe("fentry")
    assert not p.supported and p.code == Code.REFUSED
    with pytest.raises(NotSupportedError) as e:
        features.require_feature("fentry")
    assert "refused by this kernel" in str(e.value) and "EPERM" in str(e.value)
    assert e.value.min_kernel is None        # upgrading would not help
    assert not features.have_attach_type(AttachType.TRACE_FENTRY)
    assert features.probe("attach_type:trace_fentry").code == Code.REFUSED


# -- helpers and kfuncs ---------------------------------------------------------------------

def test_helpers_allowed_refused_and_unknown():
    assert features.have_helper(ProgType.SOCKET_FILTER, FuncId.ktime_get_ns)
    assert features.have_helper(ProgType.XDP, "bpf_xdp_adjust_head")
    assert features.have_helper("sched_cls", "skb_store_bytes")
    assert features.helper_status(ProgType.XDP, FuncId.sys_bpf) == HelperStatus.NOT_ALLOWED
    assert features.helper_status(ProgType.TRACEPOINT, FuncId.redirect) == HelperStatus.NOT_ALLOWED
    assert features.helper_status(ProgType.XDP, 100000) == HelperStatus.UNKNOWN
    with pytest.raises(NotSupportedError, match="xdp programs may not call bpf_sys_bpf"):
        features.require_helper(ProgType.XDP, FuncId.sys_bpf)
    with pytest.raises(NotSupportedError, match="does not know helper #100000"):
        features.require_helper(ProgType.XDP, 100000)
    if not features.have_prog_type(ProgType.LIRC_MODE2):
        assert features.helper_status(ProgType.LIRC_MODE2, FuncId.rc_repeat) == \
            HelperStatus.PROG_TYPE


def test_helper_lists_are_within_bpftool_superset(bpftool):
    """bpftool may over-report (older ones miss "program of this type cannot use helper")
    and skips trace_printk; what pybpf reports available must be among its answers."""
    report = features.probe_all()
    theirs_all = set()
    for key, names in bpftool["helpers"].items():
        theirs_all |= set(names)
    newest = max(FuncId["_".join(n.split("_")[1:])] for n in theirs_all)
    for key, names in bpftool["helpers"].items():
        pt = key[:-len("_available_helpers")]
        if pt not in report.helpers:
            continue
        extra = {h for h in set(report.helpers[pt]) - set(names)
                 if h not in ("bpf_trace_printk", "bpf_trace_vprintk")
                 and FuncId[h[len("bpf_"):]] <= newest}
        assert not extra, (pt, extra)
    assert "bpf_xdp_adjust_head" in report.helpers["xdp"]
    assert "bpf_redirect" not in report.helpers["socket_filter"]


def test_kfuncs():
    if KERNEL < (6, 2):
        pytest.skip("bpf_rcu_read_lock is a 6.2 kfunc")
    assert features.have_kfunc(ProgType.SCHED_CLS, "bpf_rcu_read_lock")
    assert features.have_feature("kfuncs")
    assert features.probe("kfunc:socket_filter:bpf_task_acquire").code == Code.NOT_ALLOWED
    p = features.probe("kfunc:xdp:pybpf_no_such_kfunc")
    assert not p.supported and "no function pybpf_no_such_kfunc" in p.reason


# -- attach types and links -----------------------------------------------------------------

def test_attach_types():
    for at in (AttachType.CGROUP_INET_INGRESS, AttachType.CGROUP_INET4_CONNECT,
               AttachType.CGROUP_UDP4_RECVMSG, AttachType.SK_SKB_STREAM_VERDICT,
               AttachType.SK_MSG_VERDICT, AttachType.FLOW_DISSECTOR):
        assert features.have_attach_type(at), at
    versions = {AttachType.CGROUP_INET_INGRESS: (5, 7), AttachType.XDP: (5, 9),
                AttachType.SK_LOOKUP: (5, 9), AttachType.PERF_EVENT: (5, 15),
                AttachType.TCX_INGRESS: (6, 6), AttachType.TRACE_UPROBE_MULTI: (6, 6),
                AttachType.SK_SKB_STREAM_VERDICT: (6, 10)}
    for at, since in versions.items():
        assert features.have_link(at) == (KERNEL >= since), at
    assert features.have_feature("tcx") == (KERNEL >= (6, 6))
    assert not features.have_link(AttachType.SK_REUSEPORT_SELECT)   # setsockopt only
    # (before 5.14 the kernel ignores an unknown expected attach type of sk_reuseport
    # programs, so such a program still loads: yes there too)
    assert features.have_attach_type(AttachType.SK_REUSEPORT_SELECT)
    # Attach types of unsupported program types say why.
    if not features.have_prog_type(ProgType.LIRC_MODE2):
        assert features.probe("attach_type:lirc_mode2").code == Code.PROG_TYPE


def test_probes_attach_nothing():
    """Attach probes leave no link behind (their targets cannot exist)."""
    def link_ids():
        ids, cur = [], 0
        while True:
            cur = _sys.link_get_next_id(cur)
            if cur is None:
                return set(ids)
            ids.append(cur)
    before = link_ids()
    features.clear_cache()
    from pybpf.features.attach import PROBED_ATTACH_TYPES
    for at in PROBED_ATTACH_TYPES:
        features.have_attach_type(at)
        features.have_link(at)
    assert link_ids() <= before


def test_probing_leaks_no_fds():
    from tests.conftest import fd_count
    features.probe_all(helpers=False)       # imports and kernel BTF parsed: steady state
    before = fd_count()
    features.clear_cache()
    features.probe_all(helpers=False)
    assert fd_count() == before


def test_kprobes_answer_matches_the_system():
    pmu = os.path.exists("/sys/bus/event_source/devices/kprobe")
    legacy = any(os.path.exists(os.path.join(r, "kprobe_events"))
                 for r in ("/sys/kernel/tracing", "/sys/kernel/debug/tracing"))
    assert features.have_feature("kprobes") == (pmu or legacy)
    if not (pmu or legacy):
        with pytest.raises(NotSupportedError, match="CONFIG_KPROBES"):
            features.require_feature("kprobes")
    if os.path.exists("/sys/bus/event_source/devices/uprobe"):
        assert features.have_feature("uprobes")


def test_every_named_feature_answers():
    for name in features.feature_names():
        p = features.probe(name)
        assert isinstance(p, Probe) and (p.supported or p.reason), name
    for name in ("btf", "btf_func", "global_data", "bpf_link", "ringbuf", "mmapable_arrays",
                 "bounded_loops", "large_insn_limit", "prog_bind_map"):
        assert features.have_feature(name), name     # every kernel pybpf supports (5.10+)
    assert features.have_feature("bpf_cookie") == (KERNEL >= (5, 15))
    with pytest.raises(ValueError, match="unknown feature"):
        features.have_feature("pybpf_no_such_feature")


# -- overrides and the cache ----------------------------------------------------------------

def test_override_forces_and_restores():
    assert features.have_feature("ringbuf")
    with features.override({"ringbuf": False, "prog_type:xdp": False}):
        assert not features.have_feature("ringbuf") and not features.have_prog_type("xdp")
        with features.override({"ringbuf": True}):
            assert features.have_feature("ringbuf")
        with pytest.raises(NotSupportedError, match="forced by pybpf.features.override"):
            features.require_feature("ringbuf")
    assert features.have_feature("ringbuf") and features.have_prog_type("xdp")
    with pytest.raises(ValueError):
        with features.override({"prog_type:nonsense": False}):
            pass


def test_cache_file_roundtrip(tmp_path):
    cache = FeatureCache(str(tmp_path))
    cache.put("ringbuf", Probe.yes())
    cache.put("fentry", Probe.no("refused by this kernel", Code.REFUSED))
    stale = tmp_path / "features-0000-old-boot.json"
    stale.write_text("{}")
    cache.flush()
    boot, release = boot_identity()
    path = tmp_path / f"features-{boot}.json"
    doc = json.loads(path.read_text())
    assert doc["boot_id"] == boot and doc["release"] == release
    assert sorted(os.listdir(tmp_path)) == [path.name]        # stale removed, no temp files
    again = FeatureCache(str(tmp_path))
    assert again.get("ringbuf") == Probe.yes()
    assert again.get("fentry") == Probe.no("refused by this kernel", Code.REFUSED)


@pytest.mark.parametrize("content", [
    "not json", '{"version": 1}', '{"version": 99, "results": {}}', "[1, 2]",
])
def test_unreadable_caches_are_ignored(tmp_path, content):
    boot, _ = boot_identity()
    (tmp_path / f"features-{boot}.json").write_text(content)
    cache = FeatureCache(str(tmp_path))
    assert cache.get("ringbuf") is None
    cache.put("ringbuf", Probe.yes())
    cache.flush()
    assert FeatureCache(str(tmp_path)).get("ringbuf") == Probe.yes()


def test_other_boots_and_foreign_owners_are_ignored(tmp_path):
    boot, release = boot_identity()
    doc = {"version": 1, "boot_id": boot, "release": release,
           "results": {"map_type:hash": [False, "missing", "forged"]}}
    path = tmp_path / f"features-{boot}.json"
    path.write_text(json.dumps(doc))
    assert FeatureCache(str(tmp_path)).get("map_type:hash").reason == "forged"
    os.chown(path, 65534, 65534)
    assert FeatureCache(str(tmp_path)).get("map_type:hash") is None
    os.chown(path, 0, 0)
    path.write_text(json.dumps(dict(doc, release="0.0.0-other")))
    assert FeatureCache(str(tmp_path)).get("map_type:hash") is None


def test_a_fresh_process_answers_from_the_disk_cache(tmp_path):
    env = {"PYBPF_CACHE_DIR": str(tmp_path)}
    first = run_python("from pybpf import features; print(features.have_map_type('hash'))",
                       env=env)
    assert first.stdout.strip() == "True", first.stderr
    boot, _ = boot_identity()
    path = tmp_path / f"features-{boot}.json"
    doc = json.loads(path.read_text())
    assert doc["results"]["map_type:hash"] is True
    # Forge the answer: a fresh process must believe the file, not probe again.
    doc["results"]["map_type:hash"] = [False, "missing", "forged"]
    path.write_text(json.dumps(doc))
    second = run_python("from pybpf import features; print(features.probe('map_type:hash'))",
                        env=env)
    assert "forged" in second.stdout, second.stderr
    off = run_python("from pybpf import features; print(features.have_map_type('hash'))",
                     env={"PYBPF_CACHE_DIR": ""})
    assert off.stdout.strip() == "True"


# -- probe_all and the command line ---------------------------------------------------------

def test_probe_all_report():
    report = features.probe_all()
    doc = report.to_dict()
    json.dumps(doc)
    assert set(doc["prog_types"]) == {t.name.lower() for t in ProgType if t != ProgType.UNSPEC}
    assert doc["map_types"]["ringbuf"] == {"supported": True}
    assert "helpers of struct_ops programs" in doc["not_probed"]
    assert "bpf_map_lookup_elem" in doc["helpers"]["xdp"]
    text = report.format()
    for title in ("Program types:", "Map types:", "Attach types:", "Features:",
                  "Helpers by program type:"):
        assert title in text
    assert report.seconds < 5    # answers come from the cache by now


def test_cli_feature(capsys):
    assert cli_main(["feature", "--json", "--no-helpers"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["prog_types"]["xdp"]["supported"] and doc["helpers"] == {}
    assert cli_main(["feature", "probe", "prog_type:xdp", "helper:xdp:bpf_loop"]) == 0
    out = capsys.readouterr().out
    assert "prog_type:xdp" in out and "yes" in out
    assert cli_main(["feature", "helper:xdp:sys_bpf"]) == 1
    assert "may not call bpf_sys_bpf" in capsys.readouterr().out
    assert cli_main(["feature", "no_such_thing"]) == 1
    assert "unknown feature" in capsys.readouterr().err
    assert cli_main(["feature"]) == 0
    assert "Helpers by program type:" in capsys.readouterr().out


# -- privileges -----------------------------------------------------------------------------

def test_required_and_missing_capabilities():
    assert privileges.required_capabilities(ProgType.KPROBE) == ("CAP_BPF", "CAP_PERFMON")
    assert privileges.required_capabilities(ProgType.XDP) == ("CAP_BPF", "CAP_NET_ADMIN")
    assert privileges.required_capabilities(ProgType.SOCKET_FILTER) == ("CAP_BPF",)
    assert privileges.required_capabilities(MapType.SOCKMAP) == ("CAP_BPF", "CAP_NET_ADMIN")
    assert privileges.required_capabilities(AttachType.CGROUP_INET_INGRESS) == \
        ("CAP_BPF", "CAP_NET_ADMIN")
    assert privileges.required_capabilities("mount") == ("CAP_SYS_ADMIN",)
    assert privileges.missing_capabilities(ProgType.KPROBE) == ()       # the suite runs as root
    msg = privileges.explain_eperm(ProgType.TRACING)
    assert "CAP_BPF and CAP_PERFMON" in msg and "refused on its own" in msg
    with pytest.raises(ValueError):
        privileges.required_capabilities("nonsense")


def _setpriv() -> tuple:
    path = shutil.which("setpriv")
    if path is None:
        pytest.skip("setpriv (util-linux) is needed to drop capabilities")
    return (path, "--bounding-set=-all", "--inh-caps=-all")


def test_without_capabilities_probes_raise_and_explain():
    code = """
from pybpf import features, privileges
from pybpf.errors import PermissionDeniedError, NotSupportedError
print("caps", sorted(privileges.capabilities()))
try:
    features.have_prog_type("xdp")
except PermissionDeniedError as e:
    print("raised", e)
print("kprobes", features.have_feature("kprobes"))   # answered from sysfs, no bpf()
try:
    privileges.ensure_bpffs("/tmp/pybpf-no-bpffs-here")
except NotSupportedError as e:
    print("bpffs", e)
"""
    out = run_python(code, env={"PYBPF_CACHE_DIR": ""}, prefix=_setpriv())
    assert "caps []" in out.stdout, out.stderr
    raised = [l for l in out.stdout.splitlines() if l.startswith("raised")]
    assert raised and "EPERM" in raised[0] and "lacks CAP_BPF and CAP_NET_ADMIN" in raised[0]
    assert "kprobes " in out.stdout
    assert "needs CAP_SYS_ADMIN" in out.stdout and "mount -t bpf bpf" in out.stdout


def test_memlock():
    if KERNEL >= (5, 11):
        assert not privileges.memlock_charged()
        assert not privileges._probe_memlock_charging()   # the probe agrees with the version
        status = privileges.raise_memlock_limit()
        assert not status.charged and not status.raised and "not needed" in status.note
    # Forcing the raise shows what happens without CAP_SYS_RESOURCE (this host) or with it.
    code = """
import resource
from pybpf import privileges
soft, hard = resource.getrlimit(resource.RLIMIT_MEMLOCK)
if hard != resource.RLIM_INFINITY:
    resource.setrlimit(resource.RLIMIT_MEMLOCK, (hard // 2, hard))
st = privileges.raise_memlock_limit(force=True)
print(st.raised, st.soft == resource.getrlimit(resource.RLIMIT_MEMLOCK)[0], st.soft, st.hard)
print(st.note)
"""
    out = run_python(code)
    first, note = out.stdout.splitlines()[:2]
    raised, consistent, soft, hard = first.split()
    assert consistent == "True", out.stderr
    if privileges.has_capability("CAP_SYS_RESOURCE"):
        assert raised == "True" and int(soft) == resource.RLIM_INFINITY
    else:
        assert raised == "True" and soft == hard            # soft raised up to the hard limit
        assert "CAP_SYS_RESOURCE" in note


def test_ensure_bpffs_mounts_once_and_tracefs():
    d = tempfile.mkdtemp(prefix="pybpf-bpffs-")
    try:
        assert not _sys.is_bpffs(d)
        assert privileges.ensure_bpffs(d) == d
        assert _sys.is_bpffs(d) and d in _sys.bpffs_mounts()
        n = _sys.bpffs_mounts().count(d)
        privileges.ensure_bpffs(d)                      # already there: no second mount
        assert _sys.bpffs_mounts().count(d) == n
        sub = os.path.join(d, "sub", "dir")
        assert privileges.ensure_bpffs(sub) == sub and os.path.isdir(sub)
    finally:
        while d in _sys.bpffs_mounts():
            _sys.umount(d)
        shutil.rmtree(d, ignore_errors=True)
    root = privileges.ensure_tracefs()
    assert os.path.isdir(os.path.join(root, "events"))
