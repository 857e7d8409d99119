"""``probe_all()``: every answer at once, as a report for people (``pybpf feature``) and CI logs."""

from __future__ import annotations

import time
from typing import Any, Dict, List, Tuple

import attrs

from ..consts import FuncId, ProgType
from . import attach as _attach
from . import maps as _maps
from . import misc as _misc
from .progs import ProbeError
from .result import Code, Probe

__all__ = ["FeatureReport", "probe_all"]

_PROG_TYPES = tuple(t for t in ProgType if t != ProgType.UNSPEC)
_HELPERS = tuple(h for h in FuncId if h != FuncId.unspec)


@attrs.frozen
class FeatureReport:
    """What :func:`probe_all` found.  Dicts are keyed by lower-case names
    (``"xdp"``, ``"ringbuf"``, ``"tcx_ingress"``); ``helpers`` maps each probed
    program type to the helpers its programs may call; ``not_probed`` names
    what no tiny program can answer, with why."""
    kernel: str
    boot_id: str
    capabilities: Tuple[str, ...]
    prog_types: Dict[str, Probe]
    map_types: Dict[str, Probe]
    attach_types: Dict[str, Probe]
    links: Dict[str, Probe]
    features: Dict[str, Probe]
    helpers: Dict[str, List[str]]
    not_probed: Dict[str, str]
    seconds: float

    def to_dict(self) -> Dict[str, Any]:
        """A JSON-able dict (``pybpf feature --json``)."""
        def table(d: Dict[str, Probe]) -> Dict[str, Any]:
            out: Dict[str, Any] = {}
            for k, p in d.items():
                e: Dict[str, Any] = {"supported": p.supported}
                if not p.supported:
                    e["code"] = p.code.value
                if p.reason:
                    e["reason"] = p.reason
                out[k] = e
            return out
        return {"kernel": self.kernel, "boot_id": self.boot_id,
                "capabilities": list(self.capabilities),
                "prog_types": table(self.prog_types), "map_types": table(self.map_types),
                "attach_types": table(self.attach_types), "links": table(self.links),
                "features": table(self.features), "helpers": self.helpers,
                "not_probed": self.not_probed, "seconds": round(self.seconds, 3)}

    def format(self) -> str:
        """Grouped text, one line per answer (``pybpf feature``)."""
        lines = [f"Kernel {self.kernel} (boot {self.boot_id})",
                 f"Capabilities: {', '.join(self.capabilities) or 'none'}"]

        def group(title: str, d: Dict[str, Probe]) -> None:
            lines.append("")
            lines.append(f"{title}:")
            width = max((len(k) for k in d), default=0)
            for k, p in d.items():
                state = "yes" if p.supported else "NO"
                note = p.reason if p.reason else ""
                lines.append(f"  {k:<{width}}  {state}{'  (' + note + ')' if note else ''}")
        group("Program types", self.prog_types)
        group("Map types", self.map_types)
        group("Attach types", self.attach_types)
        group("BPF links (BPF_LINK_CREATE)", self.links)
        group("Features", self.features)
        if self.helpers:
            lines.append("")
            lines.append("Helpers by program type:")
            for pt, names in self.helpers.items():
                lines.append(f"  {pt} ({len(names)}): {' '.join(names)}")
        if self.not_probed:
            lines.append("")
            lines.append("Not probed:")
            lines.extend(f"  {k}: {why}" for k, why in self.not_probed.items())
        return "\n".join(lines)


def probe_all(*, helpers: bool = True) -> FeatureReport:
    """Probe every program type, map type, attach type, link, named feature and (with
    ``helpers``) every helper of every loadable program type.

    Answers come from the cache when present and are flushed to the disk cache
    afterwards.  A probe that raises (EPERM without capabilities) propagates.
    """
    from . import (_attach_probe, _feature_probe, _helper_probe, _link_probe,
                   _map_type_probe, _prog_type_probe, _the_cache)
    from ..privileges import capabilities
    from .cache import boot_identity
    t0 = time.perf_counter()
    prog_types = {pt.name.lower(): _prog_type_probe(pt) for pt in _PROG_TYPES}
    map_types = {mt.name.lower(): _map_type_probe(mt) for mt in _maps.PROBED_MAP_TYPES}
    attach_types = {at.name.lower(): _attach_probe(at) for at in _attach.PROBED_ATTACH_TYPES}
    links = {at.name.lower(): _link_probe(at) for at in _attach.PROBED_ATTACH_TYPES}
    features = {name: _feature_probe(name) for name in _misc.FEATURES}
    helper_lists: Dict[str, List[str]] = {}
    not_probed: Dict[str, str] = {}
    if helpers:
        unknown: set = set()    # "invalid func unknown#N" does not depend on the program type
        for pt in _PROG_TYPES:
            if not prog_types[pt.name.lower()].supported:
                continue
            names = []
            try:
                for h in _HELPERS:
                    if h in unknown:
                        continue
                    p = _helper_probe(pt, h)
                    if p.supported:
                        names.append("bpf_" + h.name)
                    elif p.code == Code.MISSING:
                        unknown.add(h)
            except ProbeError as e:
                not_probed[f"helpers of {pt.name.lower()} programs"] = str(e)
                continue
            helper_lists[pt.name.lower()] = names
    _the_cache().flush()
    boot, release = boot_identity()
    return FeatureReport(release, boot, tuple(sorted(capabilities())), prog_types, map_types,
                         attach_types, links, features, helper_lists, not_probed,
                         time.perf_counter() - t0)
