"""Kernel BTF parse + lookups; object open and open+load (foundation and CO-RE issues)."""

from __future__ import annotations

import sys

ANCHOR_TARGETS = ["build/objload.bpf.o", "build/objload_bench", "build/btf_bench"]

LOOKUP_NAMES = ["task_struct", "sk_buff", "file", "inode", "dentry", "mm_struct", "cred", "sock",
                "net_device", "page", "super_block", "vm_area_struct", "pt_regs", "cgroup", "nsproxy",
                "pid_namespace", "bpf_prog", "bpf_map", "path", "linux_binprm"]


def run(ctx) -> None:
    import pybpf
    from pybpf.btf import Kind, Spec

    lib_obj = ctx.libbpf("build/objload_bench", "-n", str(ctx.reps))
    lib_btf = ctx.libbpf("build/btf_bench", "-n", str(max(ctx.reps, 5)))
    objload = ctx.anchors / "build" / "objload.bpf.o"

    code = ("import time; t=time.perf_counter(); from pybpf.btf import Spec, Kind; "
            "s=Spec.parse(open('/sys/kernel/btf/vmlinux','rb').read()); "
            f"[s.find(n, Kind.STRUCT) for n in {LOOKUP_NAMES!r}]; "
            "print((time.perf_counter()-t)*1e3)")
    ctx.row("vmlinux BTF parse + 20 lookups, first call in a fresh process", "ms",
            ctx.fresh_process_ms(code, 5), lib_btf.get("btf:first parse+lookup in a fresh process"))

    def parse_lookup():
        s = Spec.parse(open("/sys/kernel/btf/vmlinux", "rb").read())
        for n in LOOKUP_NAMES:
            s.find(n, Kind.STRUCT)
    ctx.row("vmlinux BTF parse + 20 lookups, warm process", "ms", ctx.median_ms(parse_lookup),
            lib_btf.get("btf:parse + 20 lookups"))

    ctx.row("objload.bpf.o open (parse ELF+BTF, link)", "ms",
            ctx.median_ms(lambda: pybpf.load_collection_spec(objload)),
            lib_obj.get("objload:bpf_object__open_file()"))

    def open_load():
        spec = pybpf.load_collection_spec(objload)
        spec.variables["min_read_bytes"].value = 1
        pybpf.load(spec).close()
    open_load()  # warm: kernel BTF parsed once per process (libbpf caches its probes likewise)
    ctx.row("objload.bpf.o open + load (warm process)", "ms", ctx.median_ms(open_load),
            lib_obj.get("objload:open + load"))

    from tools.build_bpf import build
    for name in ("basic", "legacy"):
        obj = build(ctx.work / "objs", [ctx.root / "tests" / "progs" / f"{name}.bpf.c"])[0]
        ctx.row(f"tests/progs/{name}.bpf.o open", "ms",
                ctx.median_ms(lambda: pybpf.load_collection_spec(obj)), None)
        ctx.row(f"tests/progs/{name}.bpf.o open + load", "ms",
                ctx.median_ms(lambda: pybpf.load(obj).close()), None)
