"""Test oracle: the instructions libbpf (libbpf.so.1, Debian libbpf1) sends to the kernel.

Used only by tests, like bpftool: pybpf never links or calls libbpf.  The
object is opened and loaded by libbpf through ctypes, then each program's
final instructions are read back with bpf_program__insns(); map fd
immediates are zeroed so they compare with ``pybpf inspect --insns``.
"""

from __future__ import annotations

import ctypes
import struct
from typing import Dict, Optional

_PRINT = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p)


def _lib() -> Optional[ctypes.CDLL]:
    try:
        lib = ctypes.CDLL("libbpf.so.1")
    except OSError:
        return None
    vp = ctypes.c_void_p
    lib.bpf_object__open_file.restype = vp
    lib.bpf_object__open_file.argtypes = [ctypes.c_char_p, vp]
    lib.bpf_object__next_program.restype = vp
    lib.bpf_object__next_program.argtypes = [vp, vp]
    lib.bpf_program__name.restype = ctypes.c_char_p
    lib.bpf_program__name.argtypes = [vp]
    lib.bpf_program__insns.restype = vp
    lib.bpf_program__insns.argtypes = [vp]
    lib.bpf_program__insn_cnt.restype = ctypes.c_size_t
    lib.bpf_program__insn_cnt.argtypes = [vp]
    lib.bpf_program__autoload.restype = ctypes.c_bool
    lib.bpf_program__autoload.argtypes = [vp]
    lib.bpf_object__load.argtypes = [vp]
    lib.bpf_object__close.argtypes = [vp]
    lib.libbpf_set_print.argtypes = [vp]
    return lib


LIBBPF = _lib()
_quiet = _PRINT(lambda level, fmt, args: 0)


def libbpf_insns(path: str, btf_custom_path: Optional[str] = None,
                 pin_root: Optional[str] = None) -> Dict[str, bytes]:
    """{program name: instruction bytes with map fds zeroed} as libbpf loads them.

    ``pin_root`` is where libbpf pins LIBBPF_PIN_BY_NAME maps (it would use
    /sys/fs/bpf otherwise): give a test directory the caller removes.
    """
    lib = LIBBPF
    assert lib is not None
    lib.libbpf_set_print(ctypes.cast(_quiet, ctypes.c_void_p))
    opts = (ctypes.c_char * 128)()
    struct.pack_into("Q", opts, 0, 128)           # bpf_object_open_opts.sz
    keep = None
    keep_pin = None
    if pin_root:
        keep_pin = ctypes.create_string_buffer(pin_root.encode())
        struct.pack_into("Q", opts, 24, ctypes.addressof(keep_pin))  # .pin_root_path
    if btf_custom_path:
        keep = ctypes.create_string_buffer(btf_custom_path.encode())
        struct.pack_into("Q", opts, 48, ctypes.addressof(keep))  # .btf_custom_path
    obj = lib.bpf_object__open_file(path.encode(), ctypes.addressof(opts))
    if not obj:
        raise RuntimeError(f"libbpf could not open {path}")
    try:
        rc = lib.bpf_object__load(obj)
        if rc:
            raise RuntimeError(f"libbpf could not load {path}: {rc}")
        out: Dict[str, bytes] = {}
        p = None
        while True:
            p = lib.bpf_object__next_program(obj, p)
            if not p:
                break
            if not lib.bpf_program__autoload(p):
                continue
            n = lib.bpf_program__insn_cnt(p)
            raw = bytearray(ctypes.string_at(lib.bpf_program__insns(p), n * 8))
            i = 0
            while i < n:
                if raw[i * 8] == 0x18 and (raw[i * 8 + 1] >> 4) in (1, 2, 5, 6):  # map fd / value / idx
                    raw[i * 8 + 4:i * 8 + 8] = b"\0\0\0\0"
                    i += 2
                    continue
                i += 2 if raw[i * 8] == 0x18 else 1
            out[lib.bpf_program__name(p).decode()] = bytes(raw)
        return out
    finally:
        lib.bpf_object__close(obj)
