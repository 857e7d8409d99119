"""What the running kernel supports, found by trying: tiny programs, tiny maps, tiny BTF.

Ask with ``have_*`` (True/False) or ``require_*`` (raises
:class:`~pybpf.errors.NotSupportedError` naming the feature, the reason and
the first kernel that has it)::

    from pybpf import features
    from pybpf.consts import AttachType, FuncId, MapType, ProgType

    features.have_map_type(MapType.RINGBUF)
    features.have_prog_type(ProgType.XDP)
    features.have_helper(ProgType.XDP, FuncId.loop)
    features.have_attach_type(AttachType.TCX_INGRESS)   # known at all
    features.have_link(AttachType.CGROUP_INET_INGRESS)  # through BPF_LINK_CREATE
    features.have_kfunc(ProgType.SCHED_CLS, "bpf_rcu_read_lock")
    features.have_feature("fentry")                     # see feature_names()
    features.require_feature("kprobes")                 # NotSupportedError if absent

Only True and False are answers.  A probe that fails for another reason
raises: EPERM without the capabilities the probe needs raises
:class:`~pybpf.errors.PermissionDeniedError` saying which are missing; EPERM
*with* them is the kernel's own refusal (lockdown, LSM, a kernel that forbids
trampolines) and answers False with the reason "refused by this kernel".

Answers are cached for the boot, in memory and on disk (:mod:`.cache`).
Every answer has a key (``"prog_type:xdp"``, ``"map_type:ringbuf"``,
``"helper:xdp:loop"``, ``"kfunc:sched_cls:bpf_rcu_read_lock"``,
``"attach_type:tcx_ingress"``, ``"link:tcx_ingress"``, or a feature name);
:func:`probe` answers any key, :func:`override` forces answers (tests,
simulating an older kernel), :func:`probe_all` probes everything for a
report (``pybpf feature``).

Loaders use :func:`btf_features` / :func:`prepare_object_btf` to sanitize
object BTF for the running kernel (:mod:`pybpf.btf.sanitize`).
"""

from __future__ import annotations

import contextlib
import threading
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Union

from ..btf import Spec
from ..btf.sanitize import BTFFeatures, sanitize
from ..consts import AttachType, FuncId, MapType, ProgType
from ..errors import NotSupportedError
from . import attach as _attach
from . import btf as _btf
from . import maps as _maps
from . import misc as _misc
from . import progs as _progs
from .cache import FeatureCache
from .result import Code, HelperStatus, Probe
from .progs import ProbeError
from .versions import min_kernel as _min_kernel

__all__ = [
    "have_prog_type", "have_map_type", "have_helper", "have_kfunc", "have_attach_type",
    "have_link", "have_feature", "require_prog_type", "require_map_type", "require_helper",
    "require_kfunc", "require_attach_type", "require_link", "require_feature", "helper_status",
    "probe", "feature_names", "btf_features", "prepare_object_btf", "override", "clear_cache",
    "flush_cache", "probe_all", "Probe", "Code", "HelperStatus", "ProbeError", "FeatureReport",
    "BTFFeatures", "OLD_KERNEL_BTF",
]

ProgTypeLike = Union[ProgType, int, str]
MapTypeLike = Union[MapType, int, str]
AttachTypeLike = Union[AttachType, int, str]
HelperLike = Union[FuncId, int, str]

OLD_KERNEL_BTF: Dict[str, bool] = {n: n == "btf" for n in _btf.BTF_FEATURES}
"""Override values describing a kernel whose BTF loader knows only the 4.18 kinds:
``with features.override(features.OLD_KERNEL_BTF): ...``."""

_lock = threading.RLock()
_cache: Optional[FeatureCache] = None
_overrides: List[Dict[str, Probe]] = []


def _the_cache() -> FeatureCache:
    global _cache
    if _cache is None:
        _cache = FeatureCache(flush_at_exit=True)
    return _cache


# -- argument normalisation -----------------------------------------------------------------

def _enum(cls: Any, value: Any, what: str, prefix: str = "") -> Any:
    """``value`` as a member of enum ``cls``: a member, its number, or its name in any case."""
    if isinstance(value, cls):
        return value
    if isinstance(value, str):
        name = value.strip()
        if prefix and name.lower().startswith(prefix):
            name = name[len(prefix):]
        for candidate in (name, name.upper(), name.lower()):
            if candidate in cls.__members__:
                return cls[candidate]
        if not name.isdigit():
            raise ValueError(f"unknown {what} {value!r}")
        value = int(name)
    try:
        return cls(value)
    except ValueError:
        raise ValueError(f"unknown {what} {value!r}") from None


def _pt(v: ProgTypeLike) -> ProgType:
    return _enum(ProgType, v, "program type")


def _mt(v: MapTypeLike) -> MapType:
    return _enum(MapType, v, "map type")


def _at(v: AttachTypeLike) -> AttachType:
    return _enum(AttachType, v, "attach type")


def _helper_id(v: HelperLike) -> int:
    """A helper id from a FuncId, an int (also ids newer than pybpf), or a name."""
    if isinstance(v, int):
        return int(v)
    if isinstance(v, str) and v.strip().isdigit():
        return int(v)
    return int(_enum(FuncId, v, "helper", prefix="bpf_"))


def _helper_name(helper: int) -> str:
    try:
        return "bpf_" + FuncId(helper).name
    except ValueError:
        return f"helper #{helper}"


# -- the answer machinery -------------------------------------------------------------------

def _answer(key: str, compute: Callable[[], Probe]) -> Probe:
    """An override, a cached answer, or a fresh probe (cached when it is conclusive)."""
    with _lock:
        for layer in reversed(_overrides):
            if key in layer:
                return layer[key]
        hit = _the_cache().get(key)
        if hit is not None:
            return hit
        result = compute()
        _store(key, result)
        return result


def _store(key: str, result: Probe) -> None:
    # Answers computed while overrides are active may depend on them: not kept.
    if not _overrides:
        _the_cache().put(key, result)


class _CachedProber:
    """Gives named-feature and attach probes the cached answers of the others."""

    def prog_type(self, pt: ProgType) -> Probe:
        return _prog_type_probe(pt)

    def map_type(self, mt: MapType) -> Probe:
        return _map_type_probe(mt)

    def helper(self, pt: ProgType, helper: int) -> Probe:
        return _helper_probe(pt, helper)

    def kfunc(self, pt: ProgType, name: str) -> Probe:
        return _kfunc_probe(pt, name)

    def attach(self, at: AttachType) -> Probe:
        return _attach_probe(at)

    def link(self, at: AttachType) -> Probe:
        return _link_probe(at)

    def btf(self, name: str) -> Probe:
        return _answer(name, lambda: _btf.probe_btf(name))

    def kernel_btf(self) -> Spec:
        from ..kbtf import load_kernel_btf
        return load_kernel_btf()


_PROBER = _CachedProber()


def _prog_type_probe(pt: ProgType) -> Probe:
    return _answer(f"prog_type:{pt.name.lower()}", lambda: _progs.probe_prog_type(pt))


def _map_type_probe(mt: MapType) -> Probe:
    return _answer(f"map_type:{mt.name.lower()}", lambda: _maps.probe_map_type(mt))


def _attach_pair(at: AttachType) -> "tuple[Probe, Probe]":
    """Probe attach type and link together (one program load answers both)."""
    name = at.name.lower()
    attach, link = _attach.probe_attach_type(at, _prog_type_probe, _map_type_probe)
    _store(f"link:{name}", link)
    _store(f"attach_type:{name}", attach)
    return attach, link


def _attach_probe(at: AttachType) -> Probe:
    return _answer(f"attach_type:{at.name.lower()}", lambda: _attach_pair(at)[0])


def _link_probe(at: AttachType) -> Probe:
    return _answer(f"link:{at.name.lower()}", lambda: _attach_pair(at)[1])


def _helper_probe(pt: ProgType, helper: int) -> Probe:
    hname = FuncId(helper).name if helper in FuncId._value2member_map_ else str(helper)
    key = f"helper:{pt.name.lower()}:{hname}"

    def compute() -> Probe:
        ptp = _prog_type_probe(pt)
        if not ptp.supported:
            return Probe.no("", Code.PROG_TYPE)
        status, _line = _progs.probe_helper(pt, helper, _PROBER.kernel_btf)
        return _progs.helper_probe(status, "")
    p = _answer(key, compute)
    if p.supported or p.reason:
        return p
    # Reasons are not cached (thousands of helper answers): they follow from the code.
    ptn = pt.name.lower()
    reason = {Code.NOT_ALLOWED: f"{ptn} programs may not call {_helper_name(helper)}",
              Code.MISSING: f"this kernel does not know {_helper_name(helper)}"}.get(
        p.code, f"program type {ptn} is not supported: {_prog_type_probe(pt).reason}")
    return Probe(p.supported, p.code, reason)


def _kfunc_probe(pt: ProgType, name: str) -> Probe:
    def compute() -> Probe:
        ptp = _prog_type_probe(pt)
        if not ptp.supported:
            return Probe.no(f"program type {pt.name.lower()} is not supported: {ptp.reason}",
                            Code.PROG_TYPE)
        return _progs.helper_probe(*_progs.probe_kfunc(pt, name, _PROBER.kernel_btf))
    return _answer(f"kfunc:{pt.name.lower()}:{name}", compute)


def _feature_probe(name: str) -> Probe:
    feature = _misc.FEATURES.get(name)
    if feature is None:
        raise ValueError(f"unknown feature {name!r}; known: {', '.join(_misc.FEATURES)}")
    return _answer(name, lambda: feature.probe(_PROBER))


def probe(key: str) -> Probe:
    """The full answer (:class:`Probe`: supported, code, reason) for an answer key."""
    kind, _, rest = key.partition(":")
    if not rest:
        return _feature_probe(key)
    if kind == "prog_type":
        return _prog_type_probe(_pt(rest))
    if kind == "map_type":
        return _map_type_probe(_mt(rest))
    if kind == "attach_type":
        return _attach_probe(_at(rest))
    if kind == "link":
        return _link_probe(_at(rest))
    if kind in ("helper", "kfunc"):
        pt, _, name = rest.partition(":")
        if kind == "helper":
            return _helper_probe(_pt(pt), _helper_id(name))
        return _kfunc_probe(_pt(pt), name)
    raise ValueError(f"unknown answer key {key!r}")


# -- the public questions -------------------------------------------------------------------

def have_prog_type(prog_type: ProgTypeLike) -> bool:
    """Whether programs of ``prog_type`` load on this kernel."""
    return _prog_type_probe(_pt(prog_type)).supported


def have_map_type(map_type: MapTypeLike) -> bool:
    """Whether maps of ``map_type`` can be created on this kernel."""
    return _map_type_probe(_mt(map_type)).supported


def helper_status(prog_type: ProgTypeLike, helper: HelperLike) -> HelperStatus:
    """How ``prog_type`` programs stand with ``helper``: available, not allowed for this
    program type, unknown to the kernel, or the program type itself is unsupported."""
    p = _helper_probe(_pt(prog_type), _helper_id(helper))
    return {Code.OK: HelperStatus.AVAILABLE, Code.NOT_ALLOWED: HelperStatus.NOT_ALLOWED,
            Code.MISSING: HelperStatus.UNKNOWN}.get(p.code, HelperStatus.PROG_TYPE)


def have_helper(prog_type: ProgTypeLike, helper: HelperLike) -> bool:
    """Whether programs of ``prog_type`` may call ``helper`` (a FuncId, its id or name,
    ``"bpf_loop"`` or ``"loop"``)."""
    return _helper_probe(_pt(prog_type), _helper_id(helper)).supported


def have_kfunc(prog_type: ProgTypeLike, name: str) -> bool:
    """Whether programs of ``prog_type`` may call kernel function ``name`` (a vmlinux kfunc)."""
    return _kfunc_probe(_pt(prog_type), name).supported


def have_attach_type(attach_type: AttachTypeLike) -> bool:
    """Whether programs can attach with ``attach_type`` (through a link or otherwise)."""
    return _attach_probe(_at(attach_type)).supported


def have_link(attach_type: AttachTypeLike) -> bool:
    """Whether ``BPF_LINK_CREATE`` attaches with ``attach_type`` (False for types attached
    only by ``BPF_PROG_ATTACH``, setsockopt or netlink here)."""
    return _link_probe(_at(attach_type)).supported


def have_feature(name: str) -> bool:
    """Whether the kernel has the named feature (see :func:`feature_names`)."""
    return _feature_probe(name).supported


def feature_names() -> tuple:
    """Every name :func:`have_feature` knows, in display order."""
    return _misc.feature_names()


def _require(p: Probe, feature: str, kind: str, value: object) -> None:
    if not p.supported:
        raise NotSupportedError(feature, p.reason or p.code.value,
                                min_kernel=_min_kernel(kind, value) if p.code != Code.REFUSED
                                else None)


def require_prog_type(prog_type: ProgTypeLike) -> None:
    """Raise NotSupportedError unless :func:`have_prog_type`."""
    pt = _pt(prog_type)
    _require(_prog_type_probe(pt), f"program type {pt.name.lower()}", "prog_type", pt)


def require_map_type(map_type: MapTypeLike) -> None:
    """Raise NotSupportedError unless :func:`have_map_type`."""
    mt = _mt(map_type)
    _require(_map_type_probe(mt), f"map type {mt.name.lower()}", "map_type", mt)


def require_helper(prog_type: ProgTypeLike, helper: HelperLike) -> None:
    """Raise NotSupportedError unless :func:`have_helper`, saying whether the helper is
    unknown to this kernel or not allowed for the program type."""
    pt, hid = _pt(prog_type), _helper_id(helper)
    p = _helper_probe(pt, hid)
    if not p.supported:
        raise NotSupportedError(f"helper {_helper_name(hid)} in {pt.name.lower()} programs",
                                p.reason)


def require_kfunc(prog_type: ProgTypeLike, name: str) -> None:
    """Raise NotSupportedError unless :func:`have_kfunc`."""
    pt = _pt(prog_type)
    _require(_kfunc_probe(pt, name), f"kfunc {name} in {pt.name.lower()} programs", "", None)


def require_attach_type(attach_type: AttachTypeLike) -> None:
    """Raise NotSupportedError unless :func:`have_attach_type`."""
    at = _at(attach_type)
    _require(_attach_probe(at), f"attach type {at.name.lower()}", "attach_type", at)


def require_link(attach_type: AttachTypeLike) -> None:
    """Raise NotSupportedError unless :func:`have_link`."""
    at = _at(attach_type)
    _require(_link_probe(at), f"BPF links of attach type {at.name.lower()}", "link", at)


def require_feature(name: str) -> None:
    """Raise NotSupportedError unless :func:`have_feature`."""
    _require(_feature_probe(name), name, "feature", name)


# -- BTF sanitization -----------------------------------------------------------------------

def btf_features() -> BTFFeatures:
    """The BTF kinds this kernel's BTF loader accepts (for :func:`pybpf.btf.sanitize.sanitize`)."""
    return BTFFeatures(**{f[len("btf_"):]: have_feature(f) for f in _btf.BTF_FEATURES
                          if f != "btf"})


def prepare_object_btf(btf: Spec, features: Optional[BTFFeatures] = None) -> Optional[Spec]:
    """The object BTF to send to ``BPF_BTF_LOAD`` on this kernel, or None when the kernel
    takes no BTF at all.

    ``features`` defaults to :func:`btf_features`.  Type ids are unchanged
    (see :mod:`pybpf.btf.sanitize`); when the result's kernel lacks FUNC the
    caller must load programs without func/line info and ``prog_btf_fd``.
    """
    if features is None:
        if not have_feature("btf"):
            return None
        features = btf_features()
    return sanitize(btf, features)


# -- overrides, cache, report ---------------------------------------------------------------

@contextlib.contextmanager
def override(values: Mapping[str, Union[bool, Probe]]) -> Iterator[None]:
    """Force answers by key while the ``with`` block runs (nested blocks stack)::

        with features.override({"btf_enum64": False, "prog_type:xdp": False}):
            ...

    Forced answers are never cached, nor are answers probed while an override
    is active (they may depend on it).  Keys are checked (a typo raises ValueError).
    """
    layer: Dict[str, Probe] = {}
    for key, value in values.items():
        _check_key(key)
        layer[key] = value if isinstance(value, Probe) else (
            Probe.yes("forced by pybpf.features.override") if value
            else Probe.no("forced by pybpf.features.override"))
    with _lock:
        _overrides.append(layer)
    try:
        yield
    finally:
        with _lock:
            _overrides.remove(layer)


def _check_key(key: str) -> None:
    kind, _, rest = key.partition(":")
    if not rest:
        if key not in _misc.FEATURES:
            raise ValueError(f"unknown feature {key!r}")
    elif kind == "prog_type":
        _pt(rest)
    elif kind == "map_type":
        _mt(rest)
    elif kind in ("attach_type", "link"):
        _at(rest)
    elif kind == "helper":
        pt, _, h = rest.partition(":")
        _pt(pt), _helper_id(h)
    elif kind == "kfunc":
        _pt(rest.partition(":")[0])
    else:
        raise ValueError(f"unknown answer key {key!r}")


def clear_cache(*, disk: bool = False) -> None:
    """Forget every answer so that they are probed again (``disk``: delete the file too)."""
    _the_cache().clear(disk=disk)


def flush_cache() -> None:
    """Write new answers to the on-disk cache now (done at exit anyway)."""
    _the_cache().flush()


from .report import FeatureReport, probe_all  # noqa: E402  (uses the functions above)
