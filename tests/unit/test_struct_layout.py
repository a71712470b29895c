"""The Python mirrors in bpf/structs.py match the BTF of every built object."""

from __future__ import annotations

import ctypes
import glob
import json
import os
import shutil
import subprocess

import pytest

from kpodmetrics.bpf import structs
from tests.conftest import require

OBJECTS = sorted(glob.glob(os.path.join(os.path.dirname(structs.__file__), "objects", "*.bpf.o")))


def btf_structs(obj: str) -> dict[str, dict]:  # type: ignore[type-arg]
    out = subprocess.run(["bpftool", "-j", "btf", "dump", "file", obj],
                         check=True, capture_output=True, text=True).stdout
    return {t["name"]: t for t in json.loads(out)["types"]
            if t["kind"] == "STRUCT" and t.get("name", "").startswith("kpod_")}


def test_objects_exist() -> None:
    names = {os.path.basename(o) for o in OBJECTS}
    assert "cpu_sched.bpf.o" in names


@pytest.mark.parametrize("obj", OBJECTS, ids=os.path.basename)
def test_every_shared_struct_is_mirrored_exactly(obj: str) -> None:
    require(shutil.which("bpftool") is not None, "bpftool is needed to read BTF")
    found = btf_structs(obj)
    assert found, f"{obj} has no kpod_* structs in its BTF (was BTF stripped?)"
    for name, t in found.items():
        mirror = structs.MIRRORS.get(name)
        assert mirror is not None, f"struct {name} of {obj} has no Python mirror in bpf/structs.py"
        assert ctypes.sizeof(mirror) == t["size"], f"{name}: size differs"
        fields = [f[0] for f in mirror._fields_]
        assert fields == [m["name"] for m in t["members"]], f"{name}: member names/order differ"
        for m in t["members"]:
            assert getattr(mirror, m["name"]).offset * 8 == m["bits_offset"], (
                f"{name}.{m['name']}: offset differs"
            )
