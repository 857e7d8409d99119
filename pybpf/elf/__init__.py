"""ELF object reading (the only pyelftools user).  Pure."""
from .reader import load_collection_spec

__all__ = ["load_collection_spec"]
