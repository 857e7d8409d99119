"""Named features (``have_feature("ringbuf")``): each one a small probe or a combination.

Most reuse the cached program/map/helper/attach answers through a
:class:`Prober`; the rest load one purpose-made program or map.  Every
entry of :data:`FEATURES` says in its description what it checks.
"""

from __future__ import annotations

import errno
import os
from typing import Any, Callable, Dict, Protocol

import attrs

from .. import sys as _sys
from ..consts import AttachType as A, FuncId, MapFlags, MapType as M, ProgType as P
from ..errors import NotSupportedError, SyscallError
from . import insns
from .btf import BTF_FEATURES
from .progs import try_load
from .result import Code, Probe, errname, refused_or_raise

__all__ = ["Prober", "Feature", "FEATURES", "feature_names"]

_XDP_HAS_FRAGS = 1 << 5     # BPF_F_XDP_HAS_FRAGS
_PMU_DIR = "/sys/bus/event_source/devices"


class Prober(Protocol):
    """The cached answers a named feature may build on (implemented by pybpf.features)."""
    def prog_type(self, pt: P) -> Probe: ...
    def map_type(self, mt: M) -> Probe: ...
    def helper(self, pt: P, helper: int) -> Probe: ...
    def kfunc(self, pt: P, name: str) -> Probe: ...
    def attach(self, at: A) -> Probe: ...
    def link(self, at: A) -> Probe: ...
    def btf(self, name: str) -> Probe: ...
    def kernel_btf(self) -> Any: ...


@attrs.frozen
class Feature:
    """A named feature: ``probe`` answers it given a :class:`Prober`."""
    name: str
    description: str
    probe: Callable[[Prober], Probe]


def _load(pt: P, code: bytes, name: str, **attrs: Any) -> Probe:
    """A feature that is "this program loads"; EINVAL/E2BIG/EACCES say no."""
    err, log = try_load(pt, code, name, log=True, **attrs)
    if err is None:
        return Probe.yes()
    if err.errno == errno.EPERM:
        return refused_or_raise(err, name, pt)
    if err.errno in (errno.EINVAL, errno.E2BIG, errno.EACCES, errno.EOPNOTSUPP):
        last = [l for l in log.splitlines() if l.strip() and not l.startswith("processed ")]
        return Probe.no(f"BPF_PROG_LOAD: {errname(err)}" + (f" ({last[-1].strip()})" if last else ""))
    raise err


def _global_data(p: Prober) -> Probe:
    try:
        m = _sys.map_create(M.ARRAY, 4, 32, 1, context="feature probe global_data")
    except SyscallError as e:
        return refused_or_raise(e, "global_data", M.ARRAY)
    with m:
        code = insns.program([insns.ld_map_value(1, m.fileno(), 16), insns.st_dw(1, 0, 42),
                              insns.mov_imm(0, 0), insns.exit_()])
        return _load(P.SOCKET_FILTER, code, "global_data")


def _mmapable(p: Prober) -> Probe:
    try:
        _sys.map_create(M.ARRAY, 4, 4, 1, map_flags=int(MapFlags.MMAPABLE),
                        context="feature probe mmapable_arrays").close()
    except SyscallError as e:
        if e.errno == errno.EINVAL:
            return Probe.no("BPF_MAP_CREATE: EINVAL for BPF_F_MMAPABLE")
        return refused_or_raise(e, "mmapable_arrays", M.ARRAY)
    return Probe.yes()


def _prog_name(p: Prober) -> Probe:
    err, _ = try_load(P.SOCKET_FILTER, insns.RETURN_0, "prog_name", prog_name="pybpf_name")
    if err is None:
        return Probe.yes()
    if err.errno in (errno.EINVAL, errno.E2BIG):
        return Probe.no(f"BPF_PROG_LOAD with a name: {errname(err)}")
    return refused_or_raise(err, "prog_name", P.SOCKET_FILTER)


def _bpf_link(p: Prober) -> Probe:
    try:
        _sys.link_create(0xFFFFFFFF, 0xFFFFFFFF, 0, context="feature probe bpf_link").close()
    except SyscallError as e:
        if e.errno == errno.EBADF:
            return Probe.yes()  # the command exists and looked the program up
        if e.errno == errno.EINVAL:
            return Probe.no("bpf(2) does not know BPF_LINK_CREATE")
        return refused_or_raise(e, "bpf_link", "bpf")
    return Probe.yes()  # pragma: no cover - fd -1 is never a program


def _prog_bind_map(p: Prober) -> Probe:
    try:
        with _sys.map_create(M.ARRAY, 4, 32, 1, context="feature probe prog_bind_map") as m, \
                _sys.prog_load(P.SOCKET_FILTER, insns.RETURN_0, "GPL",
                               context="feature probe prog_bind_map") as prog:
            _sys.prog_bind_map(prog.fileno(), m.fileno(), context="feature probe prog_bind_map")
    except SyscallError as e:
        if e.errno == errno.EINVAL:
            return Probe.no("bpf(2) does not know BPF_PROG_BIND_MAP")
        return refused_or_raise(e, "prog_bind_map", "prog")
    return Probe.yes()


def _module_btf(p: Prober) -> Probe:
    from .btf import blob
    try:
        with _sys.btf_load(blob("btf"), context="feature probe module_btf") as fd:
            _sys.btf_info(fd.fileno(), context="feature probe module_btf")
    except SyscallError as e:
        if e.errno in (errno.EINVAL, errno.E2BIG):
            return Probe.no("bpf_btf_info has no name field (module BTF came with it)")
        return refused_or_raise(e, "module_btf", "btf")
    return Probe.yes()


def _btf_target(p: Prober, pt: P, target: str, at: A, name: str) -> Probe:
    """Load a ``pt`` program on kernel function ``target`` (fentry, LSM hooks)."""
    ptp = p.prog_type(pt)
    if not ptp.supported:
        return Probe.no(ptp.reason, ptp.code)
    try:
        from ..btf import Kind
        ids = p.kernel_btf().find(target, Kind.FUNC)
    except NotSupportedError as e:
        return Probe.no(f"needs kernel BTF: {e}")
    if not ids:
        return Probe.no(f"kernel BTF has no {target}")
    return _load(pt, insns.RETURN_0, name, expected_attach_type=at, attach_btf_id=ids[0])


def _lsm(p: Prober) -> Probe:
    loaded = _btf_target(p, P.LSM, "bpf_lsm_file_mprotect", A.LSM_MAC, "lsm")
    if not loaded.supported:
        return loaded
    try:
        with open("/sys/kernel/security/lsm") as f:
            active = f.read().strip().split(",")
    except OSError:
        return Probe.no("cannot read /sys/kernel/security/lsm (securityfs not mounted)")
    if "bpf" not in active:
        return Probe.no(f"the BPF LSM is not active (lsm={','.join(active)}): boot with "
                        "lsm=...,bpf (CONFIG_BPF_LSM)")
    return Probe.yes()


def _pmu(name: str, option: str, legacy: str) -> Callable[[Prober], Probe]:
    def probe(p: Prober) -> Probe:
        if os.path.exists(os.path.join(_PMU_DIR, name)):
            return Probe.yes()
        for root in ("/sys/kernel/tracing", "/sys/kernel/debug/tracing"):
            if os.path.exists(os.path.join(root, legacy)):
                return Probe.yes(f"through tracefs {legacy} (no {name} PMU)")
        return Probe.no(f"no {name} PMU in {_PMU_DIR} and no tracefs {legacy}: the kernel was "
                        f"built without {option}")
    return probe


def _kfuncs(p: Prober) -> Probe:
    try:
        return p.kfunc(P.SCHED_CLS, "bpf_rcu_read_lock")
    except NotSupportedError as e:
        return Probe.no(f"needs kernel BTF: {e}")


def _from(kind: str, value: Any) -> Callable[[Prober], Probe]:
    return lambda p: getattr(p, kind)(value)


def _helper(pt: P, helper: FuncId) -> Callable[[Prober], Probe]:
    def probe(p: Prober) -> Probe:
        ptp = p.prog_type(pt)
        return p.helper(pt, helper) if ptp.supported else Probe.no(ptp.reason, Code.PROG_TYPE)
    return probe


def _all(*parts: Callable[[Prober], Probe]) -> Callable[[Prober], Probe]:
    def probe(p: Prober) -> Probe:
        for part in parts:
            r = part(p)
            if not r.supported:
                return r
        return Probe.yes()
    return probe


_BTF_DESCRIPTIONS = {
    "btf": "the kernel loads BTF at all", "btf_func": "BTF FUNC/FUNC_PROTO (func info)",
    "btf_func_global": "BTF FUNC with global linkage", "btf_datasec": "BTF VAR and DATASEC",
    "btf_qmark_datasec": "BTF DATASEC names starting with '?'", "btf_float": "BTF FLOAT",
    "btf_decl_tag": "BTF DECL_TAG", "btf_type_tag": "BTF TYPE_TAG",
    "btf_enum64": "BTF ENUM64 and signed enums",
}

_LIST = [Feature(n, _BTF_DESCRIPTIONS[n], _from("btf", n)) for n in BTF_FEATURES] + [
    Feature("prog_name", "programs and maps carry names", _prog_name),
    Feature("exp_attach_type", "BPF_PROG_LOAD takes an expected attach type",
            _from("attach", A.CGROUP_INET_SOCK_CREATE)),
    Feature("global_data", "direct map value access (global variables)", _global_data),
    Feature("mmapable_arrays", "BPF_F_MMAPABLE array maps", _mmapable),
    Feature("large_insn_limit", "programs beyond 4096 instructions",
            lambda p: _load(P.SCHED_CLS, insns.large_program(4096), "large_insn_limit")),
    Feature("bounded_loops", "the verifier accepts bounded loops",
            lambda p: _load(P.SOCKET_FILTER, insns.BOUNDED_LOOP, "bounded_loops")),
    Feature("isa_v2", "ISA v2: jlt/jle/jslt/jsle",
            lambda p: _load(P.SOCKET_FILTER, insns.ISA_V2, "isa_v2")),
    Feature("isa_v3", "ISA v3: 32-bit jumps",
            lambda p: _load(P.SOCKET_FILTER, insns.ISA_V3, "isa_v3")),
    Feature("isa_v4", "ISA v4: sign extension, sdiv/smod, bswap, gotol",
            lambda p: _load(P.SOCKET_FILTER, insns.ISA_V4, "isa_v4")),
    Feature("probe_read_kernel", "bpf_probe_read_kernel in tracing programs",
            _helper(P.TRACEPOINT, FuncId.probe_read_kernel)),
    Feature("bpf_link", "BPF_LINK_CREATE", _bpf_link),
    Feature("perf_link", "BPF links for perf events (kprobe/uprobe/tracepoint)",
            _from("link", A.PERF_EVENT)),
    Feature("ringbuf", "BPF ring buffer maps", _from("map_type", M.RINGBUF)),
    Feature("user_ringbuf", "user ring buffer maps", _from("map_type", M.USER_RINGBUF)),
    Feature("prog_bind_map", "BPF_PROG_BIND_MAP", _prog_bind_map),
    Feature("module_btf", "kernel module BTF objects", _module_btf),
    Feature("bpf_cookie", "bpf_get_attach_cookie in tracing programs",
            _helper(P.TRACEPOINT, FuncId.get_attach_cookie)),
    Feature("bpf_loop", "the bpf_loop helper", _helper(P.XDP, FuncId.loop)),
    Feature("xdp_frags", "XDP programs with BPF_F_XDP_HAS_FRAGS (multi-buffer)",
            lambda p: _load(P.XDP, insns.RETURN_0, "xdp_frags", prog_flags=_XDP_HAS_FRAGS)),
    Feature("kfuncs", "calls of kernel functions (kfuncs) from programs", _kfuncs),
    Feature("fentry", "BPF trampolines: fentry/fexit/fmod_ret programs",
            lambda p: _btf_target(p, P.TRACING, "bpf_fentry_test1", A.TRACE_FENTRY, "fentry")),
    Feature("lsm", "BPF LSM programs, with the BPF LSM active", _lsm),
    Feature("struct_ops", "struct_ops programs and maps",
            _all(_from("prog_type", P.STRUCT_OPS), _from("map_type", M.STRUCT_OPS))),
    Feature("kprobes", "kprobes (perf PMU or tracefs)",
            _pmu("kprobe", "CONFIG_KPROBES/CONFIG_KPROBE_EVENTS", "kprobe_events")),
    Feature("uprobes", "uprobes (perf PMU or tracefs)",
            _pmu("uprobe", "CONFIG_UPROBES/CONFIG_UPROBE_EVENTS", "uprobe_events")),
    Feature("kprobe_multi", "kprobe_multi links (fprobe)", _from("link", A.TRACE_KPROBE_MULTI)),
    Feature("uprobe_multi", "uprobe_multi links", _from("link", A.TRACE_UPROBE_MULTI)),
    Feature("tcx", "tcx links (tc without qdiscs)", _from("link", A.TCX_INGRESS)),
    Feature("netkit", "netkit device links", _from("link", A.NETKIT_PRIMARY)),
]

FEATURES: Dict[str, Feature] = {f.name: f for f in _LIST}
"""Every named feature, by name, in display order."""


def feature_names() -> tuple:
    """The names :func:`pybpf.features.have_feature` accepts."""
    return tuple(FEATURES)
