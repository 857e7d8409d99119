"""Extern symbols, resolved at load time as libbpf resolves them.

``.kconfig`` externs (``extern int CONFIG_HZ __kconfig;``) live in an
internal read-only array map, ``.kconfig``, that the ELF reader lays out
(:func:`pybpf.btf.fixup.kconfig_layout`) and :func:`fill_kconfig` fills from
the running kernel before the map is created:

* ``LINUX_KERNEL_VERSION``: ``KERNEL_VERSION(a, b, c)`` of ``uname -r``;
* ``LINUX_HAS_SYSCALL_WRAPPER``: whether syscalls enter through
  ``__<arch>_sys_*`` wrappers (``/proc/kallsyms`` has ``__x64_sys_bpf``);
* ``LINUX_HAS_BPF_COOKIE``: whether ``bpf_get_attach_cookie`` exists (probed);
* ``CONFIG_*``: from ``/boot/config-$(uname -r)`` or ``/proc/config.gz``
  (``$PYBPF_KCONFIG`` names another file):
  ``y``/``n``/``m`` for ``bool``, ``char`` and ``enum libbpf_tristate``,
  numbers (decimal, ``0x`` hex, ``0`` octal) for integers, ``"strings"``
  for ``char[N]``.

An option that is absent (or ``# ... is not set``) leaves a ``__weak``
extern at zero and is an error for a strong one.

``__ksym`` externs are resolved per program by :class:`KsymResolver`:

* a typed variable (``extern const struct rq runqueues __ksym;``) becomes a
  ``BPF_PSEUDO_BTF_ID`` ``ld_imm64`` of the kernel's BTF VAR, after checking
  that the declared type is compatible with the kernel's (module variables
  also carry their module's BTF object fd);
* a typeless one (``extern const void sym __ksym;``) becomes its address
  from ``/proc/kallsyms`` as a 64-bit immediate;
* a kfunc call becomes ``call`` with ``src_reg = BPF_PSEUDO_KFUNC_CALL`` and
  the BTF id of the kernel FUNC (a module's FUNC: ``off`` indexes the
  module BTF fd in ``fd_array``); ``bpf_ksym_exists(kfunc)`` loads the FUNC
  as a BTF id;
* a ``__weak`` ksym that the kernel lacks becomes 0 (an address or a
  ``bpf_ksym_exists`` test) or a kfunc call with ``imm = 0``, which the
  verifier accepts in code it can prove dead: exactly what libbpf 1.1 sends.

Kernel access here is reading files (/proc, /boot, /sys/kernel/btf) and,
for module symbols, opening module BTF objects through :mod:`pybpf.sys`.
"""

from __future__ import annotations

import gzip
import os
import re
from typing import Callable, Dict, Iterable, List, Literal, Mapping, Optional, Sequence, Tuple

import attrs

from .btf import Kind, Spec
from .btf.fixup import KCONFIG_SEC, KSYMS_SEC, kconfig_layout
from .btf.types import AnyEnum, Array, Int, IntEncoding
from .errors import LinkError, NotSupportedError, ParseError
from .spec import CollectionSpec, ExternRef, MapKind

__all__ = ["fill_kconfig", "kconfig_data", "read_kernel_config", "kernel_version",
           "has_syscall_wrapper", "kallsyms_lookup", "KsymResolver", "Ksym", "patch_externs",
           "KALLSYMS", "KCONFIG_ENV"]

KALLSYMS = "/proc/kallsyms"
KCONFIG_ENV = "PYBPF_KCONFIG"
_PSEUDO_MAP_VALUE = 2
_PSEUDO_BTF_ID = 3
_PSEUDO_KFUNC_CALL = 2
_LD_IMM64 = 0x18
_CALL = 0x85
_SYSCALL_PREFIX = {"x86_64": "x64", "i386": "ia32", "i686": "ia32", "aarch64": "arm64",
                   "s390x": "s390x", "riscv64": "riscv", "ppc64le": "powerpc", "ppc64": "powerpc",
                   "loongarch64": "loongarch"}


# -- .kconfig -------------------------------------------------------------------------------

def kernel_version(release: Optional[str] = None) -> int:
    """``KERNEL_VERSION(a, b, c)`` of ``release`` (default ``uname -r``); c saturates at 255.

    Ubuntu kernels report their real upstream version in
    ``/proc/version_signature``, which wins when present (as in libbpf).
    """
    text = None
    if release is None:
        try:
            with open("/proc/version_signature") as f:
                text = f.read().split()[2]
        except (OSError, IndexError):
            text = None
    text = text or release or os.uname().release
    m = re.match(r"(\d+)\.(\d+)(?:\.(\d+))?", text)
    if not m:
        raise NotSupportedError("LINUX_KERNEL_VERSION", f"cannot parse kernel release {text!r}")
    a, b, c = int(m.group(1)), int(m.group(2)), int(m.group(3) or 0)
    return (a << 16) + (b << 8) + min(c, 255)


def read_kernel_config(path: Optional[str] = None) -> Dict[str, str]:
    """``{CONFIG_NAME: raw value}`` of the running kernel's configuration.

    Looks at ``$PYBPF_KCONFIG`` (a file pybpf uses instead of the kernel's),
    then ``/boot/config-$(uname -r)``, then ``/proc/config.gz`` (libbpf's
    order); ``path`` names another file.  Files may be plain or gzip.
    Options that are ``# ... is not set`` are absent.  Raises
    :class:`NotSupportedError` when no configuration can be read.
    """
    env = os.environ.get(KCONFIG_ENV)
    paths = [path] if path else [env] if env else \
        [f"/boot/config-{os.uname().release}", "/proc/config.gz"]
    for p in paths:
        try:
            with open(p, "rb") as f:
                raw = f.read()
        except OSError:
            continue
        if raw[:2] == b"\x1f\x8b":
            try:
                raw = gzip.decompress(raw)
            except (OSError, EOFError) as e:
                raise ParseError(f"cannot decompress kernel config: {e}", file=p) from None
        return parse_config(raw.decode("utf-8", "replace"), p)
    raise NotSupportedError("kernel config for __kconfig externs",
                            f"none of {', '.join(paths)} can be read (CONFIG_IKCONFIG_PROC=y "
                            "provides /proc/config.gz)")


def parse_config(text: str, where: str = "<kconfig>") -> Dict[str, str]:
    """Parse Kconfig ``.config`` text: ``CONFIG_X=value`` lines (comments skipped)."""
    out: Dict[str, str] = {}
    for line in text.splitlines():
        if not line.startswith("CONFIG_"):
            continue
        name, sep, value = line.partition("=")
        if not sep or not value:
            raise ParseError(f"bad kernel config line {line!r}", file=where)
        out.setdefault(name, value)
    return out


def has_syscall_wrapper(kallsyms: Optional[str] = None) -> bool:
    """Whether this kernel enters syscalls through ``__<arch>_sys_*`` wrappers
    (CONFIG_ARCH_HAS_SYSCALL_WRAPPER), judged by ``__<arch>_sys_bpf`` in kallsyms."""
    prefix = _SYSCALL_PREFIX.get(os.uname().machine)
    if prefix is None:
        return False
    return bool(kallsyms_lookup([f"__{prefix}_sys_bpf"], path=kallsyms, allow_zero=True))


def _have_bpf_cookie() -> bool:
    # Probing loads a tiny program; pybpf.features does it and caches the answer per boot.
    from . import features
    return features.have_feature("bpf_cookie")


_VIRTUAL: Dict[str, Callable[[], int]] = {
    "LINUX_KERNEL_VERSION": kernel_version,
    "LINUX_HAS_SYSCALL_WRAPPER": lambda: int(has_syscall_wrapper()),
    "LINUX_HAS_BPF_COOKIE": lambda: int(_have_bpf_cookie()),
}


@attrs.frozen
class _Slot:
    name: str
    offset: int
    size: int
    kind: str          # "bool", "char", "int", "tristate", "chars"
    signed: bool


def _slot(btf: Spec, name: str, type_id: int, offset: int, size: int) -> _Slot:
    """libbpf's find_kcfg_type: what values a ``.kconfig`` extern's type can hold."""
    tid = btf.skip_modifiers(type_id)
    t = btf.type(tid)
    unsupported = LinkError(f"extern (kcfg) {name!r}: type {btf.type_name(type_id)} is not "
                            "supported (bool, char, integers, enum libbpf_tristate, char[N])")
    if isinstance(t, Int):
        if t.encoding & IntEncoding.BOOL:
            if t.size != 1:
                raise unsupported
            return _Slot(name, offset, size, "bool", False)
        if t.size == 1:
            return _Slot(name, offset, size, "char", bool(t.encoding & IntEncoding.SIGNED))
        if t.size not in (2, 4, 8):
            raise unsupported
        return _Slot(name, offset, size, "int", bool(t.encoding & IntEncoding.SIGNED))
    if isinstance(t, AnyEnum):
        if t.name != "libbpf_tristate" or (t.kind == Kind.ENUM and t.size != 4):
            raise unsupported
        return _Slot(name, offset, size, "tristate", False)
    if isinstance(t, Array):
        elem = btf.type(btf.skip_modifiers(t.type))
        if t.nelems == 0 or not isinstance(elem, Int) or elem.size != 1 or elem.encoding & IntEncoding.BOOL:
            raise unsupported
        return _Slot(name, offset, size, "chars", False)
    raise unsupported


def _encode(slot: _Slot, value: str, byteorder: str) -> bytes:
    """The bytes of Kconfig ``value`` for ``slot`` (libbpf's set_kcfg_value_*)."""
    name = slot.name
    if value and value[0] in "ynm":
        if slot.kind == "bool":
            if value[0] == "m":
                raise LinkError(f"extern (kcfg) {name!r}: value 'm' implies tristate or char type")
            return b"\1" if value[0] == "y" else b"\0"
        if slot.kind == "tristate":
            return {"n": 0, "y": 1, "m": 2}[value[0]].to_bytes(slot.size, _bo(byteorder))
        if slot.kind == "char":
            return value[0].encode()
        raise LinkError(f"extern (kcfg) {name!r}: value {value[0]!r} implies bool, tristate or char type")
    if value.startswith('"'):
        if slot.kind != "chars":
            raise LinkError(f"extern (kcfg) {name!r}: value {value} implies a char array type")
        if len(value) < 2 or not value.endswith('"'):
            raise LinkError(f"extern (kcfg) {name!r}: invalid string value {value}")
        text = value[1:-1].encode()
        return text[:slot.size - 1].ljust(slot.size, b"\0")   # truncated like libbpf
    try:
        num = _parse_u64(value)
    except ValueError:
        raise LinkError(f"extern (kcfg) {name!r}: value {value!r} is not a valid integer") from None
    return _encode_num(slot, num, byteorder)


def _encode_num(slot: _Slot, num: int, byteorder: str) -> bytes:
    name = slot.name
    if slot.kind == "bool":
        if num > 1:
            raise LinkError(f"extern (kcfg) {name!r}: value {num} is not a bool")
        return bytes([num])
    if slot.kind not in ("int", "char"):
        raise LinkError(f"extern (kcfg) {name!r}: value {num} implies an integer type")
    bits = slot.size * 8
    if bits < 64:
        fits = (num + (1 << (bits - 1))) % (1 << 64) < (1 << bits) if slot.signed else num >> bits == 0
        if not fits:
            raise LinkError(f"extern (kcfg) {name!r}: value {num} does not fit {slot.size} bytes")
    return (num & ((1 << bits) - 1)).to_bytes(slot.size, _bo(byteorder))


def _parse_u64(text: str) -> int:
    """C's strtoull(text, &end, 0) that must consume everything (libbpf's parse_u64)."""
    s = text.strip()
    neg = s.startswith("-")
    body = s[1:] if neg or s.startswith("+") else s
    if body.lower().startswith("0x"):
        v = int(body[2:], 16)
    elif body.startswith("0") and len(body) > 1:
        v = int(body[1:], 8)
    else:
        v = int(body, 10)
    return (-v) % (1 << 64) if neg else v


def _bo(byteorder: str) -> 'Literal["little", "big"]':
    return "little" if byteorder == "<" else "big"


def kconfig_data(btf: Spec, refs: Iterable[ExternRef] = (), *,
                 config: Optional[Mapping[str, str]] = None) -> bytes:
    """The contents of an object's ``.kconfig`` map for the running kernel.

    ``refs`` are the object's extern references (they say which externs are
    ``__weak``; an extern no program references counts as weak).  ``config``
    replaces the kernel's configuration (``{"CONFIG_X": "y"}``), like
    libbpf's ``kconfig`` open option.
    """
    layout, size = kconfig_layout(btf)
    weak: Dict[str, bool] = {}
    for r in refs:
        if r.section == KCONFIG_SEC:
            weak[r.name] = weak.get(r.name, True) and r.weak
    data = bytearray(size)
    missing: List[str] = []
    for name, kv in layout.items():
        slot = _slot(btf, name, kv.type_id, kv.offset, kv.size)
        if name in _VIRTUAL:
            raw = _encode_num(slot, _VIRTUAL[name](), btf.byteorder)
        elif name.startswith("CONFIG_"):
            if config is None:
                try:
                    config = read_kernel_config()
                except NotSupportedError:
                    if all(weak.get(n, True) for n in layout if n.startswith("CONFIG_")):
                        config = {}
                    else:
                        raise
            value = config.get(name)
            if value is None:
                if not weak.get(name, True):
                    missing.append(name)
                continue
            raw = _encode(slot, value, btf.byteorder)
        elif name.startswith("LINUX_") and weak.get(name, True):
            continue                                  # unknown virtual extern, weak: zero
        else:
            raise LinkError(f"extern (kcfg) {name!r}: unknown; __kconfig externs are CONFIG_* "
                            "options or LINUX_KERNEL_VERSION, LINUX_HAS_SYSCALL_WRAPPER, "
                            "LINUX_HAS_BPF_COOKIE")
        data[kv.offset:kv.offset + len(raw)] = raw
    if missing:
        raise LinkError("kernel config has no " + ", ".join(sorted(missing)) +
                        " (strong __kconfig externs; declare them __weak to default to 0)")
    return bytes(data)


def fill_kconfig(spec: CollectionSpec, *, config: Optional[Mapping[str, str]] = None) -> None:
    """Fill the ``.kconfig`` map of ``spec`` (a copy being loaded) for the running kernel."""
    ms = spec.maps.get(KCONFIG_SEC)
    if ms is None or ms.kind != MapKind.KCONFIG or spec.btf is None:
        return
    refs = [r for p in spec.programs.values() for r in p.extern_refs]
    ms.data = kconfig_data(spec.btf, refs, config=config)


# -- __ksym ---------------------------------------------------------------------------------

def kallsyms_lookup(names: Iterable[str], *, path: Optional[str] = None,
                    allow_zero: bool = False) -> Dict[str, int]:
    """``{name: address}`` from ``/proc/kallsyms`` for those of ``names`` it lists.

    A name listed at two different addresses is ambiguous and raises
    :class:`LinkError` (as libbpf).  Addresses shown as 0 mean the kernel hides
    them from this process (``kptr_restrict``, no CAP_SYSLOG): that raises
    :class:`NotSupportedError` unless ``allow_zero`` (presence checks only).
    """
    wanted = sorted(set(names))
    if not wanted:
        return {}
    p = path or KALLSYMS
    try:
        with open(p, "rb") as f:
            text = f.read()
    except OSError as e:
        raise NotSupportedError("kernel symbol addresses", f"cannot read {p}: {e.strerror}") from None
    pattern = re.compile(rb"^([0-9a-fA-F]+) \S (" + b"|".join(re.escape(n.encode()) for n in wanted) +
                         rb")(?:\t\[\S+\])?$", re.M)
    out: Dict[str, int] = {}
    for m in pattern.finditer(text):
        name, addr = m.group(2).decode(), int(m.group(1), 16)
        prev = out.get(name)
        if prev is not None and prev != addr:
            raise LinkError(f"extern (ksym) {name!r}: resolution is ambiguous: {prev:#x} or {addr:#x}")
        out[name] = addr
    if not allow_zero and any(a == 0 for a in out.values()):
        raise NotSupportedError("typeless __ksym externs", f"{p} shows zero addresses to this "
                                "process (kernel.kptr_restrict, or CAP_SYSLOG missing)")
    return out


@attrs.frozen
class Ksym:
    """How one ``__ksym`` extern resolved against the running kernel.

    ``btf_id`` is the kernel BTF id of its VAR or FUNC (0: not resolved by BTF);
    ``btf_fd`` the module BTF object fd (0 for vmlinux); ``fd_index`` its slot
    in ``fd_array`` (kfunc calls into modules); ``addr`` the address of a
    typeless ksym; ``found`` is False for an absent ``__weak`` one; ``module``
    names the module it lives in ("" for vmlinux).
    """
    name: str
    btf_id: int = 0
    btf_fd: int = 0
    fd_index: int = 0
    addr: int = 0
    found: bool = True
    module: str = ""


class KsymResolver:
    """Resolves the ``__ksym`` externs of the programs of one load (results cached by name).

    ``vmlinux_btf`` returns the running kernel's BTF (not a user-given CO-RE
    target: kernel symbols are always the running kernel's).  Module BTF is
    opened only when vmlinux lacks a symbol.  The resolver owns the module BTF
    fds it opens and the ``fd_array`` of module kfuncs: :meth:`close` them
    once the programs are loaded.
    """

    def __init__(self, vmlinux_btf: Callable[[], Spec]):
        self._vmlinux = vmlinux_btf
        self._done: Dict[Tuple[str, bool], Ksym] = {}
        self._modules: Optional[List[Tuple[str, Spec]]] = None
        self._module_fds: Dict[str, object] = {}
        self.fd_array: List[int] = []

    def close(self) -> None:
        """Close the module BTF fds (after the programs that use them are loaded)."""
        for fd in self._module_fds.values():
            fd.close()  # type: ignore[attr-defined]
        self._module_fds.clear()

    def __enter__(self) -> "KsymResolver":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def resolve_all(self, program: str, local: Optional[Spec], refs: Sequence[ExternRef]) -> Dict[str, Ksym]:
        """Resolve every ``.ksyms`` extern of ``refs``; raises :class:`LinkError` naming the
        program and extern for a strong one that cannot be resolved."""
        out: Dict[str, Ksym] = {}
        typeless = []
        for r in refs:
            if r.section != KSYMS_SEC or r.name in out:
                continue
            if local is None:
                raise LinkError(f"program {program}: extern {r.name!r} needs the object's BTF "
                                "(compile with -g)")
            is_func = bool(local.find(r.name, Kind.FUNC))
            if r.type_id or is_func:
                out[r.name] = self._typed(program, local, r, is_func)
            else:
                typeless.append(r)
        if typeless:
            need = [r.name for r in typeless if (r.name, False) not in self._done]
            addrs = kallsyms_lookup(need) if need else {}
            for r in typeless:
                k = self._done.get((r.name, False))
                if k is None:
                    if r.name in addrs:
                        k = Ksym(r.name, addr=addrs[r.name])
                    elif r.weak:
                        k = Ksym(r.name, found=False)
                    else:
                        raise LinkError(f"program {program}: extern {r.name!r} (typeless __ksym) "
                                        f"is not in {KALLSYMS}")
                    self._done[(r.name, False)] = k
                out[r.name] = k
        return out

    def _typed(self, program: str, local: Spec, ref: ExternRef, is_func: bool) -> Ksym:
        key = (ref.name, True)
        done = self._done.get(key)
        if done is not None:
            return done
        from .core import essential_name, types_compatible
        kind = Kind.FUNC if is_func else Kind.VAR
        what = "func ksym" if is_func else "var ksym"
        lookup = essential_name(ref.name) if is_func else ref.name
        found = self._find(lookup, kind)
        if found is None:
            if not ref.weak:
                # The kernel lacks it (an older kernel, or the module is not loaded).
                raise NotSupportedError(f"program {program}: {'kfunc' if is_func else 'kernel variable'} "
                                        f"{ref.name}", f"extern ({what}) {ref.name!r} is not in the "
                                        "kernel's BTF (vmlinux or loaded modules); declare it __weak "
                                        "and guard it with bpf_ksym_exists() to run without it")
            k = Ksym(ref.name, found=False)
        else:
            module, targ, tid = found
            t = targ.type(tid)
            local_tid = ref.type_id if ref.type_id else local.type(local.find(ref.name, Kind.FUNC)[0]).type  # type: ignore[union-attr]
            targ_tid = t.type if is_func else targ.skip_modifiers(t.type)  # type: ignore[union-attr]
            if not types_compatible(local, local_tid, targ, targ_tid):
                if ref.weak and is_func:
                    k = Ksym(ref.name, found=False)
                else:
                    raise LinkError(
                        f"program {program}: extern ({what}) {ref.name!r}: declared as "
                        f"{local.type_name(local_tid)} [{local_tid}], but the kernel's "
                        f"{module or 'vmlinux'} has {targ.type_name(targ_tid)} [{targ_tid}]")
            else:
                fd = fd_index = 0
                if module:
                    fd, fd_index = self._module_fd(module, need_index=is_func)
                k = Ksym(ref.name, btf_id=tid, btf_fd=fd, fd_index=fd_index, module=module)
        self._done[key] = k
        return k

    def _find(self, name: str, kind: Kind) -> Optional[Tuple[str, Spec, int]]:
        vmlinux = self._vmlinux()
        ids = vmlinux.find(name, kind)
        if ids:
            return "", vmlinux, ids[0]
        if self._modules is None:
            from .kbtf import load_module_btf, module_btf_names
            self._modules = [(m, load_module_btf(m, vmlinux)) for m in module_btf_names()]
        for module, spec in self._modules:
            own = [i for i in spec.find(name, kind) if i >= spec.start_id]
            if own:
                return module, spec, own[0]
        return None

    def _module_fd(self, module: str, need_index: bool) -> Tuple[int, int]:
        fd = self._module_fds.get(module)
        if fd is None:
            from .kbtf import module_btf_fd
            fd = self._module_fds[module] = module_btf_fd(module)
        num = fd.fileno()  # type: ignore[attr-defined]
        if not need_index:
            return num, 0
        if num not in self.fd_array:
            if not self.fd_array:
                self.fd_array.append(0)          # index 0 means vmlinux: never used for a module
            if len(self.fd_array) >= 0x7FFF:
                raise LinkError(f"too many kernel modules with kfuncs for insn->off ({module})")
            self.fd_array.append(num)
        return num, self.fd_array.index(num)


def patch_externs(insns: bytearray, refs: Sequence[ExternRef], byteorder: str, *,
                  kconfig_fd: int = 0, ksyms: Optional[Mapping[str, Ksym]] = None) -> None:
    """Write extern references into ``insns`` (libbpf's relocate_data for externs).

    ``.kconfig`` references become ``BPF_PSEUDO_MAP_VALUE`` loads of the
    ``.kconfig`` map (fd ``kconfig_fd``, 0 for a dry run); ``.ksyms``
    references are written only when ``ksyms`` (from
    :meth:`KsymResolver.resolve_all`) is given.
    """
    le = byteorder == "<"
    for ref in refs:
        p = ref.insn * 8
        op = insns[p]
        if ref.section == KCONFIG_SEC:
            _set_src(insns, p, _PSEUDO_MAP_VALUE, le)
            _put(insns, p + 4, kconfig_fd, byteorder)
            _put(insns, p + 12, ref.offset, byteorder)
            continue
        if ksyms is None or ref.section != KSYMS_SEC:
            continue
        k = ksyms[ref.name]
        if op == _CALL:
            _set_src(insns, p, _PSEUDO_KFUNC_CALL, le)
            _put(insns, p + 4, k.btf_id if k.found else 0, byteorder)
            insns[p + 2:p + 4] = (k.fd_index if k.found else 0).to_bytes(2, _bo(byteorder), signed=True)
        elif op == _LD_IMM64:
            if k.found and k.btf_id:
                _set_src(insns, p, _PSEUDO_BTF_ID, le)
                _put(insns, p + 4, k.btf_id, byteorder)
                _put(insns, p + 12, k.btf_fd, byteorder)
            else:
                _put(insns, p + 4, k.addr & 0xFFFFFFFF, byteorder)
                _put(insns, p + 12, k.addr >> 32, byteorder)


def _set_src(insns: bytearray, p: int, src: int, le: bool) -> None:
    regs = insns[p + 1]
    insns[p + 1] = (regs & 0x0F) | (src << 4) if le else (regs & 0xF0) | src


def _put(insns: bytearray, pos: int, value: int, byteorder: str) -> None:
    insns[pos:pos + 4] = (value & 0xFFFFFFFF).to_bytes(4, _bo(byteorder))
