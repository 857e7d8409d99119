"""Live programs."""
from .program import Program, ProgramInfo, TestRunResult

__all__ = ["Program", "ProgramInfo", "TestRunResult"]
