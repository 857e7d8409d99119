"""BTF ids inside loaded programs: the targets of freplace (and fentry/fexit on BPF programs)."""

from __future__ import annotations

from typing import Any, Union

from .. import sys as _sys
from ..btf import Kind, Spec
from ..errors import BPFError

__all__ = ["target_func_btf_id"]


def target_func_btf_id(target: Union[int, Any], func: str) -> int:
    """The BTF id of global function ``func`` in the BTF of the loaded program ``target``
    (a Program or a program fd): the ``attach_btf_id`` of an extension that replaces it."""
    fd = target if isinstance(target, int) else target.fd
    name = getattr(target, "name", f"fd {fd}")
    btf_id = _sys.prog_info(fd, map_ids=False, context=f"program {name}").get("btf_id", 0)
    if not btf_id:
        raise BPFError(f"program {name} was loaded without BTF: nothing can replace its functions")
    ctx = f"BTF of program {name}"
    with _sys.btf_get_fd_by_id(btf_id, context=ctx) as bfd:
        # Only btf/btf_size: bpf_btf_info's name fields are 5.11+ (E2BIG before).
        size = _sys.obj_get_info_by_fd(bfd.fileno(), "bpf_btf_info", context=ctx).btf_size
        raw = bytearray(size)
        _sys.obj_get_info_by_fd(bfd.fileno(), "bpf_btf_info", fill={"btf": raw, "btf_size": size},
                                context=ctx)
    ids = Spec.parse(bytes(raw), file=f"<BTF of program {name}>").find(func, Kind.FUNC)
    if not ids:
        raise BPFError(f"program {name} has no function {func!r} in its BTF")
    return ids[0]
