"""Compile the tests' own BPF objects (tests/bpf/*.bpf.c, mutants of ebpf/*.bpf.c) the
way `make bpf` compiles the agent's, against this tree's x86 vmlinux.h."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from tests.conftest import require
from tests.kernel.cgroup_util import BUILD

ROOT = Path(__file__).resolve().parents[2]
VMLINUX_H = ROOT / "vmlinux/x86/vmlinux.h"


def compile_bpf(src: Path, out: Path, *include_dirs: Path) -> None:
    require(shutil.which("clang") is not None, "clang builds the test's BPF object")
    includes = [arg for d in (VMLINUX_H.parent, *include_dirs) for arg in ("-I", str(d))]
    subprocess.run(["clang", "-g", "-O2", "-target", "bpf", "-D__TARGET_ARCH_x86", *includes,
                    "-c", str(src), "-o", str(out)], check=True)


def built_object(name: str) -> str:
    """tests/bpf/<name>.bpf.c compiled (cached until the source or vmlinux.h changes);
    the path of the object."""
    src, out = ROOT / "tests/bpf" / f"{name}.bpf.c", BUILD / f"{name}.bpf.o"
    BUILD.mkdir(parents=True, exist_ok=True)
    newest = max(src.stat().st_mtime, VMLINUX_H.stat().st_mtime)
    if not out.exists() or out.stat().st_mtime < newest:
        compile_bpf(src, out)
    return str(out)
