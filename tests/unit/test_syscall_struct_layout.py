"""The Python mirrors of the mem/syscall structs match the BTF of the built objects.

Read with bpftool (size and each member's bit offset) so that a change to
ebpf/kpod_shared.h without the matching change in structs.py fails here.
"""

from __future__ import annotations

import ctypes
import re
import shutil
import subprocess

import pytest

from kpodmetrics.bpf import structs
from kpodmetrics.bpf.loader import object_path
from tests.conftest import require

_STRUCT = re.compile(r"^\[\d+\] STRUCT '(\w+)' size=(\d+) vlen=(\d+)$")
_MEMBER = re.compile(r"^\s+'(\w+)' type_id=\d+ bits_offset=(\d+)$")


def btf_structs(obj: str) -> dict[str, tuple[int, dict[str, int]]]:
    out: dict[str, tuple[int, dict[str, int]]] = {}
    text = subprocess.run(["bpftool", "btf", "dump", "file", object_path(obj)],
                          check=True, capture_output=True, text=True).stdout
    current: dict[str, int] | None = None
    for line in text.splitlines():
        if m := _STRUCT.match(line):
            current = {}
            out[m.group(1)] = (int(m.group(2)), current)
        elif current is not None and (m := _MEMBER.match(line)):
            current[m.group(1)] = int(m.group(2)) // 8
        else:
            current = None
    return out


@pytest.mark.parametrize(("obj", "name"), [
    ("mem", "kpod_mem_stats"), ("syscall", "kpod_sys_key"), ("syscall", "kpod_sys_stats"),
])
def test_mirror_matches_btf(obj: str, name: str) -> None:
    require(shutil.which("bpftool") is not None, "bpftool not installed")
    size, members = btf_structs(obj)[name]
    mirror = structs.MIRRORS[name]
    assert ctypes.sizeof(mirror) == size
    assert {f[0]: getattr(mirror, f[0]).offset for f in mirror._fields_} == members
