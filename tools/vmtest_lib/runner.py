"""Boot a guest kernel under QEMU (TCG), run one command in it, stream its output, return its status.

The guest sees the host's ``/`` read-only over 9p (tag ``host``) under a tmpfs
overlay, and a per-run host directory read-write (tag ``vmtest``, mounted at
``/run/vmtest``) holding the command script and receiving the exit status.  The
serial console carries the command's output: everything before the
``@@VMTEST-START@@`` marker is boot noise (shown with ``verbose`` or when the boot
fails), everything after it is streamed to the caller until the
``@@VMTEST-EXIT n@@`` marker.  The status file is authoritative; the marker is the
fallback; a guest that reports neither (kernel panic or oops, hang, QEMU error)
is a failure -- exit 125, or 124 on timeout -- never a silent success.

Kernel parameters: ``panic=-1 oops=panic`` turn a kernel crash into a reboot,
which ``-no-reboot`` turns into QEMU exiting; ``quiet`` keeps only warnings on the
console (they stay visible among the command's output); ``lsm=...,bpf`` where the
kernel's default LSM list lacks the BPF LSM (Debian's 5.10).
"""

from __future__ import annotations

import os
import selectors
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, TextIO

from . import initramfs
from .kernels import Kernel, VmtestError

START = "@@VMTEST-START@@"
EXIT = "@@VMTEST-EXIT "

#: Exit statuses vmtest itself produces (the guest command's own status otherwise).
STATUS_TIMEOUT = 124
STATUS_NO_REPORT = 125


@dataclass
class Result:
    """What one guest run produced."""

    status: int
    boot_seconds: float            # QEMU start -> command start
    run_seconds: float             # command start -> command end
    outputs: Dict[str, bytes] = field(default_factory=dict)   # files the guest left in /run/vmtest/out


def qemu_binary() -> str:
    path = shutil.which("qemu-system-x86_64")
    if path is None:
        raise VmtestError("qemu-system-x86_64 not found: apt-get install qemu-system-x86 "
                          "(tools/vmtest installs it when run as root)")
    return path


def lsm_list(kernel: Kernel) -> Optional[str]:
    """The kernel's default LSM list with ``bpf`` appended when it lacks it (Debian 5.10)."""
    try:
        for line in kernel.config.read_text().splitlines():
            if line.startswith("CONFIG_LSM="):
                lsms = line.split("=", 1)[1].strip('"').split(",")
                return None if "bpf" in lsms else ",".join(lsms + ["bpf"])
    except OSError:
        pass
    return None


def kernel_cmdline(kernel: Kernel) -> str:
    if any(c.isspace() or c == '"' for c in str(kernel.modules)):
        raise VmtestError(f"the cache path {kernel.modules} must not contain blanks or quotes")
    args = ["console=ttyS0", "quiet", "panic=-1", "oops=panic", "rdinit=/init",
            "mitigations=off", "tsc=reliable", "no_timer_check", f"vmtest_modules={kernel.modules}"]
    lsm = lsm_list(kernel)
    if lsm:
        args.append(f"lsm={lsm}")
    return " ".join(args)


def qemu_command(kernel: Kernel, initrd: Path, rundir: Path, *, memory: str, cpus: int) -> List[str]:
    # thread=single: all vCPUs on one host thread.  With one host thread per vCPU (QEMU's
    # default) a 6.12 guest died once with "Oops: int3" in __schedule: by our reading, a
    # vCPU ran a stale translation of kernel text the other had just re-patched (a static
    # key).  Guest test runs take as long either way (86-128 s per kernel).
    return [
        qemu_binary(), "-accel", "tcg,thread=single", "-cpu", "max", "-m", memory,
        "-smp", str(cpus),
        "-nodefaults", "-no-user-config", "-nographic", "-no-reboot",
        "-chardev", "stdio,id=console,signal=off", "-serial", "chardev:console",
        "-kernel", str(kernel.vmlinux), "-initrd", str(initrd),
        "-append", kernel_cmdline(kernel),
        "-virtfs", "local,path=/,mount_tag=host,security_model=none,readonly=on,multidevs=remap",
        "-virtfs", f"local,path={rundir},mount_tag=vmtest,security_model=none,multidevs=remap",
    ]


def write_run_dir(rundir: Path, command: Sequence[str], cwd: Path, env: Mapping[str, str]) -> None:
    """run.sh: the command with its environment, run by stage 2 in a clean environment."""
    (rundir / "out").mkdir()
    lines = ["#!/bin/sh"]
    lines += [f"export {k}={shlex.quote(v)}" for k, v in sorted(env.items())]
    lines += [f"cd {shlex.quote(str(cwd))} || exit 125", "exec " + " ".join(shlex.quote(c) for c in command)]
    (rundir / "run.sh").write_text("\n".join(lines) + "\n")


class _ConsoleFilter:
    """Turns the raw serial stream into the command's output; finds the markers."""

    def __init__(self, out: TextIO, verbose: bool):
        self.out = out
        self.verbose = verbose
        self.started: Optional[float] = None
        self.status: Optional[int] = None
        self.boot_log: List[str] = []
        self._pending = ""
        self._bol = True          # the output so far ends with a newline

    def feed(self, text: str) -> None:
        text = (self._pending + text).replace("\r\n", "\n")
        self._pending = ""
        if text.endswith("\r"):
            text, self._pending = text[:-1], "\r"
        while text:
            nl = text.find("\n")
            if nl < 0:
                # A partial line (pytest's progress dots): show it now, holding back only
                # a tail that could be the start of the exit marker.
                if self.started is not None and self.status is None:
                    keep = _marker_prefix_len(text)
                    self._emit(text[:len(text) - keep])
                    text = text[len(text) - keep:]
                self._pending = text + self._pending
                return
            self._line(text[:nl + 1])
            text = text[nl + 1:]

    def _line(self, line: str) -> None:
        stripped = line.strip()
        if self.started is None:
            if stripped.endswith(START):
                self.started = time.monotonic()
                before = stripped[:-len(START)]
                if before:
                    self.boot_log.append(before + "\n")
            else:
                self.boot_log.append(line)
                if self.verbose:
                    self._emit(line)
            return
        if self.status is None:
            idx = line.find(EXIT)
            if idx >= 0 and stripped.endswith("@@"):
                self._emit(line[:idx])
                if not self._bol:
                    self._emit("\n")
                try:
                    self.status = int(stripped[stripped.find(EXIT) + len(EXIT):-2])
                except ValueError:
                    self.status = STATUS_NO_REPORT
                return
            self._emit(line)
        elif self.verbose:
            self._emit(line)

    def _emit(self, text: str) -> None:
        if text:
            self.out.write(text)
            self.out.flush()
            self._bol = text.endswith("\n")

    def close(self) -> None:
        if self._pending and self.started is not None and self.status is None:
            self._emit(self._pending)
        self._pending = ""


def run(kernel: Kernel, command: Sequence[str], *, cwd: Path, env: Mapping[str, str],
        timeout: float, memory: str = "2G", cpus: int = 2, verbose: bool = False,
        out: TextIO = sys.stdout, log: TextIO = sys.stderr) -> Result:
    """Boot KERNEL, run COMMAND in CWD with exactly ENV, and return its exit status.

    Output is streamed to OUT as it arrives; vmtest's own messages go to LOG.  Files
    the command writes to ``$PYBPF_VMTEST_OUT`` come back in ``Result.outputs``.
    """
    initrd = initramfs.build(kernel)
    rundir = Path(tempfile.mkdtemp(prefix="pybpf-vmtest-"))
    t0 = time.monotonic()
    console = _ConsoleFilter(out, verbose)
    proc: Optional[subprocess.Popen] = None
    try:
        write_run_dir(rundir, command, cwd, env)
        cmd = qemu_command(kernel, initrd, rundir, memory=memory, cpus=cpus)
        if verbose:
            print("vmtest: " + " ".join(shlex.quote(c) for c in cmd), file=log, flush=True)
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT)
        assert proc.stdout is not None
        fd = proc.stdout.fileno()
        os.set_blocking(fd, False)
        sel = selectors.DefaultSelector()
        sel.register(fd, selectors.EVENT_READ)
        deadline = t0 + timeout
        timed_out = False
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                timed_out = True
                break
            if not sel.select(min(left, 1.0)):
                if proc.poll() is not None:
                    break
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            console.feed(chunk.decode("utf-8", "replace"))
        sel.close()
        console.close()
        if timed_out:
            proc.kill()
            proc.wait()
            if console.started is None:
                print(f"vmtest: {kernel.series}: guest timed out after {timeout:.0f} s while booting; "
                      "console:", file=log)
                log.write("".join(console.boot_log[-60:]))
            else:
                print(f"\nvmtest: {kernel.series}: guest timed out after {timeout:.0f} s running "
                      f"{' '.join(command)!r}", file=log)
            log.flush()
            return Result(STATUS_TIMEOUT, _boot(console, t0), _ran(console), {})
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        status = _read_status(rundir / "exit-status")
        if status is None:
            status = console.status
        if status is None:
            if console.started is None:
                print(f"vmtest: {kernel.series}: guest stopped while booting (QEMU exit "
                      f"{proc.returncode}); console:", file=log)
                log.write("".join(console.boot_log[-60:]))
            else:   # its console output (a panic, say) has been streamed already
                print(f"\nvmtest: {kernel.series}: guest stopped without reporting the command's exit "
                      f"status (kernel panic or power-off; QEMU exit {proc.returncode})", file=log)
            log.flush()
            status = STATUS_NO_REPORT
        outputs = {p.name: p.read_bytes() for p in (rundir / "out").iterdir() if p.is_file()}
        return Result(status, _boot(console, t0), _ran(console), outputs)
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        shutil.rmtree(rundir, ignore_errors=True)


def _marker_prefix_len(text: str) -> int:
    """Length of the tail of TEXT that is, or may grow into, the exit marker."""
    idx = text.find(EXIT)
    if idx >= 0:
        return len(text) - idx
    for n in range(min(len(text), len(EXIT) - 1), 0, -1):
        if EXIT.startswith(text[-n:]):
            return n
    return 0


def _boot(console: _ConsoleFilter, t0: float) -> float:
    return (console.started or time.monotonic()) - t0


def _ran(console: _ConsoleFilter) -> float:
    return time.monotonic() - console.started if console.started else 0.0


def _read_status(path: Path) -> Optional[int]:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None
