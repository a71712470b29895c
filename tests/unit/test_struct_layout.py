"""bpf/structs.py is generated from kpod_shared.h and agrees with every built object.

Three checks: the committed module is what scripts/gen_structs.py writes now (stale
otherwise: run `make bpf`); each shipped object's BTF has the same sizes, member
names and offsets as the module (bpftool, independent of the generator's code path);
each object's health ARRAY is as large as its generated enum says.
"""

from __future__ import annotations

import ctypes
import glob
import json
import os
import shutil
import subprocess
import sys

import pytest

from kpodmetrics.bpf import structs
from tests.conftest import require

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OBJECTS = sorted(glob.glob(os.path.join(os.path.dirname(structs.__file__), "objects", "*.bpf.o"))
                 + glob.glob(os.path.join(os.path.dirname(structs.__file__), "objects", "arm64",
                                          "*.bpf.o")))
"""Every shipped object, of every architecture: the mirrors must fit them all."""
HEALTH = {"cpu_sched": ("cpu_health", structs.KPOD_HEALTH_CPU_N),
          "net": ("net_health", structs.KPOD_HEALTH_NET_N),
          "mem": ("mem_health", structs.KPOD_HEALTH_MEM_N),
          "syscall": ("sys_health", structs.KPOD_HEALTH_SYS_N),
          "bio": ("bio_health", structs.KPOD_HEALTH_BIO_N)}


def btf_types(obj: str) -> list[dict]:  # type: ignore[type-arg]
    out = subprocess.run(["bpftool", "-j", "btf", "dump", "file", obj],
                         check=True, capture_output=True, text=True).stdout
    types: list[dict] = json.loads(out)["types"]  # type: ignore[type-arg]
    return types


def test_objects_exist() -> None:
    names = {os.path.basename(o) for o in OBJECTS}
    assert {f"{o}.bpf.o" for o in HEALTH} <= names


def test_generated_module_is_not_stale() -> None:
    require(shutil.which("bpftool") is not None and shutil.which("clang") is not None,
            "clang and bpftool are needed to regenerate the mirror")
    run = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "gen_structs.py"),
                          "--check"], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr


def test_no_hand_written_mirror_left() -> None:
    """Every ctypes struct of the module is a generated mirror of a header struct."""
    with open(os.path.join(ROOT, "ebpf", "kpod_shared.h")) as fh:
        header = fh.read()
    for name, cls in structs.MIRRORS.items():
        assert f"struct {name} {{" in header
        assert cls.__doc__ == f"struct {name} ({ctypes.sizeof(cls)} bytes)."
    mirrored = {c for c in vars(structs).values()
                if isinstance(c, type) and issubclass(c, ctypes.Structure)}
    assert mirrored == set(structs.MIRRORS.values())


@pytest.mark.parametrize("obj", OBJECTS, ids=os.path.basename)
def test_every_shared_struct_is_mirrored_exactly(obj: str) -> None:
    require(shutil.which("bpftool") is not None, "bpftool is needed to read BTF")
    found = {t["name"]: t for t in btf_types(obj)
             if t["kind"] == "STRUCT" and t.get("name", "").startswith("kpod_")}
    assert found, f"{obj} has no kpod_* structs in its BTF (was BTF stripped?)"
    for name, t in found.items():
        mirror = structs.MIRRORS.get(name)
        assert mirror is not None, f"struct {name} of {obj} has no mirror in bpf/structs.py"
        assert ctypes.sizeof(mirror) == t["size"], f"{name}: size differs"
        fields = [f[0] for f in mirror._fields_]
        assert fields == [m["name"] for m in t["members"]], f"{name}: member names/order differ"
        for m in t["members"]:
            assert getattr(mirror, m["name"]).offset * 8 == m["bits_offset"], (
                f"{name}.{m['name']}: offset differs"
            )


@pytest.mark.parametrize("obj", sorted(HEALTH))
def test_health_array_is_sized_by_its_enum(obj: str) -> None:
    """max_entries of the health ARRAY is the enum's _N member: an index added to the
    enum but not to the map (or the reverse) fails here."""
    require(shutil.which("bpftool") is not None, "bpftool is needed to read BTF")
    types = btf_types(os.path.join(os.path.dirname(structs.__file__), "objects", f"{obj}.bpf.o"))
    by_id = {t["id"]: t for t in types}
    map_name, n = HEALTH[obj]
    (var,) = [t for t in types if t["kind"] == "VAR" and t["name"] == map_name]
    members = {m["name"]: m for m in by_id[var["type_id"]]["members"]}
    arr = by_id[by_id[members["max_entries"]["type_id"]]["type_id"]]  # int (*)[N]
    assert arr["kind"] == "ARRAY" and arr["nr_elems"] == n
