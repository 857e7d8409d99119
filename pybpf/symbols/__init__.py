"""Stacks and symbols: stack trace maps, kernel and user symbolisation, folded stacks.

* :mod:`~pybpf.symbols.stacks` -- read ``BPF_MAP_TYPE_STACK_TRACE`` maps (plain and build-id)
* :mod:`~pybpf.symbols.symbolizer` -- :class:`Symbolizer`: kernel (``/proc/kallsyms``), user
  (``/proc/PID/maps`` + ELF symbols, PIE bias, debug files) and build-id frames
* :mod:`~pybpf.symbols.elf`, :mod:`~pybpf.symbols.kallsyms`, :mod:`~pybpf.symbols.procmaps`
  -- the sources
* :mod:`~pybpf.symbols.folded` -- flame graph input

Pure user space: nothing here calls bpf(2) except reading the stack map.
"""

from .elf import ElfSymbols, read_build_id
from .folded import FoldedStacks, fold
from .kallsyms import KernelSymbols
from .procmaps import Mapping, ProcessMaps, read_maps
from .stacks import StackTraces, read_build_id_stack, read_stack
from .symbolizer import Frame, Symbolizer

__all__ = ["ElfSymbols", "read_build_id", "FoldedStacks", "fold", "KernelSymbols", "Mapping",
           "ProcessMaps", "read_maps", "StackTraces", "read_build_id_stack", "read_stack",
           "Frame", "Symbolizer"]
