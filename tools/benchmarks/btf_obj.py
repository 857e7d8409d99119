"""Kernel BTF parse + lookups (cold and warm index cache), object open, open+load, peak RSS
(foundation and CO-RE issues).

Fresh-process rows time from after ``import pybpf`` (libbpf's harness times its
first call inside an already started process too); the import itself is a
row of its own.  "cold" runs with an empty index cache directory, "warm" with
the cache the previous run wrote (see pybpf.btf.cache).
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys

ANCHOR_TARGETS = ["build/objload.bpf.o", "build/objload_bench", "build/btf_bench", "build/proctime"]

LOOKUP_NAMES = ["task_struct", "sk_buff", "file", "inode", "dentry", "mm_struct", "cred", "sock",
                "net_device", "page", "super_block", "vm_area_struct", "pt_regs", "cgroup", "nsproxy",
                "pid_namespace", "bpf_prog", "bpf_map", "path", "linux_binprm"]

_PARSE = ("import time; from pybpf.kbtf import load_kernel_btf; from pybpf.btf import Kind; "
          "t = time.perf_counter(); s = load_kernel_btf(); "
          f"[s.find(n, Kind.STRUCT) for n in {LOOKUP_NAMES!r}]; "
          "print((time.perf_counter() - t) * 1e3)")

_IMPORT = ("import time; t = time.perf_counter(); import pybpf.kbtf, pybpf.btf; "
           "print((time.perf_counter() - t) * 1e3)")

_RSS = ("import pybpf.kbtf, pybpf.btf\n"
        "def hwm():\n"
        "    for line in open('/proc/self/status'):\n"
        "        if line.startswith('VmHWM:'):\n"
        "            return int(line.split()[1]) / 1024\n"
        "h = hwm(); s = pybpf.kbtf.load_kernel_btf()\n"
        f"[s.find(n, pybpf.btf.Kind.STRUCT) for n in {LOOKUP_NAMES!r}]\n"
        "print(hwm() - h)")


def _fresh(ctx, code: str, reps: int, cache_dir: str, cold: bool) -> float:
    """Median of the last number printed by ``code`` run in ``reps`` fresh interpreters."""
    env = dict(os.environ, PYBPF_CACHE_DIR=cache_dir)
    vals = []
    for _ in range(reps):
        if cold:
            shutil.rmtree(cache_dir, ignore_errors=True)
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             cwd=ctx.root, env=env, check=True)
        vals.append(float(out.stdout.strip().splitlines()[-1]))
    return statistics.median(vals)


def run(ctx) -> None:
    import pybpf
    from pybpf.btf import Kind
    from pybpf.kbtf import load_kernel_btf

    lib_obj = ctx.libbpf("build/objload_bench", "-n", str(ctx.reps))
    lib_btf = ctx.libbpf("build/btf_bench", "-n", str(max(ctx.reps, 5)))
    objload = ctx.anchors / "build" / "objload.bpf.o"
    cache = str(ctx.work / "btf-index-cache")
    reps = max(5, ctx.reps // 2)
    lib_first = lib_btf.get("btf:first parse+lookup in a fresh process")

    ctx.row("import pybpf (fresh process, not in the rows below)", "ms",
            _fresh(ctx, _IMPORT, reps, cache, cold=False), None)
    ctx.row("vmlinux BTF parse + 20 lookups, first call in a fresh process, cold (no index cache)",
            "ms", _fresh(ctx, _PARSE, reps, cache, cold=True), lib_first)
    _fresh(ctx, _PARSE, 1, cache, cold=False)            # make sure the cache is written
    ctx.row("vmlinux BTF parse + 20 lookups, first call in a fresh process, warm (index cache)",
            "ms", _fresh(ctx, _PARSE, reps, cache, cold=False), lib_first)
    ctx.row("peak RSS growth of vmlinux BTF parse + 20 lookups (VmHWM delta, warm)", "MiB",
            _fresh(ctx, _RSS, 3, cache, cold=False),
            lib_btf.get("btf:in-process peak RSS growth of parse+lookup (VmHWM delta)"))

    os.environ["PYBPF_CACHE_DIR"] = cache

    def parse_lookup():
        s = load_kernel_btf()
        for n in LOOKUP_NAMES:
            s.find(n, Kind.STRUCT)
    ctx.row("vmlinux BTF parse + 20 lookups, warm process (index cache)", "ms",
            ctx.median_ms(parse_lookup), lib_btf.get("btf:parse + 20 lookups"))

    ctx.row("objload.bpf.o open (parse ELF+BTF, link)", "ms",
            ctx.median_ms(lambda: pybpf.load_collection_spec(objload)),
            lib_obj.get("objload:bpf_object__open_file()"))

    def open_load():
        spec = pybpf.load_collection_spec(objload)
        spec.variables["min_read_bytes"].value = 1
        pybpf.load(spec).close()
    open_load()  # first load of the process: the index cache is warm, nothing else is kept
    ctx.row("objload.bpf.o open + load (warm process, warm index cache)", "ms",
            ctx.median_ms(open_load), lib_obj.get("objload:open + load"))

    code = ("import sys; sys.path.insert(0, %r); import pybpf; "
            "spec = pybpf.load_collection_spec(%r); "
            "spec.variables['min_read_bytes'].value = 1; pybpf.load(spec).close()") % (
                str(ctx.root), str(objload))
    ours = ctx.libbpf("build/proctime", "-n", str(reps), "-l", "pybpf_objload", "--",
                      sys.executable, "-c", code)
    theirs = ctx.libbpf("build/proctime", "-n", str(reps), "-l", "objload_process", "--",
                        "build/objload_bench", "--load-only")
    ctx.row("objload.bpf.o open + load, whole process (interpreter start included), wall", "ms",
            ours["pybpf_objload:whole-process wall time"],
            theirs.get("objload_process:whole-process wall time"))
    ctx.row("objload.bpf.o open + load, whole process, peak RSS", "MiB",
            ours["pybpf_objload:whole-process peak RSS"],
            theirs.get("objload_process:whole-process peak RSS"))

    from tools.build_bpf import build
    for name in ("basic", "legacy"):
        obj = build(ctx.work / "objs", [ctx.root / "tests" / "progs" / f"{name}.bpf.c"])[0]
        ctx.row(f"tests/progs/{name}.bpf.o open", "ms",
                ctx.median_ms(lambda: pybpf.load_collection_spec(obj)), None)
        ctx.row(f"tests/progs/{name}.bpf.o open + load", "ms",
                ctx.median_ms(lambda: pybpf.load(obj).close()), None)
