"""Host-side preparation: the Debian packages vmtest needs and the BPF objects built before booting.

Guests run the host's Python and read the work tree through 9p, but compiling BPF C
in a TCG guest would take minutes (and its vmlinux.h would be regenerated from the
guest kernel's BTF), so every object the guest tests use is built here first; CO-RE
relocates them for each guest kernel at load time.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import List

from .kernels import VmtestError, log

#: Debian packages: QEMU (TCG), a static busybox for the initramfs, depmod/modprobe,
#: zstd for the 6.12 kernel image.
PACKAGES = ("qemu-system-x86", "busybox-static", "kmod", "zstd")


def _installed(package: str) -> bool:
    r = subprocess.run(["dpkg-query", "-W", "-f=${Status}", package], capture_output=True, text=True)
    return "install ok installed" in r.stdout


def ensure_packages() -> None:
    """apt-get install the missing PACKAGES (no recommends: QEMU's GUI bits are not needed)."""
    missing: List[str] = [p for p in PACKAGES if not _installed(p)]
    if not missing:
        return
    if os.geteuid() != 0:
        raise VmtestError(f"missing packages {' '.join(missing)}: run as root or apt-get install them")
    log(f"installing {' '.join(missing)} (apt)")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for attempt in ("install", "update", "install"):   # on a fresh machine the lists may be empty
        cmd = ["apt-get", "update", "-qq"] if attempt == "update" else \
              ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing]
        r = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if r.returncode == 0 and attempt == "install":
            return
    raise VmtestError(f"apt-get install {' '.join(missing)} failed:\n{r.stderr.strip()[-2000:]}")


def python_for(root: Path) -> str:
    """The project's virtualenv Python when set up (tools/setup-env), else this one."""
    venv = root / ".venv" / "bin" / "python"
    return str(venv) if venv.exists() else sys.executable


def build_objects(root: Path) -> None:
    """Build tests/progs/*.bpf.c and programs/*.bpf.c on the host (no-op when up to date)."""
    jobs = [(root / "tests" / "progs" / "build", sorted((root / "tests" / "progs").glob("*.bpf.c"))),
            (root / "agent" / "pybpf_agent" / "bpf", sorted((root / "programs").glob("*.bpf.c")))]
    for out, sources in jobs:
        if not sources:
            continue
        r = subprocess.run([python_for(root), str(root / "tools" / "build_bpf.py"), str(out),
                            *map(str, sources)], cwd=root, capture_output=True, text=True)
        if r.returncode != 0:
            raise VmtestError(f"building BPF objects into {out.relative_to(root)} failed:\n"
                              f"{(r.stderr or r.stdout).strip()[-3000:]}")
