"""BTF (BPF Type Format): type model, parser, .BTF.ext records, writer, C dumper.

Pure: nothing here calls the kernel.
"""

from .types import *  # noqa: F401,F403
from .types import __all__ as _types_all
from .parse import Spec, BTF_MAGIC

__all__ = list(_types_all) + ["Spec", "BTF_MAGIC"]
