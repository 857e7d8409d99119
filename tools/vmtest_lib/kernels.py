"""Guest kernels: which Debian package each series comes from, fetched and cached at first use.

A kernel series (``5.10``, ``6.1``, ``6.12``) maps to a Debian *meta* package whose
``Depends`` names the current image package (``linux-image-amd64`` ->
``linux-image-6.1.0-56-amd64``); the ABI number changes with every Debian kernel
update, so it is looked up, never written down.  The image package is fetched with
``apt-get download`` (not installed), unpacked with ``dpkg-deb --fsys-tarfile``
keeping the kernel image and the modules a test VM can use, and indexed with
``depmod -b`` so ``modprobe`` works inside the guest.

Suites the machine's apt sources do not list (bullseye, for 5.10, on a bookworm
host) are fetched through a scratch apt configuration under the cache directory
(its own sources list, lists and cache), pointing at the Debian mirror the machine
already uses; the system's apt configuration is never changed.

Cache layout (``cache_dir()``)::

    kernels/<series>.json      which release a series resolved to (reused offline)
    kernels/<release>/         boot/vmlinuz-<release>, lib/modules/<release>/...
    apt-<suite>/               scratch apt state for suites the system does not list
    initramfs/                 built by :mod:`.initramfs`
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import lzma
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
SCRATCH_LISTS_MAX_AGE = 24 * 3600   # re-run `apt-get update` on scratch lists older than this


class VmtestError(Exception):
    """A vmtest set-up step failed; the message says which and what to do."""


@dataclass(frozen=True)
class Series:
    """A kernel series and where Debian publishes it."""

    name: str    # what the user types: "6.1"
    suite: str   # Debian suite carrying it
    meta: str    # meta package depending on the current image package


SERIES: Dict[str, Series] = {
    "5.10": Series("5.10", "bullseye", "linux-image-amd64"),
    "6.1": Series("6.1", "bookworm", "linux-image-amd64"),
    "6.12": Series("6.12", "bookworm", "linux-image-6.12-amd64"),
}


@dataclass(frozen=True)
class Kernel:
    """An unpacked guest kernel in the cache."""

    series: str
    package: str
    version: str
    release: str   # `uname -r` in the guest
    root: Path     # the unpacked package tree

    @property
    def vmlinuz(self) -> Path:
        return self.root / "boot" / f"vmlinuz-{self.release}"

    @property
    def vmlinux(self) -> Path:
        """The uncompressed ELF image (PVH entry): QEMU starts it directly, skipping the
        firmware and the in-guest decompression (about 5 s under TCG)."""
        return self.root / "boot" / f"vmlinux-{self.release}"

    @property
    def modules(self) -> Path:
        return self.root / "lib" / "modules" / self.release

    @property
    def config(self) -> Path:
        return self.root / "boot" / f"config-{self.release}"


def cache_dir() -> Path:
    """$PYBPF_VMTEST_CACHE, else $XDG_CACHE_HOME/pybpf-vmtest, else ~/.cache/pybpf-vmtest."""
    env = os.environ.get("PYBPF_VMTEST_CACHE")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return base / "pybpf-vmtest"


def log(msg: str) -> None:
    print(f"vmtest: {msg}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def cache_lock(cache: Path) -> Iterator[None]:
    """Serialise fetching between concurrent vmtest runs sharing one cache."""
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / ".lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def get_kernel(series: str, *, refresh: bool = False) -> Kernel:
    """The cached kernel of SERIES, fetching it first when absent (or when REFRESH)."""
    if series not in SERIES:
        raise VmtestError(f"unknown kernel {series!r}: choose one of {', '.join(SERIES)}")
    cache = cache_dir()
    pointer = cache / "kernels" / f"{series}.json"
    if not refresh:
        k = _read_pointer(pointer)
        if k is not None:
            return k
    with cache_lock(cache):
        if not refresh:
            k = _read_pointer(pointer)
            if k is not None:
                return k
        k = _fetch(SERIES[series], cache)
        pointer.parent.mkdir(parents=True, exist_ok=True)
        tmp = pointer.with_suffix(".tmp")
        tmp.write_text(json.dumps({"series": k.series, "package": k.package, "version": k.version,
                                   "release": k.release, "root": str(k.root)}, indent=1))
        tmp.replace(pointer)
        return k


def _read_pointer(pointer: Path) -> Optional[Kernel]:
    try:
        d = json.loads(pointer.read_text())
        k = Kernel(d["series"], d["package"], d["version"], d["release"], Path(d["root"]))
    except (OSError, ValueError, KeyError):
        return None
    if k.vmlinux.is_file() and (k.modules / "modules.dep").is_file():
        return k
    return None


# --------------------------------------------------------------------------- apt

def _os_codename() -> str:
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("VERSION_CODENAME="):
                return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return ""


def parse_sources(text: str, deb822: bool) -> List[Tuple[str, List[str], List[str]]]:
    """(uri, suites, components) of the enabled ``deb`` entries of one sources file."""
    out: List[Tuple[str, List[str], List[str]]] = []
    if deb822:
        for stanza in re.split(r"\n\s*\n", text):
            fields: Dict[str, str] = {}
            for line in stanza.splitlines():
                if line.startswith("#") or ":" not in line or line[:1].isspace():
                    continue
                key, value = line.split(":", 1)
                fields[key.strip().lower()] = value.strip()
            if "deb" not in fields.get("types", "").split() or fields.get("enabled", "yes") == "no":
                continue
            for uri in fields.get("uris", "").split():
                out.append((uri, fields.get("suites", "").split(), fields.get("components", "").split()))
        return out
    for line in text.splitlines():
        words = re.sub(r"\[[^]]*\]", " ", line.split("#", 1)[0]).split()
        if len(words) >= 3 and words[0] == "deb":
            out.append((words[1], [words[2]], words[3:]))
    return out


def apt_sources() -> List[Tuple[str, List[str], List[str]]]:
    """(uri, suites, components) of every enabled deb entry in the system's apt sources."""
    out: List[Tuple[str, List[str], List[str]]] = []
    files = [Path("/etc/apt/sources.list")]
    d = Path("/etc/apt/sources.list.d")
    if d.is_dir():
        files += sorted(d.iterdir())
    for f in files:
        if f.suffix not in (".sources", ".list"):
            continue
        try:
            out += parse_sources(f.read_text(), deb822=f.suffix == ".sources")
        except OSError:
            continue
    return out


def debian_mirror() -> str:
    """The URI of the Debian archive (not -security) the machine's apt sources use for its release."""
    codename = _os_codename()
    for uri, suites, comps in apt_sources():
        if "main" in comps and "security" not in uri and any(
                s == codename or s.split("-")[0] == codename for s in suites):
            return uri.rstrip("/")
    raise VmtestError("no Debian archive found in /etc/apt/sources.list* for this release "
                      f"({codename or 'unknown'}); cannot fetch guest kernels")


def _system_suites() -> List[str]:
    return [s for _, suites, _ in apt_sources() for s in suites]


def _run(cmd: Sequence[str], *, cwd: Optional[Path] = None, what: str) -> str:
    r = subprocess.run(list(cmd), cwd=cwd, capture_output=True, text=True)
    if r.returncode != 0:
        raise VmtestError(f"{what} failed ({' '.join(cmd[:2])} ... exit {r.returncode}):\n"
                          f"{(r.stderr or r.stdout).strip()[-2000:]}")
    return r.stdout


class Apt:
    """apt-get/apt-cache for one suite: the system's configuration, or a scratch one."""

    def __init__(self, suite: str, cache: Path):
        self.suite = suite
        self.options: List[str] = ["-o", "APT::Sandbox::User=root", "-o", "Acquire::Languages=none"]
        self.scratch: Optional[Path] = None
        if suite not in _system_suites():
            self.scratch = cache / f"apt-{suite}"
            s = self.scratch
            self.options += ["-o", f"Dir::Etc::SourceList={s / 'sources.list'}",
                             "-o", f"Dir::Etc::SourceParts={s / 'sources.list.d'}",
                             "-o", f"Dir::State::Lists={s / 'lists'}",
                             "-o", f"Dir::Cache={s / 'cache'}"]

    def update(self, *, force: bool = False) -> None:
        if self.scratch is None:
            log("apt-get update (system sources)")
            _run(["apt-get", *self.options, "update", "-qq"], what="apt-get update")
            return
        s = self.scratch
        stamp = s / "updated"
        if not force and stamp.exists() and time.time() - stamp.stat().st_mtime < SCRATCH_LISTS_MAX_AGE:
            return
        for sub in ("sources.list.d", "lists/partial", "cache/archives/partial"):
            (s / sub).mkdir(parents=True, exist_ok=True)
        mirror = debian_mirror()
        (s / "sources.list").write_text(f"deb [signed-by={KEYRING}] {mirror} {self.suite} main\n")
        log(f"apt-get update for {self.suite} main (scratch sources in {s}, mirror {mirror})")
        _run(["apt-get", *self.options, "update", "-qq"], what=f"apt-get update ({self.suite})")
        stamp.touch()

    def candidate_depends(self, package: str) -> Tuple[str, str]:
        """(version, Depends) of PACKAGE's candidate version."""
        out = subprocess.run(["apt-cache", *self.options, "show", "--no-all-versions", package],
                             capture_output=True, text=True).stdout
        version = depends = ""
        for line in out.splitlines():
            if line.startswith("Version:"):
                version = line.split(":", 1)[1].strip()
            elif line.startswith("Depends:"):
                depends = line.split(":", 1)[1].strip()
        return version, depends

    def download(self, package: str, dest: Path) -> Path:
        dest.mkdir(parents=True, exist_ok=True)
        before = set(dest.glob("*.deb"))
        log(f"apt-get download {package}")
        _run(["apt-get", *self.options, "download", "-q", package], cwd=dest,
             what=f"apt-get download {package}")
        new = [p for p in dest.glob("*.deb") if p not in before and p.name.startswith(package + "_")]
        if not new:
            new = sorted(dest.glob(f"{package}_*.deb"))
        if not new:
            raise VmtestError(f"apt-get download {package} left no .deb in {dest}")
        return new[-1]


def resolve_image_package(series: Series, apt: Apt) -> str:
    """The image package the SERIES meta package currently depends on."""
    version, depends = apt.candidate_depends(series.meta)
    if not depends:
        apt.update(force=True)
        version, depends = apt.candidate_depends(series.meta)
    want = re.compile(r"^linux-image-" + re.escape(series.name) + r"[.-]\S*-amd64$")
    for alt in depends.split(","):
        name = alt.split("|")[0].split("(")[0].strip()
        if want.match(name):
            return name
    raise VmtestError(f"cannot find the {series.name} image package: {series.meta} "
                      f"({version or 'not found'}) depends on {depends or 'nothing'!r} in {series.suite}")


# --------------------------------------------------------------------------- unpack

# Module directories a test VM never needs (hardware drivers, sound): skipping them
# keeps an unpacked kernel near 100 MB instead of 400 MB.
_KEEP_DRIVERS = ("virtio", "net", "char", "block")
_DROP_NET_DRIVERS = ("wireless", "ethernet", "usb", "can", "wan", "ieee802154", "hamradio")


def _keep(rel: str) -> bool:
    parts = rel.split("/")
    if parts[:1] == ["boot"]:
        return len(parts) == 2 and parts[1].split("-")[0] in ("vmlinuz", "config")
    if parts[:2] != ["lib", "modules"] or len(parts) < 4:
        return len(parts) <= 3 and parts[:2] == ["lib", "modules"][:len(parts)]
    if len(parts) < 5 or parts[3] != "kernel":
        return True                     # modules.builtin, modules.order, ...
    top = parts[4]
    if top == "sound":
        return False
    if top == "drivers" and len(parts) > 5:
        if parts[5] not in _KEEP_DRIVERS:
            return False
        if parts[5] == "net" and len(parts) > 6 and parts[6] in _DROP_NET_DRIVERS:
            return False
    return True


def unpack(deb: Path, dest: Path) -> None:
    """Extract the kernel image and the useful modules of DEB into DEST."""
    proc = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE)
    assert proc.stdout is not None
    try:
        with tarfile.open(fileobj=proc.stdout, mode="r|") as tar:
            for member in tar:
                rel = member.name.lstrip("./")
                if rel.startswith("usr/lib/"):      # merged-/usr packages
                    rel = rel[len("usr/"):]
                if not rel or not (member.isfile() or member.isdir()) or not _keep(rel):
                    continue
                if ".." in rel.split("/"):
                    raise VmtestError(f"{deb.name}: unsafe path {member.name!r}")
                target = dest / rel
                if member.isdir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                src = tar.extractfile(member)
                assert src is not None
                with open(target, "wb") as out:
                    shutil.copyfileobj(src, out, 1 << 20)
    finally:
        proc.stdout.close()
        if proc.wait() != 0:
            raise VmtestError(f"dpkg-deb --fsys-tarfile {deb} failed (exit {proc.returncode})")


_PAYLOADS = ((b"\xfd7zXZ\x00", "xz"), (b"\x28\xb5\x2f\xfd", "zstd"), (b"\x1f\x8b\x08", "gzip"))


def extract_vmlinux(bzimage: Path, out: Path) -> None:
    """Decompress the ELF kernel carried inside a bzImage (what scripts/extract-vmlinux does)."""
    data = bzimage.read_bytes()
    for magic, kind in _PAYLOADS:
        start = data.find(magic)
        while start >= 0:
            elf = _decompress(data[start:], kind)
            if elf[:4] == b"\x7fELF":
                out.write_bytes(elf)
                return
            start = data.find(magic, start + 1)
    raise VmtestError(f"{bzimage}: no xz, zstd or gzip payload holding an ELF kernel")


def _decompress(blob: bytes, kind: str) -> bytes:
    try:
        if kind == "xz":
            return lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(blob)
        if kind == "gzip":
            return zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(blob)
    except (lzma.LZMAError, zlib.error):
        return b""
    if shutil.which("zstd") is None:
        raise VmtestError("the kernel image is zstd-compressed: apt-get install zstd")
    # zstd stops at the end of the frame; the bzImage trailer after it is ignored.
    return subprocess.run(["zstd", "-dcq"], input=blob, capture_output=True).stdout


def _fetch(series: Series, cache: Path) -> Kernel:
    t0 = time.monotonic()
    apt = Apt(series.suite, cache)
    if apt.scratch is not None:
        apt.update()
    package = resolve_image_package(series, apt)
    kernels = cache / "kernels"
    for done in kernels.glob("*/.package"):       # already unpacked under another series pointer
        info = json.loads(done.read_text())
        if info.get("package") == package:
            k = Kernel(series.name, package, info["version"], info["release"], done.parent)
            if k.vmlinux.is_file() and (k.modules / "modules.dep").is_file():
                return k
    deb = apt.download(package, cache / "debs")
    version = _run(["dpkg-deb", "-f", str(deb), "Version"], what="dpkg-deb -f").strip()
    tmp = kernels / f".unpack-{package}"
    shutil.rmtree(tmp, ignore_errors=True)
    log(f"unpacking {deb.name}")
    unpack(deb, tmp)
    releases = [p.name for p in (tmp / "lib" / "modules").iterdir()] if (tmp / "lib" / "modules").is_dir() else []
    if len(releases) != 1 or not (tmp / "boot" / f"vmlinuz-{releases[0]}").is_file():
        raise VmtestError(f"{deb.name}: expected one kernel release with boot/vmlinuz-*, found {releases}")
    release = releases[0]
    extract_vmlinux(tmp / "boot" / f"vmlinuz-{release}", tmp / "boot" / f"vmlinux-{release}")
    log(f"depmod {release}")
    _run(["depmod", "-b", str(tmp), release], what="depmod")
    (tmp / ".package").write_text(json.dumps({"package": package, "version": version,
                                              "release": release}))
    final = kernels / release
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)
    deb.unlink()
    log(f"kernel {series.name}: {package} {version} ready in {time.monotonic() - t0:.0f} s")
    return Kernel(series.name, package, version, release, final)
