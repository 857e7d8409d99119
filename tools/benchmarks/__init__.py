"""Benchmark modules for tools/bench.

Each module defines ``ANCHOR_TARGETS`` (make targets of ../shared/bench-anchors
it needs) and ``run(ctx) -> None``, adding rows with ``ctx.row(name, unit,
pybpf_value, libbpf_value_or_None)``.  ``ctx.libbpf(binary, *args)`` runs an
anchor harness once and returns its RESULT lines as {"bench:metric": median};
``ctx.anchors`` is the built anchors directory, ``ctx.reps`` the repetitions.
Rows are costs (time): ratio = pybpf / libbpf.  For rates (events/s), pass
``rate=True`` so the ratio becomes libbpf / pybpf (still: below 1 = pybpf ahead).
"""

MODULES = ["btf_obj", "ringbuf", "perfbuf", "maps", "systrace", "agent"]
