"""Ring buffer first, perf buffer as the fallback: one object, one callback.

BPF ring buffers (Linux 5.8) are the default transport; on older kernels the
same object falls back to a perf buffer.  The BPF side declares both maps and a
``const volatile`` switch, and picks the helper at load time (the verifier
removes the dead branch, so the ring buffer helpers are never checked on a
kernel without them)::

    const volatile bool use_ringbuf = true;

    struct { __uint(type, BPF_MAP_TYPE_RINGBUF); __uint(max_entries, 1 << 20); } events SEC(".maps");
    struct { __uint(type, BPF_MAP_TYPE_PERF_EVENT_ARRAY);
             __uint(key_size, 4); __uint(value_size, 4); } events_perf SEC(".maps");

    if (use_ringbuf)
        bpf_ringbuf_output(&events, &e, sizeof(e), 0);
    else
        bpf_perf_event_output(ctx, &events_perf, BPF_F_CURRENT_CPU, &e, sizeof(e));

User space::

    spec = pybpf.load_collection_spec("prog.bpf.o")
    prepare_events(spec, "events", "events_perf")       # probes; edits the spec
    with pybpf.load(spec) as coll, open_events(coll, "events", "events_perf", on_event) as r:
        while True:
            r.poll()

Perf samples are padded to ``8k + 4`` bytes (the size the callback sees may
exceed what the program wrote); decode fixed layouts with ``struct.unpack_from``.
"""

from __future__ import annotations

import errno
from typing import Any, Optional

from .. import sys as _sys
from ..consts import MapType
from ..errors import BPFError, SyscallError
from .base import Callback, DropCounter, EventReader
from .reader import RingBufReader

__all__ = ["have_ringbuf", "prepare_events", "open_events"]

_probed: Optional[bool] = None


def have_ringbuf() -> bool:
    """Whether the running kernel has BPF_MAP_TYPE_RINGBUF (Linux 5.8+).

    Asks :func:`pybpf.features.have_map_type` (cached probes); without that
    package, creates and closes a one-page ring buffer map (answer cached here).
    """
    try:
        from .. import features
    except ImportError:
        return _probe_ringbuf()
    return bool(features.have_map_type(MapType.RINGBUF))


def _probe_ringbuf() -> bool:
    global _probed
    if _probed is None:
        try:
            _sys.map_create(map_type=MapType.RINGBUF, key_size=0, value_size=0,
                            max_entries=_sys.PAGE_SIZE, map_name="pybpf_rb_probe",
                            context="ring buffer probe").close()
            _probed = True
        except SyscallError as e:
            if e.errno not in (errno.EINVAL, errno.E2BIG, errno.EOPNOTSUPP, 524):  # ENOTSUPP
                raise
            _probed = False
    return _probed


def _ask_kernel() -> bool:
    return have_ringbuf()     # looked up at call time: tests may force the answer


def prepare_events(spec: Any, ring_map: str, perf_map: str, *,
                   have_ringbuf: Optional[bool] = None, flag: Optional[str] = "use_ringbuf") -> bool:
    """Choose the transport before loading ``spec`` (a CollectionSpec, edited in place).

    ``have_ringbuf`` forces the answer (default: probe the kernel).  With a ring
    buffer, the ``flag`` variable (a ``const volatile`` in ``.rodata``) is set to 1.
    Without, it is set to 0 and the ring buffer map is turned into a one-entry array
    placeholder, so the object still loads; the BPF program must then not reach the
    ring buffer helpers (guard them with ``flag``).  A perf map without
    ``max_entries`` gets one slot per possible CPU.  Returns True for ring buffer.
    """
    from ..maps.map import possible_cpus
    for name in (ring_map, perf_map):
        if name not in spec.maps:
            raise BPFError(f"object {getattr(spec, 'name', '?')}: no map named {name!r}")
    ring, perf = spec.maps[ring_map], spec.maps[perf_map]
    if perf.type != MapType.PERF_EVENT_ARRAY:
        raise BPFError(f"map {perf_map} is not a BPF_MAP_TYPE_PERF_EVENT_ARRAY")
    use_ring = have_ringbuf if have_ringbuf is not None else _ask_kernel()
    if perf.max_entries == 0:
        perf.max_entries = possible_cpus()
    var = spec.variables.get(flag) if flag else None
    if var is not None:
        if var.section != ".rodata" and not var.section.startswith(".rodata."):
            raise BPFError(f"variable {flag} lives in {var.section}: declare it "
                           f"`const volatile` so the verifier can prune the unused transport")
        var.value = int(bool(use_ring))
    if use_ring:
        if ring.type != MapType.RINGBUF:
            raise BPFError(f"map {ring_map} is not a BPF_MAP_TYPE_RINGBUF")
        return True
    if flag and var is None:
        raise BPFError(f"object {getattr(spec, 'name', '?')}: no variable {flag!r} to switch the "
                       "program to the perf buffer (declare `const volatile bool "
                       f"{flag} = true;` and guard the ring buffer helpers with it)")
    ring.type = MapType.ARRAY
    ring.key_size, ring.value_size, ring.max_entries, ring.flags = 4, 4, 1, 0
    ring.key_type_id = ring.value_type_id = 0
    return False


def open_events(coll: Any, ring_map: str, perf_map: str, callback: Optional[Callback] = None, *,
                have_ringbuf: Optional[bool] = None, drops: Optional[DropCounter] = None,
                **perf_options: Any) -> EventReader:
    """A reader for whichever transport ``coll`` was loaded with.

    Returns a :class:`RingBufReader` on ``ring_map`` when that map is a live ring
    buffer (and ``have_ringbuf`` is not False), else a
    :class:`~pybpf.perf.PerfReader` on ``perf_map`` with ``perf_options`` (``pages``,
    ``wakeup_events``, ``watermark``, ``on_lost``).  Both call ``callback(buf,
    offset, size)`` and offer the same poll/consume/records/asyncio API.
    """
    ring = coll.maps.get(ring_map)
    use_ring = ring is not None and ring.type == MapType.RINGBUF
    if have_ringbuf is not None:
        if have_ringbuf and not use_ring:
            raise BPFError(f"map {ring_map} was not loaded as a ring buffer "
                           "(see prepare_events)")
        use_ring = bool(have_ringbuf)
    if use_ring:
        reader = RingBufReader()
        try:
            reader.add(ring, callback, drops=drops)
        except BaseException:
            reader.close()
            raise
        return reader
    from ..perf import PerfReader   # local: pybpf.perf imports this package
    if perf_map not in coll.maps:
        raise BPFError(f"collection has no map named {perf_map!r}")
    return PerfReader(coll.maps[perf_map], callback, drops=drops, **perf_options)
