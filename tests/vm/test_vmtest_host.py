"""Host-side pieces of tools/vmtest that need no guest: apt sources, unpack filter, initramfs
archive, module order, console markers, run script quoting, the suite's summaries."""

from __future__ import annotations

import gzip
import json
import lzma
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tools.vmtest_lib import initramfs, kernels, runner, suite

ROOT = Path(__file__).resolve().parents[2]


def test_parse_sources_one_line_and_deb822():
    one = ("# comment\ndeb [signed-by=/k.gpg arch=amd64] http://mirror.example/debian bookworm main contrib\n"
           "deb-src http://mirror.example/debian bookworm main\n")
    assert kernels.parse_sources(one, deb822=False) == [
        ("http://mirror.example/debian", ["bookworm"], ["main", "contrib"])]
    d822 = ("Types: deb\n# http://snapshot.example/\nURIs: http://a.example/debian\n"
            "Suites: bookworm bookworm-updates\nComponents: main\n\n"
            "Types: deb\nURIs: http://b.example/debian\nSuites: trixie\nComponents: main\nEnabled: no\n")
    assert kernels.parse_sources(d822, deb822=True) == [
        ("http://a.example/debian", ["bookworm", "bookworm-updates"], ["main"])]


@pytest.mark.parametrize("path,keep", [
    ("boot/vmlinuz-6.1.0-1-amd64", True), ("boot/config-6.1.0-1-amd64", True),
    ("boot/System.map-6.1.0-1-amd64", False),
    ("lib/modules/6.1.0-1-amd64/modules.builtin", True),
    ("lib/modules/6.1.0-1-amd64/kernel/fs/9p/9p.ko", True),
    ("lib/modules/6.1.0-1-amd64/kernel/net/sched/sch_ingress.ko", True),
    ("lib/modules/6.1.0-1-amd64/kernel/drivers/virtio/virtio_pci.ko", True),
    ("lib/modules/6.1.0-1-amd64/kernel/drivers/net/veth.ko", True),
    ("lib/modules/6.1.0-1-amd64/kernel/drivers/net/wireless/x.ko", False),
    ("lib/modules/6.1.0-1-amd64/kernel/drivers/gpu/drm/x.ko", False),
    ("lib/modules/6.1.0-1-amd64/kernel/sound/core/x.ko", False),
    ("usr/share/doc/linux-image/changelog.gz", False),
])
def test_unpack_keeps_what_a_test_vm_uses(path, keep):
    assert kernels._keep(path) is keep


def test_extract_vmlinux_finds_the_compressed_elf(tmp_path):
    elf = b"\x7fELF" + bytes(range(256)) * 64
    bz = tmp_path / "vmlinuz"
    bz.write_bytes(b"MZ" + b"\0" * 300 + b"\xfd7zXZ\0garbage" + lzma.compress(elf) + b"trailer" * 10)
    kernels.extract_vmlinux(bz, tmp_path / "vmlinux")
    assert (tmp_path / "vmlinux").read_bytes() == elf
    bad = tmp_path / "bad"
    bad.write_bytes(b"MZ" + b"\0" * 100)
    with pytest.raises(kernels.VmtestError, match="no xz, zstd or gzip payload"):
        kernels.extract_vmlinux(bad, tmp_path / "out")


def _fake_kernel(tmp_path: Path) -> kernels.Kernel:
    k = kernels.Kernel("6.1", "linux-image-x", "1", "6.1.0-9-amd64", tmp_path)
    k.modules.mkdir(parents=True)
    (k.modules / "modules.dep").write_text(
        "kernel/fs/9p/9p.ko: kernel/net/9p/9pnet.ko kernel/fs/netfs/netfs.ko\n"
        "kernel/net/9p/9pnet.ko:\n"
        "kernel/fs/netfs/netfs.ko:\n"
        "kernel/net/9p/9pnet_virtio.ko: kernel/net/9p/9pnet.ko\n"
        "kernel/fs/overlayfs/overlay.ko:\n")
    (k.modules / "modules.builtin").write_text("kernel/drivers/virtio/virtio_pci.ko\n")
    return k


def test_boot_modules_dependencies_first_builtins_skipped(tmp_path):
    k = _fake_kernel(tmp_path)
    names = [Path(p).name for p in initramfs.boot_modules(k)]
    assert names == ["9pnet.ko", "9pnet_virtio.ko", "netfs.ko", "9p.ko", "overlay.ko"]
    (k.modules / "modules.builtin").write_text("")
    with pytest.raises(kernels.VmtestError, match="no module virtio_pci"):
        initramfs.boot_modules(k)


@pytest.mark.skipif(shutil.which("cpio") is None, reason="needs the cpio tool to read the archive back")
def test_cpio_archive_reads_back_with_gnu_cpio(tmp_path):
    c = initramfs._Cpio()
    c.dir("bin")
    c.file("bin/hello", b"hello\n" * 3, 0o755)
    c.symlink("bin/sh", "hello")
    c.chardev("dev/console", 5, 1)
    archive = c.finish()
    listing = subprocess.run(["cpio", "-itv", "--quiet"], input=archive, capture_output=True, check=True)
    lines = listing.stdout.decode().splitlines()
    assert [ln.split()[-1] if "->" not in ln else ln.split()[-3] for ln in lines] == \
        ["bin", "bin/hello", "bin/sh", "dev/console"]
    assert lines[1].startswith("-rwxr-xr-x") and lines[3].startswith("crw-------")
    out = subprocess.run(["cpio", "-i", "--quiet", "--to-stdout", "bin/hello"], input=archive,
                         capture_output=True, check=True).stdout
    assert out == b"hello\n" * 3


class _Out:
    def __init__(self):
        self.text = ""

    def write(self, s):
        self.text += s

    def flush(self):
        pass


STREAM = ("SeaBIOS\r\n[    0.1] booting\r\n@@VMTEST-START@@\r\n....F.\r\n1 failed, 5 passed\r\n"
          "no newline at end@@VMTEST-EXIT 1@@\r\n[    9.9] reboot: Power down\r\n")


@pytest.mark.parametrize("chunk", [1, 2, 3, 7, 1000])
def test_console_filter_hides_boot_and_finds_markers_across_chunks(chunk):
    out = _Out()
    f = runner._ConsoleFilter(out, verbose=False)
    for i in range(0, len(STREAM), chunk):
        f.feed(STREAM[i:i + chunk])
    f.close()
    assert out.text == "....F.\n1 failed, 5 passed\nno newline at end\n"
    assert f.status == 1 and f.started is not None
    assert "booting" in "".join(f.boot_log)


def test_run_script_quotes_command_and_environment(tmp_path):
    rundir = tmp_path / "run"
    rundir.mkdir()
    cmd = ["python3", "-c", "import os, sys; print(os.environ['X'], sys.argv[1:], os.getcwd())",
           "a b", "'q'", "$HOME"]
    runner.write_run_dir(rundir, cmd, tmp_path, {"X": "va l'ue $y", "PATH": os.environ["PATH"]})
    r = subprocess.run(["env", "-i", "/bin/sh", str(rundir / "run.sh")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"va l'ue $y ['a b', \"'q'\", '$HOME'] {tmp_path}"


def test_lsm_list_adds_bpf_only_when_missing(tmp_path):
    k = kernels.Kernel("5.10", "p", "1", "5.10.0-1-amd64", tmp_path)
    k.config.parent.mkdir(parents=True)
    k.config.write_text('CONFIG_X=y\nCONFIG_LSM="lockdown,yama,apparmor"\n')
    assert runner.lsm_list(k) == "lockdown,yama,apparmor,bpf"
    k.config.write_text('CONFIG_LSM="lockdown,yama,bpf"\n')
    assert runner.lsm_list(k) is None


def _kernel_run(series, passed, failed, skipped, features=None, status=0):
    doc = {"passed": passed, "failed": failed, "skipped": skipped,
           "skip_reasons": {"no fprobe": skipped} if skipped else {}, "failures": ["t::x"] * failed}
    outputs = {"pytest-1.json": json.dumps(doc).encode()}
    if features:
        outputs["features.json"] = json.dumps(features).encode()
    return suite.KernelRun(series, f"{series}.0-1-amd64", runner.Result(status, 3.0, 60.0, outputs))


def test_suite_summary_lines_and_feature_differences():
    f_old = {"features": {"tcx": {"supported": False}, "fentry": {"supported": True}},
             "prog_types": {}, "map_types": {}, "links": {}, "helpers": {"xdp": ["a"]}}
    f_new = {"features": {"tcx": {"supported": True}, "fentry": {"supported": True}},
             "prog_types": {}, "map_types": {}, "links": {}, "helpers": {"xdp": ["a", "b"]}}
    old = _kernel_run("5.10", 10, 0, 2, f_old)
    new = _kernel_run("6.12", 11, 1, 0, f_new, status=1)
    assert old.ok and not new.ok
    assert old.summary_line() == ("vmtest 5.10 (5.10.0-1-amd64): 10 ran, 10 passed, 0 failed, "
                                  "2 skipped; boot 3 s, tests 60 s")
    assert old.detail_lines() == ["    skipped 2x: no fprobe"]
    assert new.summary_line().endswith("FAILED (pytest exit 1)")
    table = suite.feature_differences([old, new])
    assert any(ln.split() == ["features.tcx", "NO", "yes"] for ln in table)
    assert any(ln.split() == ["helpers.xdp", "1", "2"] for ln in table)
    assert not any("fentry" in ln for ln in table)
    crashed = suite.KernelRun("6.1", "6.1.0-1-amd64", runner.Result(runner.STATUS_TIMEOUT, 3.0, 900.0, {}))
    assert not crashed.ok and "timed out" in crashed.summary_line()


def test_guest_test_files_are_the_marked_ones():
    files = suite.guest_test_files(ROOT)
    assert "tests/kernel/test_kinds.py" in files and "tests/vm/test_compat_smoke.py" in files
    assert "tests/vm/test_vmtest_host.py" not in files


def test_initramfs_is_gzip_newc(tmp_path, monkeypatch):
    monkeypatch.setenv("PYBPF_VMTEST_CACHE", str(tmp_path / "cache"))
    if not initramfs.BUSYBOX.is_file():
        pytest.skip("busybox-static is not installed (tools/vmtest installs it)")
    k = _fake_kernel(tmp_path)
    for rel in ("kernel/fs/9p/9p.ko", "kernel/net/9p/9pnet.ko", "kernel/fs/netfs/netfs.ko",
                "kernel/net/9p/9pnet_virtio.ko"):
        (k.modules / rel).parent.mkdir(parents=True, exist_ok=True)
        (k.modules / rel).write_bytes(b"\x7fELF" + rel.encode())
    (k.modules / "kernel/fs/overlayfs").mkdir(parents=True)
    (k.modules / "kernel/fs/overlayfs/overlay.ko.xz").write_bytes(lzma.compress(b"\x7fELFovl"))
    (k.modules / "modules.dep").write_text((k.modules / "modules.dep").read_text().replace(
        "overlay.ko:", "overlay.ko.xz:"))
    path = initramfs.build(k)
    assert initramfs.build(k) == path    # cached
    data = gzip.decompress(path.read_bytes())
    assert data.startswith(b"070701") and b"TRAILER!!!" in data
    assert b"\x7fELFovl" in data and b"9pnet_virtio\n9p\n" not in data   # order is deps first
    assert b"9pnet\n9pnet_virtio\nnetfs\n9p\noverlay\n" in data
