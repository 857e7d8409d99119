"""The built wheel installs into a fresh venv and loads a shipped object with no compiler present."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.kernel


def test_wheel_without_compiler(tmp_path):
    wheel_dir = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheel_dir), str(ROOT)],
                   check=True, cwd=tmp_path)
    wheels = list(wheel_dir.glob("pybpf-*.whl"))
    assert len(wheels) == 1
    import zipfile
    names = zipfile.ZipFile(wheels[0]).namelist()
    assert "pybpf_agent/bpf/syscalls.bpf.o" in names
    assert not any(n.endswith(".c") for n in names)

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = venv / "bin" / "python"
    subprocess.run([str(py), "-m", "pip", "install", "-q", str(wheels[0])], check=True)
    # A PATH with no compiler at all: only the venv's bin and a directory with `mount`.
    env = {"PATH": f"{venv / 'bin'}:/nonexistent", "HOME": str(tmp_path)}
    code = textwrap.dedent("""
        import shutil, pybpf, pybpf_agent
        from importlib import resources
        assert shutil.which("clang") is None and shutil.which("clang-19") is None and shutil.which("cc") is None
        obj = resources.files("pybpf_agent") / "bpf" / "syscalls.bpf.o"
        with pybpf.load(str(obj)) as coll:
            coll.attach_all()
            import os; os.getppid()
            print("loaded", sorted(coll.programs), sum(sum(v) for _, v in coll.maps["syscall_counts"].items()) > 0)
    """)
    out = subprocess.run([str(py), "-c", code], env=env, capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "loaded ['count_sys_enter'] True"
