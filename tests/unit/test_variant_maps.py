"""Each variant's `maps` list against what its programs really reference.

The oracle is the object file itself: every map a program uses is a R_BPF_64_64
relocation in that program's section, at an offset inside the program's symbol
(several programs can share a section). `llvm-readelf` reads them, independently of
libbpf and of the loader. The rule checked, per object and both architectures:

- a map referenced by a program outside every signal, or by every variant of some
  signal, is always needed: no variant may list it;
- any other map is listed by exactly the variants whose programs reference it (listed
  by too few, a chosen variant would fail to load; by too many, an unchosen variant
  would cost kernel memory again).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections import defaultdict
from pathlib import Path

import pytest

from kpodmetrics.bpf.loader import object_path
from kpodmetrics.bpf.variants import Signal, maps_to_skip
from kpodmetrics.collectors.ebpf.base import BpfCollectorBase
from kpodmetrics.collectors.ebpf.block_io import BlockIOCollector
from kpodmetrics.collectors.ebpf.mem_events import MemCollector
from kpodmetrics.collectors.ebpf.runqueue import CpuSchedCollector
from kpodmetrics.collectors.ebpf.syscalls import SyscallCollector
from kpodmetrics.collectors.ebpf.tcp import NetTcpCollector

COLLECTORS: tuple[type[BpfCollectorBase], ...] = (
    BlockIOCollector, MemCollector, CpuSchedCollector, SyscallCollector, NetTcpCollector)

_SECTION = re.compile(r"^\s*\[\s*(\d+)\]\s+(\S+)", re.M)
_SYMBOL = re.compile(r"^\s*\d+:\s+([0-9a-f]+)\s+(\d+)\s+(FUNC|OBJECT)\s+GLOBAL\s+\S+\s+(\d+)\s+(\S+)$",
                     re.M)
_RELOC_SECTION = re.compile(r"^Relocation section '\.rel(\S+)'")
_RELOC = re.compile(r"^([0-9a-f]{16})\s+[0-9a-f]{16}\s+R_BPF_64_64\s+[0-9a-f]+\s+(\S+)$")


def readelf(*args: str) -> str:
    tool = shutil.which("llvm-readelf")
    if tool is None:
        pytest.fail("llvm-readelf is missing (Debian package llvm, installed by make deps-test)")
    return subprocess.run([tool, *args], capture_output=True, text=True, check=True).stdout


def map_users(path: str) -> dict[str, set[str]]:
    """map name -> programs whose code references it, read from the object's ELF."""
    sections = {int(i): name for i, name in _SECTION.findall(readelf("-S", "--wide", path))}
    text = readelf("-s", "-r", "--wide", path)
    funcs: dict[str, list[tuple[int, int, str]]] = defaultdict(list)
    maps: set[str] = set()
    for value, size, kind, ndx, name in _SYMBOL.findall(text):
        sec = sections.get(int(ndx), "")
        if kind == "FUNC":
            start = int(value, 16)
            funcs[sec].append((start, start + int(size), name))
        elif sec == ".maps":
            maps.add(name)
    users: dict[str, set[str]] = {m: set() for m in maps}
    section = ""
    for line in text.splitlines():
        if m := _RELOC_SECTION.match(line):
            section = m.group(1)
        elif (r := _RELOC.match(line.strip())) and r.group(2) in maps:
            off = int(r.group(1), 16)
            users[r.group(2)] |= {p for a, b, p in funcs.get(section, []) if a <= off < b}
    assert any(users.values()), f"{path}: no map reference found (readelf output changed?)"
    return users


def expected_lists(signals: tuple[Signal, ...],
                   users: dict[str, set[str]]) -> dict[tuple[str, str], set[str]]:
    """(signal, variant) -> the maps it should list, by the rule of this module."""
    in_signal = {p for s in signals for p in s.programs}
    out: dict[tuple[str, str], set[str]] = {(s.name, v.name): set() for s in signals for v in s.variants}
    for mp, progs in users.items():
        if progs - in_signal:
            continue
        if any(all(set(v.programs) & progs for v in s.variants) for s in signals):
            continue
        for s in signals:
            for v in s.variants:
                if set(v.programs) & progs:
                    out[(s.name, v.name)].add(mp)
    return out


@pytest.mark.parametrize("machine", ["x86_64", "aarch64"])
@pytest.mark.parametrize("collector", COLLECTORS, ids=lambda c: c.object_name)
def test_variant_map_lists_match_the_object(collector: type[BpfCollectorBase], machine: str) -> None:
    path = object_path(collector.object_name, machine)
    if not Path(path).is_file():
        pytest.fail(f"{path} is missing: run make bpf")
    users = map_users(path)
    signals = tuple(collector.signals)
    declared = {(s.name, v.name): set(v.maps) for s in signals for v in s.variants}
    assert declared == expected_lists(signals, users)


def test_the_lists_save_what_they_should() -> None:
    """The two maps that made unchosen variants expensive (1.4 MB and 0.7 MB) are listed,
    and choosing one variant drops the other's map."""
    sys_sig = SyscallCollector.signals[0]
    task = sys_sig.variant("task_storage").programs
    assert maps_to_skip(SyscallCollector.signals, set(task)) == {"sys_start"}
    tcp_state = next(s for s in NetTcpCollector.signals if s.name == "tcp_state")
    assert maps_to_skip((tcp_state,), set(tcp_state.variant("tp_btf").programs)) == {"tcp_opened_hash"}
    assert maps_to_skip((tcp_state,), set(tcp_state.variant("raw_tp").programs)) == {"tcp_opened"}
    # a lone-program load during diagnosis keeps the maps of that program's variant
    assert maps_to_skip((tcp_state,), {"kpod_tcp_state_hash"}) == {"tcp_opened"}
