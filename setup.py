"""Build hooks: find packages (pybpf, and pybpf_agent under agent/) and compile
programs/*.bpf.c with clang-19 into pybpf_agent/bpf/ as package data.

The objects are CO-RE: built once here, loaded on any kernel with BTF; a wheel
needs no compiler at install time.  If clang-19 is missing at build time the
already built objects (tools/setup-env builds them) are used as they are.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent


class BuildWithBPF(build_py):
    def run(self):
        out = ROOT / "agent" / "pybpf_agent" / "bpf"
        srcs = sorted(str(p) for p in (ROOT / "programs").glob("*.bpf.c"))
        if srcs and (shutil.which("clang-19") or os.environ.get("BPF_CLANG")):
            subprocess.run([sys.executable, str(ROOT / "tools" / "build_bpf.py"), str(out), *srcs],
                           check=True, cwd=ROOT)
        elif srcs and not list(out.glob("*.bpf.o")):
            raise SystemExit("building pybpf_agent needs clang-19 for programs/*.bpf.c")
        super().run()


packages = find_packages(include=["pybpf", "pybpf.*"])
agent = find_packages(where="agent", include=["pybpf_agent", "pybpf_agent.*"])
setup(
    packages=packages + agent,
    package_dir={"pybpf_agent": "agent/pybpf_agent"},
    cmdclass={"build_py": BuildWithBPF},
)
