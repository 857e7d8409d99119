"""Compatibility smoke test, run in every tools/vmtest guest kernel (5.10, 6.1, 6.12).

Every BPF object the project ships (programs/ -> agent/pybpf_agent/bpf/) and every
test object (tests/progs/build/), all built once on the host with clang-19, is
loaded program by program on the guest kernel through CO-RE, and what loads is
attached where its section says (or to ``lo`` / a test cgroup for XDP, tc and
cgroup programs), then detached.  Each program must either load, or fail with
:class:`~pybpf.NotSupportedError` naming what this kernel lacks: any other error
(a verifier rejection, a raw errno, a Python exception) is a compatibility bug and
fails the test -- except objects built to be rejected (``MUST_REJECT``).

The findings, and the kernel's feature probes (``pybpf.features.probe_all``), are
printed at the end of the run (tests/vm/conftest.py) and saved as JSON in
``$PYBPF_VMTEST_OUT`` for ``tools/vmtest suite``'s cross-kernel table.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional

import pytest

import pybpf

IN_GUEST = os.environ.get("PYBPF_VMTEST") == "1"
ROOT = Path(__file__).resolve().parents[2]
#: id prefix -> (sources, where the host build puts their objects)
OBJECT_DIRS = {"agent": (ROOT / "programs", ROOT / "agent" / "pybpf_agent" / "bpf"),
               "progs": (ROOT / "tests" / "progs", ROOT / "tests" / "progs" / "build")}

pytestmark = [
    pytest.mark.kernel,
    pytest.mark.vmtest,
    pytest.mark.skipif(not IN_GUEST, reason="guest kernels only (it attaches XDP/tc programs to lo): "
                                            "tools/vmtest suite"),
]

#: Objects whose programs the verifier must reject on every kernel.
MUST_REJECT = {"progs/reject": "built to be rejected (tests/progs/reject.bpf.c)"}

#: Single programs built to be rejected (they are loaded on demand by their own tests).
MUST_REJECT_PROGRAMS = {
    ("progs/externs_ksym", "call_missing_kfunc"): "calls an absent __weak kfunc without "
                                                  "bpf_ksym_exists(): the verifier must refuse it",
}

#: Attach kinds that need a target, and the target the smoke test gives them.
NET_KINDS = {"xdp", "tc", "tcx"}

#: Iterators that walk a given map (``attach(map=...)``): the smoke test has none to give.
MAP_ITERATORS = {"bpf_map_elem", "bpf_sk_storage_map", "sockmap"}

#: Program types whose helper sets the feature report lists.
HELPER_PROG_TYPES = ("kprobe", "tracing", "lsm", "xdp", "sched_cls", "cgroup_skb")


def _objects() -> List[Any]:
    """One parameter per BPF C source: its object, built on the host by tools/vmtest.
    On the host (where everything is skipped) a single placeholder keeps the report short."""
    if not IN_GUEST:
        return [pytest.param(None, id="every-object")]
    params = []
    for prefix, (src_dir, obj_dir) in OBJECT_DIRS.items():
        for src in sorted(src_dir.glob("*.bpf.c")):
            stem = src.name[:-len(".bpf.c")]
            params.append(pytest.param(obj_dir / f"{stem}.bpf.o", id=f"{prefix}/{stem}"))
    return params


@dataclass
class Outcome:
    """How one program fared: ``load`` is loaded/unsupported/rejected/error/no target,
    ``attach`` is attached/unsupported/no target/error ("" when not loaded)."""

    obj: str
    program: str
    kind: str
    load: str
    attach: str = ""
    detail: str = ""
    unexpected: bool = False


#: Kinds that need a target program at load time (the smoke test has none to give).
LOAD_TARGET_KINDS = {"freplace"}


def _only(spec: Any, name: str) -> Any:
    """SPEC with only NAME to load, plus the programs its prog-array maps are filled with."""
    s = spec.copy()
    needed = {name} | {v for m in s.maps.values() for _, v in m.contents if isinstance(v, str)
                       and v in s.programs}
    for p in s.programs.values():
        p.autoload = p.name in needed
    return s


def _describe(e: BaseException) -> str:
    if isinstance(e, pybpf.NotSupportedError):
        return str(e)
    text = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
    if not isinstance(e, pybpf.BPFError):
        text += " | " + "".join(traceback.format_exception(type(e), e, e.__traceback__)[-2:]).strip()
    return text[:400]


def _attach(prog: Any, ps: Any, cgroup: Path) -> Any:
    """Attach as the section says; XDP/tc on lo, cgroup programs on the test cgroup.
    Returns a link, or None when the kind needs a target the smoke test cannot give."""
    from pybpf.link import can_auto_attach
    if can_auto_attach(ps):
        return prog.attach()
    if ps.attach_kind in NET_KINDS:
        return prog.attach("lo")
    if ps.attach_kind == "cgroup":
        return prog.attach(str(cgroup))
    return None


def _needs_target(ps: Any) -> bool:
    return ps.attach_kind == "iter" and ps.attach_to in MAP_ITERATORS


def _try_program(obj: str, spec: Any, name: str, cgroup: Path, pin_root: Path) -> Outcome:
    ps = spec.programs[name]
    out = Outcome(obj, name, ps.attach_kind or ps.section, load="loaded")
    must_reject = obj in MUST_REJECT or (obj, name) in MUST_REJECT_PROGRAMS
    if ps.attach_kind in LOAD_TARGET_KINDS:
        out.load, out.detail = "no target", f"{ps.attach_kind} programs load against a target program"
        return out
    try:
        coll = pybpf.load(_only(spec, name), pin_root=pin_root)
    except pybpf.NotSupportedError as e:
        out.load, out.detail = "unsupported", _describe(e)
        return out
    except pybpf.VerifierError as e:
        out.load, out.detail = "rejected", _describe(e)
        out.unexpected = not must_reject
        return out
    except Exception as e:  # noqa: BLE001 -- anything else is what this test looks for
        out.load, out.detail, out.unexpected = "error", _describe(e), True
        return out
    with coll:
        if must_reject:
            why = MUST_REJECT.get(obj) or MUST_REJECT_PROGRAMS[(obj, name)]
            out.unexpected, out.detail = True, why + " but it loaded"
        if _needs_target(ps):
            out.attach = "no target"
            return out
        try:
            link = _attach(coll.programs[name], ps, cgroup)
        except pybpf.NotSupportedError as e:
            out.attach, out.detail = "unsupported", _describe(e)
        except Exception as e:  # noqa: BLE001
            out.attach, out.detail, out.unexpected = "error", _describe(e), True
        else:
            if link is None:
                out.attach = "no target"
            else:
                out.attach = "attached"
                link.close()
    return out


@pytest.fixture
def smoke_pin_root(bpffs: Path) -> Any:
    d = bpffs / f"pybpf-smoke-{os.getpid()}"
    d.mkdir(exist_ok=True)
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.mark.parametrize("path", _objects())
def test_object_loads_and_attaches(path: Optional[Path], request: Any, smoke_report: Dict[str, Any],
                                   smoke_cgroup: Path, smoke_pin_root: Path) -> None:
    obj = request.node.callspec.id
    assert path is not None and path.exists(), f"{path} was not built (tools/vmtest builds it on the host)"
    spec = pybpf.load_collection_spec(path)
    outcomes = [_try_program(obj, spec, name, smoke_cgroup, smoke_pin_root) for name in spec.programs]
    smoke_report["programs"].extend(outcomes)
    bad = [o for o in outcomes if o.unexpected]
    if obj.startswith("agent/") and any(o.attach == "attached" for o in outcomes):
        # The agent's objects hold several hook variants per collector (tp_btf, raw_tp,
        # tracepoint ...) for different kernels; the agent tries them in turn. A variant
        # that does not fit this kernel is expected as long as another one attaches.
        for o in bad:
            o.unexpected = False
            o.detail = "variant not for this kernel (another one attached): " + o.detail
        bad = []
    assert not bad, "\n".join(f"{o.program} ({o.kind}): {o.load}/{o.attach}: {o.detail}" for o in bad)
    if obj in MUST_REJECT:   # by the verifier, or before it when the program type is too new
        assert all(o.load in ("rejected", "unsupported") for o in outcomes)


def _feature_lines(doc: Dict[str, Any]) -> List[str]:
    lines = [f"kernel {doc['kernel']}, probed in {doc['seconds']:.1f} s"]
    for group in ("prog_types", "map_types", "attach_types", "links", "features"):
        table = doc[group]
        missing = [k for k, e in table.items() if not e["supported"]]
        lines.append(f"{group}: {len(table) - len(missing)}/{len(table)} supported"
                     + (f"; missing: {', '.join(missing)}" if missing else ""))
    for name, entry in doc["features"].items():
        if not entry["supported"]:
            lines.append(f"  {name}: {entry.get('reason', '')}")
    helpers = ", ".join(f"{pt} {len(names)}" for pt, names in doc["helpers"].items())
    lines.append(f"helpers per program type: {helpers}")
    lines += [f"not probed: {k}: {why}" for k, why in doc["not_probed"].items()]
    return lines


def _helpers(features: Any) -> Dict[str, List[str]]:
    """The helpers each of HELPER_PROG_TYPES may call (probing all 30 program types
    takes minutes under TCG; these show how helper sets grow across kernels)."""
    from pybpf.consts import FuncId
    out: Dict[str, List[str]] = {}
    unknown: set = set()      # unknown to the kernel: the same for every program type
    for pt in HELPER_PROG_TYPES:
        names = []
        for h in FuncId:
            if h == FuncId.unspec or h in unknown:
                continue
            status = features.helper_status(pt, h)
            if status == features.HelperStatus.AVAILABLE:
                names.append("bpf_" + h.name)
            elif status == features.HelperStatus.UNKNOWN:
                unknown.add(h)
        out[pt] = names
    return out


def test_feature_report(smoke_report: Dict[str, Any]) -> None:
    """Probe program/map/attach types, links and named features (helpers for a few
    program types); trampolines, BPF LSM and kprobes are what the guests are for."""
    from pybpf import features
    t0 = time.monotonic()
    report = features.probe_all(helpers=False)
    doc = report.to_dict()
    doc["helpers"] = _helpers(features)
    doc["seconds"] = time.monotonic() - t0
    smoke_report["features"] = _feature_lines(doc)
    out = os.environ.get("PYBPF_VMTEST_OUT")
    if out and os.path.isdir(out):
        with open(os.path.join(out, "features.json"), "w") as f:
            json.dump(doc, f, indent=1)
    assert report.kernel == os.uname().release
    for name in ("fentry", "lsm", "kprobes", "bpf_link"):
        assert doc["features"][name]["supported"], f"{name}: {doc['features'][name].get('reason')}"
