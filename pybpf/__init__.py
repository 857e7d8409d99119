"""pybpf: a pure-Python eBPF loader.

Parse clang-built BPF ELF objects and their BTF, apply CO-RE relocations and
load programs and maps through bpf(2) directly (no libbpf, bcc or bpftool at
run time)::

    import pybpf

    spec = pybpf.load_collection_spec("prog.bpf.o")   # pure parse, any machine
    spec.variables["target_pid"].value = 1234          # const volatile knobs
    with pybpf.load(spec) as coll:                     # kernel objects
        coll.attach_all()
        print(coll.maps["counts"][0])
"""

from .errors import (BPFError, CORERelocationError, IncompatibleError, KeyExistsError,
                     KeyNotFoundError, LinkError, NotSupportedError, ParseError,
                     PermissionDeniedError, SyscallError, VerifierError)
from .spec import CollectionSpec, MapSpec, ProgramSpec, VariableSpec, Pinning
from .elf import load_collection_spec
from .btf import Spec as BTFSpec

__version__ = "0.1.0"

__all__ = [
    "load_collection_spec", "load", "CollectionSpec", "MapSpec", "ProgramSpec", "VariableSpec",
    "Pinning", "BTFSpec", "Collection", "Map", "Program", "Variable", "Link", "enable_run_stats",
    "BPFError", "ParseError", "LinkError", "CORERelocationError", "NotSupportedError",
    "IncompatibleError", "KeyNotFoundError", "KeyExistsError", "SyscallError",
    "PermissionDeniedError", "VerifierError", "__version__",
]

_LIVE = {"load": "collection", "Collection": "collection", "Variable": "collection",
         "Map": "maps.map", "Program": "progs.program", "Link": "link.base",
         "enable_run_stats": "progs.stats"}


def __getattr__(name: str):
    # Live objects import the syscall layer (cffi); keep `import pybpf` and pure parsing
    # free of it until they are used.
    mod = _LIVE.get(name)
    if mod is None:
        raise AttributeError(f"module 'pybpf' has no attribute {name!r}")
    import importlib
    value = getattr(importlib.import_module(f"pybpf.{mod}"), name)
    globals()[name] = value
    return value
