"""The agent's collectors: one module per BPF object in programs/."""

from __future__ import annotations

from typing import Dict, Type

from .base import Collector
from .block import BlockCollector
from .drops import DropsCollector
from .memory import MemoryCollector
from .network import NetworkCollector
from .process import ProcessCollector
from .sched import SchedCollector
from .syscalls import SyscallsCollector
from .tcp import TCPCollector
from .user import UserCollector

#: config name -> class, in start order
COLLECTORS: Dict[str, Type[Collector]] = {
    "syscalls": SyscallsCollector,
    "process": ProcessCollector,
    "sched": SchedCollector,
    "block": BlockCollector,
    "tcp": TCPCollector,
    "network": NetworkCollector,
    "drops": DropsCollector,
    "memory": MemoryCollector,
    "user": UserCollector,
}

__all__ = ["COLLECTORS", "Collector"]
