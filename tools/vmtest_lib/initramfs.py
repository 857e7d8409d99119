"""The guest's initramfs: busybox, the modules that reach the host filesystem, a stage-1 /init.

Debian's generic kernels build 9p, virtio-pci (before 6.12) and overlayfs as
modules, so the kernel cannot mount the host's filesystem by itself.  Stage 1
(``/init``, busybox sh) loads those modules, mounts the host's ``/`` read-only over
9p with a tmpfs overlay on top (the guest may write anywhere; nothing reaches the
host), mounts proc/sys/dev, bpffs, tracefs, debugfs, securityfs, cgroup2 and the
run directory on it, and switches root to it.  Stage 2 (``/stage2``, PID 1 on the
new root) runs the command and reports its exit status.  No host binary is exec'd
over 9p before the command itself: that keeps the boot short under TCG.

The archive is a gzip'd newc cpio written here directly (no cpio/mkinitramfs
needed); modules are stored decompressed so busybox ``insmod`` needs no xz/zstd
support.  It is cached per kernel release and content hash.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import lzma
import os
import shutil
import stat
import subprocess
from pathlib import Path
from typing import Dict, List, Tuple

from .kernels import Kernel, VmtestError, cache_dir, cache_lock

BUSYBOX = Path("/bin/busybox")

#: Modules stage 1 needs (with their dependencies from modules.dep); built-in ones are skipped.
BOOT_MODULES = ("virtio_pci", "9pnet_virtio", "9p", "overlay")

#: /init: PID 1 for the whole run, in busybox from the initramfs (so no host binary is
#: exec'd over 9p before the command itself).  The kernel passes unknown ``name=value``
#: parameters without a dot to init as environment variables: ``vmtest_modules`` is
#: the guest kernel's module tree in the host cache.
INIT = r"""#!/bin/busybox sh
# vmtest stage 1: mount the host's / read-only over 9p under a tmpfs overlay, mount
# what BPF tests expect on it, and switch root to it running /stage2.
export PATH=/bin
bb=/bin/busybox
R=/newroot
off() {
    $bb poweroff -f
    $bb sleep 30
}
die() {
    echo "vmtest-init: $*"
    echo "@@VMTEST-EXIT 125@@"
    off
}
$bb mount -t proc proc /proc
$bb mount -t sysfs sysfs /sys
$bb mount -t devtmpfs devtmpfs /dev 2>/dev/null
for m in $($bb cat /modules/load); do
    $bb insmod /modules/$m.ko || die "insmod $m failed"
done
$bb mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=262144,cache=loose host /lower \
    || die "cannot mount the host filesystem (9p tag 'host')"
$bb mount -t tmpfs -o mode=0755 tmpfs /upper || die "cannot mount tmpfs"
$bb mkdir -p /upper/data /upper/work
$bb mount -t overlay -o lowerdir=/lower,upperdir=/upper/data,workdir=/upper/work overlay $R \
    || die "cannot mount the overlay root"
$bb mount -t proc proc $R/proc
$bb mount -t sysfs sysfs $R/sys
$bb mount --move /dev $R/dev
$bb mkdir -p $R/dev/pts $R/dev/shm
$bb mount -t devpts -o gid=5,mode=0620,ptmxmode=0666 devpts $R/dev/pts
$bb mount -t tmpfs -o mode=1777 tmpfs $R/dev/shm
$bb mount -t tmpfs -o mode=0755 tmpfs $R/run
# /tmp stays the overlay of the host's /tmp (writes land in the tmpfs upper layer): the
# project may live there (CI clones anywhere), so it must stay visible.  Temporary files
# go to a plain tmpfs instead (TMPDIR=/run/tmp): files on overlayfs are opened twice
# (overlay + backing file), which LSM tests that count file_open calls would see.
$bb mkdir -p $R/run/tmp && $bb chmod 1777 $R/run/tmp
$bb mount -t bpf -o mode=0700 bpf $R/sys/fs/bpf || die "cannot mount bpffs"
$bb mount -t tracefs tracefs $R/sys/kernel/tracing
$bb mount -t debugfs debugfs $R/sys/kernel/debug
$bb mount -t securityfs securityfs $R/sys/kernel/security
$bb mount -t cgroup2 -o nsdelegate cgroup2 $R/sys/fs/cgroup
$bb mkdir -p $R/run/vmtest
$bb mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 vmtest $R/run/vmtest \
    || die "cannot mount the run directory (9p tag 'vmtest')"
if [ -n "$vmtest_modules" ]; then
    $bb mkdir -p $R/lib/modules
    $bb ln -sfn "$vmtest_modules" "$R/lib/modules/$($bb uname -r)"
fi
$bb ip link set lo up
$bb hostname vmtest
# Stage 2 runs as PID 1 on the new root (switch_root empties the initramfs), from a
# copy of busybox on the new root's /run tmpfs.
$bb mkdir -p $R/run/vmtest-init
$bb cp /bin/busybox /stage2 $R/run/vmtest-init/
$bb umount /proc /sys
exec $bb switch_root $R /run/vmtest-init/busybox sh /run/vmtest-init/stage2
"""

STAGE2 = r"""#!/bin/busybox sh
# vmtest stage 2: run /run/vmtest/run.sh (the command, in a clean environment, with the
# host's /bin/sh; its output goes through a pipe, as in CI, not to the console tty),
# report its exit status in /run/vmtest/exit-status and as a console marker, power off.
bb=/run/vmtest-init/busybox
set -o pipefail
echo "@@VMTEST-START@@"
$bb env -i /bin/sh /run/vmtest/run.sh < /dev/null 2>&1 | $bb cat
rc=$?
echo $rc > /run/vmtest/exit-status
$bb sync
echo "@@VMTEST-EXIT $rc@@"
$bb poweroff -f
$bb sleep 30
"""


def _module_index(kernel: Kernel) -> Dict[str, Tuple[str, List[str]]]:
    """module name -> (path relative to the modules dir, [dependency paths]) from modules.dep."""
    index: Dict[str, Tuple[str, List[str]]] = {}
    for line in (kernel.modules / "modules.dep").read_text().splitlines():
        if ":" not in line:
            continue
        path, deps = line.split(":", 1)
        name = Path(path).name.split(".ko")[0].replace("-", "_")
        index[name] = (path, deps.split())
    return index


def _builtin(kernel: Kernel) -> set:
    try:
        lines = (kernel.modules / "modules.builtin").read_text().split()
    except OSError:
        return set()
    return {Path(p).name.split(".ko")[0].replace("-", "_") for p in lines}


def boot_modules(kernel: Kernel) -> List[str]:
    """Module paths (relative to the modules dir) to insmod, dependencies first."""
    index = _module_index(kernel)
    builtin = _builtin(kernel)
    by_path = {path: deps for path, deps in index.values()}
    order: List[str] = []

    def visit(path: str) -> None:
        if path in order:
            return
        for dep in reversed(by_path.get(path, [])):   # modules.dep lists the deepest last
            visit(dep)
        order.append(path)

    for name in BOOT_MODULES:
        if name in index:
            visit(index[name][0])
        elif name not in builtin:
            raise VmtestError(f"kernel {kernel.release} has no module {name} (built in or loadable)")
    return order


def _read_module(path: Path) -> bytes:
    data = path.read_bytes()
    if path.suffix == ".xz":
        return lzma.decompress(data)
    if path.suffix == ".zst":
        if shutil.which("zstd") is None:
            raise VmtestError(f"{path.name} is zstd-compressed: apt-get install zstd")
        return subprocess.run(["zstd", "-dc", str(path)], capture_output=True, check=True).stdout
    if path.suffix == ".gz":
        return gzip.decompress(data)
    return data


class _Cpio:
    """A newc ("070701") cpio archive writer."""

    def __init__(self) -> None:
        self.buf = io.BytesIO()
        self.ino = 1

    def _entry(self, name: str, mode: int, data: bytes = b"", rdev: Tuple[int, int] = (0, 0)) -> None:
        fields = [self.ino, mode, 0, 0, 1, 0, len(data), 0, 0, rdev[0], rdev[1], len(name) + 1, 0]
        self.ino += 1
        self.buf.write(b"070701" + b"".join(b"%08X" % f for f in fields))
        self.buf.write(name.encode() + b"\0")
        self.buf.write(b"\0" * (-self.buf.tell() % 4))
        self.buf.write(data)
        self.buf.write(b"\0" * (-self.buf.tell() % 4))

    def dir(self, name: str) -> None:
        self._entry(name, stat.S_IFDIR | 0o755)

    def file(self, name: str, data: bytes, mode: int = 0o644) -> None:
        self._entry(name, stat.S_IFREG | mode, data)

    def symlink(self, name: str, target: str) -> None:
        self._entry(name, stat.S_IFLNK | 0o777, target.encode())

    def chardev(self, name: str, major: int, minor: int) -> None:
        self._entry(name, stat.S_IFCHR | 0o600, rdev=(major, minor))

    def finish(self) -> bytes:
        self._entry("TRAILER!!!", 0)
        return self.buf.getvalue()


def build(kernel: Kernel) -> Path:
    """The initramfs for KERNEL (built once per release and content, then cached)."""
    if not BUSYBOX.is_file():
        raise VmtestError(f"{BUSYBOX} missing: apt-get install busybox-static")
    modules = boot_modules(kernel)
    key = hashlib.sha256("\n".join([INIT, STAGE2, kernel.release, *modules,
                                    str(BUSYBOX.stat().st_size)]).encode()).hexdigest()[:16]
    out = cache_dir() / "initramfs" / f"{kernel.release}-{key}.cpio.gz"
    if out.is_file():
        return out
    with cache_lock(cache_dir()):
        if not out.is_file():
            _write(out, kernel, modules)
    return out


def _write(out: Path, kernel: Kernel, modules: List[str]) -> None:
    cpio = _Cpio()
    for d in ("bin", "dev", "proc", "sys", "lower", "upper", "newroot", "modules"):
        cpio.dir(d)
    cpio.chardev("dev/console", 5, 1)
    cpio.file("bin/busybox", BUSYBOX.read_bytes(), 0o755)
    cpio.symlink("bin/sh", "busybox")
    cpio.file("init", INIT.encode(), 0o755)
    cpio.file("stage2", STAGE2.encode(), 0o755)
    names = []
    for rel in modules:
        name = Path(rel).name.split(".ko")[0]
        names.append(name)
        cpio.file(f"modules/{name}.ko", _read_module(kernel.modules / rel))
    cpio.file("modules/load", ("\n".join(names) + "\n").encode())
    out.parent.mkdir(parents=True, exist_ok=True)
    for stale in out.parent.glob(f"{kernel.release}-*.cpio.gz"):
        stale.unlink()
    tmp = out.with_suffix(f".tmp{os.getpid()}")
    tmp.write_bytes(gzip.compress(cpio.finish(), compresslevel=6))
    tmp.replace(out)
