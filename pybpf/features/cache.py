"""Probe results cached for the life of the boot: in memory, and on disk for other processes.

A kernel's features do not change until it reboots, so answers are kept in a
JSON file named after the boot id (``/proc/sys/kernel/random/boot_id``) and
checked against the kernel release.  Only conclusive answers are stored (a
probe that raised stores nothing).  The file lives in ``$PYBPF_CACHE_DIR``
when set (``PYBPF_CACHE_DIR=`` with an empty value disables the disk cache),
else ``/run/pybpf`` for root and ``$XDG_CACHE_HOME/pybpf`` (``~/.cache/pybpf``)
for others.

Reading is forgiving: a missing, unreadable, foreign (other owner), corrupt
or stale file is ignored.  Writing is atomic (temporary file + rename) and
merges what another process wrote meanwhile; files of earlier boots are
removed.  New answers are written by :meth:`FeatureCache.flush`, called after
:func:`pybpf.features.probe_all` and at interpreter exit.
"""

from __future__ import annotations

import atexit
import json
import os
import stat
import tempfile
import threading
from typing import Dict, Optional, Tuple

from .result import Probe

__all__ = ["FeatureCache", "cache_dir", "boot_identity", "CACHE_VERSION"]

CACHE_VERSION = 1
_PREFIX = "features-"


def boot_identity() -> Tuple[str, str]:
    """(boot id, kernel release): what a cached answer is valid for."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            boot = f.read().strip()
    except OSError:
        boot = ""
    return boot, os.uname().release


def cache_dir() -> Optional[str]:
    """The directory of the on-disk cache, or None when disabled."""
    env = os.environ.get("PYBPF_CACHE_DIR")
    if env is not None:
        return env or None
    if os.geteuid() == 0:
        return "/run/pybpf"
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "pybpf")


class FeatureCache:
    """Answers by key (``"prog_type:xdp"``, ``"btf_enum64"`` ...), memoised and persisted."""

    def __init__(self, directory: Optional[str] = None, *, persistent: bool = True,
                 flush_at_exit: bool = False) -> None:
        """``directory`` defaults to :func:`cache_dir`; ``persistent=False`` keeps answers in
        memory only; ``flush_at_exit`` writes new answers when the interpreter exits."""
        self._lock = threading.RLock()
        self._mem: Dict[str, Probe] = {}
        self._dirty: Dict[str, Probe] = {}
        self._loaded = not persistent
        self._dir = directory if directory is not None else (cache_dir() if persistent else None)
        self._boot, self._release = boot_identity()
        if persistent and flush_at_exit:
            atexit.register(self.flush)

    @property
    def path(self) -> Optional[str]:
        """The cache file, or None when there is no disk cache (no dir, unknown boot id)."""
        if not self._dir or not self._boot:
            return None
        return os.path.join(self._dir, f"{_PREFIX}{self._boot}.json")

    def get(self, key: str) -> Optional[Probe]:
        with self._lock:
            if not self._loaded:
                self._mem.update(self._read())
                self._loaded = True
            return self._mem.get(key)

    def put(self, key: str, probe: Probe) -> None:
        with self._lock:
            self._mem[key] = probe
            self._dirty[key] = probe

    def clear(self, *, disk: bool = False) -> None:
        """Forget every answer: this process probes again (and its next flush replaces
        the file's answers); with ``disk`` the file is deleted now."""
        with self._lock:
            self._mem.clear()
            self._dirty.clear()
            self._loaded = True
            path = self.path
            if disk and path:
                try:
                    os.unlink(path)
                except OSError:
                    pass

    # -- disk -------------------------------------------------------------------------------
    def _read(self) -> Dict[str, Probe]:
        path = self.path
        if path is None:
            return {}
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
        except OSError:
            return {}
        try:
            st = os.fstat(fd)
            # Only trust a regular file written by us or root.
            if not stat.S_ISREG(st.st_mode) or st.st_uid not in (0, os.geteuid()):
                return {}
            with os.fdopen(fd, "r", encoding="utf-8", closefd=False) as f:
                doc = json.load(f)
        except (OSError, ValueError):
            return {}
        finally:
            os.close(fd)
        if not (isinstance(doc, dict) and doc.get("version") == CACHE_VERSION
                and doc.get("boot_id") == self._boot and doc.get("release") == self._release
                and isinstance(doc.get("results"), dict)):
            return {}
        out = {}
        for key, value in doc["results"].items():
            p = Probe.from_json(value)
            if isinstance(key, str) and p is not None:
                out[key] = p
        return out

    def flush(self) -> None:
        """Write new answers to disk (merged with the file's); errors are ignored."""
        with self._lock:
            path = self.path
            if not self._dirty or path is None:
                return
            results = self._read()
            results.update(self._dirty)
            doc = {"version": CACHE_VERSION, "boot_id": self._boot, "release": self._release,
                   "results": {k: v.to_json() for k, v in sorted(results.items())}}
            try:
                os.makedirs(self._dir, mode=0o755, exist_ok=True)  # type: ignore[arg-type]
                fd, tmp = tempfile.mkstemp(prefix=".features-", dir=self._dir)
                try:
                    with os.fdopen(fd, "w", encoding="utf-8") as f:
                        json.dump(doc, f, separators=(",", ":"))
                    os.chmod(tmp, 0o644)
                    os.replace(tmp, path)
                except BaseException:
                    try:
                        os.unlink(tmp)
                    except OSError:
                        pass
                    raise
            except OSError:
                return
            self._dirty.clear()
            self._remove_stale()

    def _remove_stale(self) -> None:
        assert self._dir is not None
        mine = os.path.basename(self.path or "")
        try:
            names = os.listdir(self._dir)
        except OSError:
            return
        for name in names:
            if name.startswith(_PREFIX) and name.endswith(".json") and name != mine:
                try:
                    os.unlink(os.path.join(self._dir, name))
                except OSError:
                    pass
