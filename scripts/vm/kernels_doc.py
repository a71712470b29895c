"""Write docs/kernels.md from the kernel matrix's results (scripts/vm/matrix.sh).

Reads, per kernel, what the VM run left in <results>/<suite>/: kernel.txt, probe.json
(`kpod-metrics probe --json`) or probe.txt (its plain output), junit.xml,
seconds.txt and vm-seconds.txt. Nothing in the page is written by hand: a family's
cell says which program variant fed it on that kernel (from probe) and whether the
oracle tests of that family passed there (from junit).

    python scripts/vm/kernels_doc.py --results DIR [--out docs/kernels.md] [SUITE ...]
    python scripts/vm/kernels_doc.py --results DIR --summary [SUITE ...]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SUITES = ("bullseye", "bookworm", "trixie", "host")
SUITE_LABEL = {"bullseye": "Debian 11", "bookworm": "Debian 12", "trixie": "Debian 13",
               "host": "dev host"}

# Family name pattern -> the tests whose oracles check that family, as "module" or
# "module::test-name-prefix". A family "passed" on a kernel when its tests ran there
# and none failed.
K = "tests/kernel/"
ORACLES: tuple[tuple[str, tuple[str, ...]], ...] = (
    (r"kpod_cpu_runqueue|kpod_cpu_context_switches", (K + "test_cpu_runqueue.py",)),
    (r"kpod_mem_oom_kills", (K + "test_mem_oom.py",
                             K + "test_v2_memory.py::test_memory_max_oom")),
    (r"kpod_mem_major_page_faults", (K + "test_mem_major_faults.py",)),
    (r"kpod_net_tcp_(sent|received)_bytes", (K + "test_net_tcp.py::test_bytes",
                                             K + "test_net_tcp.py::test_sendfile")),
    (r"kpod_net_tcp_connections", (K + "test_net_tcp.py::test_bytes_and_connections",)),
    (r"kpod_net_tcp_retransmits", (K + "test_net_tcp.py::test_retransmits",
                                   K + "test_net_tcp.py::test_synack")),
    (r"kpod_net_tcp_rtt", (K + "test_net_tcp.py::test_rtt",)),
    (r"kpod_syscall", (K + "test_syscall_counts.py", K + "test_syscall_lost_increments.py")),
    (r"kpod_disk_io_latency|kpod_block_", (K + "test_block_io.py",)),
    (r"kpod_disk_(read|written|reads|writes)", (K + "test_v2_io.py",)),
    (r"kpod_mem_(usage|peak|swap|anon|file|cgroup_major)", (K + "test_v2_memory.py::test_usage",)),
    (r"kpod_mem_events", (K + "test_v2_memory.py::test_memory_events",
                          K + "test_v2_memory.py::test_memory_max_oom")),
    (r"kpod_cpu_(usage|user|system)", (K + "test_cgfiles_real.py::test_cpustat",
                                       K + "test_v2_cpu.py")),
    (r"kpod_cpu_(periods|throttled)", (K + "test_v2_cpu.py",)),
    (r"kpod_pressure_", (K + "test_cgfiles_real.py::test_pressure", K + "test_v2_pressure.py")),
    (r"kpod_net_iface", (K + "test_cgfiles_real.py::test_iface",)),
    (r"kpod_fs_", (K + "test_cgfiles_real.py::test_fs",)),
)


@dataclass
class Case:
    module: str  # tests/kernel/test_x.py
    name: str
    outcome: str  # passed | failed | skipped
    message: str = ""


@dataclass
class FamilyRow:
    family: str
    collector: str
    available: bool | None  # None: probe did not say per family
    variant: str = ""
    program: str = ""
    reason: str = ""


@dataclass
class KernelRun:
    suite: str
    kernel: str
    cases: list[Case] = field(default_factory=list)
    families: dict[str, FamilyRow] = field(default_factory=dict)
    collectors: dict[str, tuple[str, str]] = field(default_factory=dict)  # name -> (state, detail)
    guest_seconds: int | None = None
    vm_seconds: int | None = None
    cpu_seconds: int | None = None
    exit_code: int | None = None
    commit: str = "?"
    selection: str = "?"


def read_int(p: Path) -> int | None:
    try:
        return int(p.read_text().strip())
    except (OSError, ValueError):
        return None


def parse_junit(path: Path) -> list[Case]:
    """Test cases of a pytest junit file; module from classname (tests.kernel.test_x.Cls)."""
    if not path.exists():
        return []
    cases = []
    for tc in ET.parse(path).getroot().iter("testcase"):
        parts = (tc.get("classname") or "").split(".")
        mod_parts = []
        for part in parts:
            mod_parts.append(part)
            if part.startswith("test_"):
                break
        module = "/".join(mod_parts) + ".py"
        outcome, message = "passed", ""
        for child in tc:
            if child.tag in ("failure", "error"):
                outcome, message = "failed", child.get("message") or ""
            elif child.tag == "skipped" and outcome != "failed":
                outcome, message = "skipped", child.get("message") or ""
        cases.append(Case(module, tc.get("name") or "", outcome, message.strip()))
    return cases


def family_dicts(node: Any, collector: str = "") -> list[tuple[str, str, dict[str, Any]]]:
    """(collector, family, entry) for every per-family entry in probe --json's output.

    Tolerant of the layout: an entry is a dict with an `available` key, named by its
    `family` (or `name`) key or by the key it sits under; the collector is the nearest
    enclosing dict's `collector`/`name` that is not itself a family entry."""
    out: list[tuple[str, str, dict[str, Any]]] = []
    if isinstance(node, dict):
        here = node.get("collector") or (node.get("name") if "available" not in node else None)
        coll = str(here) if isinstance(here, str) else collector
        for key, val in node.items():
            if isinstance(val, dict) and "available" in val:
                fam = val.get("family") or val.get("name") or key
                out.append((coll, str(fam), val))
            elif isinstance(val, list):
                for item in val:
                    if isinstance(item, dict) and "available" in item:
                        fam = item.get("family") or item.get("name")
                        if fam:
                            out.append((coll, str(fam), item))
                    else:
                        out.extend(family_dicts(item, coll))
            elif isinstance(val, dict):
                out.extend(family_dicts(val, coll))
    elif isinstance(node, list):
        for item in node:
            out.extend(family_dicts(item, collector))
    return out


PROBE_LINE = re.compile(r"^(\S+)\s+(up|down|degraded|unavailable)\s+(.*)$")


def parse_probe_text(text: str) -> dict[str, tuple[str, str]]:
    """collector -> (state, detail) from probe's plain output; failing programs'
    indented lines are appended to the detail."""
    out: dict[str, tuple[str, str]] = {}
    last = ""
    for line in text.splitlines():
        m = PROBE_LINE.match(line)
        if m:
            last = m.group(1)
            out[last] = (m.group(2), m.group(3).strip())
        elif re.match(r"^\s+kpod_\w+: ", line) and last:
            # a program that did not attach: its name and the first words of why
            state, detail = out[last]
            why = line.strip().split(" | ")[0]
            out[last] = (state, f"{detail}; {why[:140]}")
    return out


def load_run(results: Path, suite: str) -> KernelRun | None:
    d = results / suite
    if not d.is_dir():
        return None
    kernel = (d / "kernel.txt").read_text().strip() if (d / "kernel.txt").exists() else "?"
    run = KernelRun(suite, kernel, parse_junit(d / "junit.xml"))
    run.guest_seconds = read_int(d / "seconds.txt")
    run.vm_seconds = read_int(d / "vm-seconds.txt")
    run.cpu_seconds = read_int(d / "cpu-seconds.txt")
    if (d / "selection.txt").exists():
        sel = [x for x in (d / "selection.txt").read_text().split() if x]
        run.selection = "default" if sel == default_selection() else " ".join(sel)
    if (d / "commit.txt").exists():
        run.commit = (d / "commit.txt").read_text().strip() or "?"
    run.exit_code = read_int(d / "exit-code.txt")
    pj = d / "probe.json"
    if pj.exists() and pj.stat().st_size:
        try:
            data = json.loads(pj.read_text())
        except ValueError as exc:
            print(f"kernels_doc: {pj}: not JSON ({exc})", file=sys.stderr)
            data = None
        for coll, fam, entry in family_dicts(data):
            run.families[fam] = FamilyRow(
                fam, str(entry.get("collector") or coll), bool(entry.get("available")),
                str(entry.get("variant") or ""), str(entry.get("program") or ""),
                str(entry.get("reason") or ""))
        colls = data.get("collectors") if isinstance(data, dict) else None
        if isinstance(colls, dict):
            for name, c in colls.items():
                if isinstance(c, dict):
                    run.collectors[name] = (str(c.get("state", "?")), str(c.get("reason") or ""))
    pt = d / "probe.txt"
    if pt.exists() and not run.collectors:
        run.collectors = parse_probe_text(pt.read_text())
    return run


def default_selection() -> list[str]:
    """scripts/vm/selection.txt's pytest arguments (what guest-tests.sh runs by default)."""
    text = (Path(__file__).resolve().parent / "selection.txt").read_text()
    return [w for line in text.splitlines() for w in line.split("#")[0].split()]


def oracle_modules(family: str) -> tuple[str, ...]:
    for pattern, modules in ORACLES:
        if re.match(pattern, family):
            return modules
    return ()


def selects(selector: str, case: Case) -> bool:
    module, _, prefix = selector.partition("::")
    return case.module == module and case.name.startswith(prefix)


def oracle_verdict(run: KernelRun, family: str) -> str:
    mods = oracle_modules(family)
    if not mods:
        return "no oracle test"
    cases = [c for c in run.cases if any(selects(sel, c) for sel in mods)]
    if not cases:
        return "not run"
    if any(c.outcome == "failed" for c in cases):
        return "FAILED"
    if all(c.outcome == "skipped" for c in cases):
        return "skipped"
    return "passed"


def code_families() -> dict[str, str]:
    """family -> collector, from the collectors' own declarations (registry order)."""
    from kpodmetrics.collectors import registry
    from kpodmetrics.config import Settings

    out: dict[str, str] = {}
    settings = Settings()
    for entry in registry.ENTRIES:
        try:
            coll = registry.create(entry.name, settings)
        except Exception as exc:  # a collector that cannot even be built: say so, go on
            print(f"kernels_doc: collector {entry.name}: {exc}", file=sys.stderr)
            continue
        for fam in getattr(coll, "families", ()):
            out.setdefault(fam.name, entry.name)
    return out


def short(reason: str, limit: int = 200) -> str:
    """A reason for a table cell: its first line, without the verifier log libbpf appends."""
    first = reason.strip().splitlines()[0] if reason.strip() else ""
    first = first.split(" | ")[0]
    return first if len(first) <= limit else first[: limit - 3] + "..."


def cell(run: KernelRun, family: str, collector: str) -> str:
    verdict = oracle_verdict(run, family)
    row = run.families.get(family)
    if row is not None:
        if row.available:
            src = row.variant or "available"
            if row.program:
                src += f" (`{row.program}`)"
        else:
            src = f"**cannot see**: {short(row.reason) or 'no reason given'}"
    elif collector in run.collectors:
        state, detail = run.collectors[collector]
        src = state if state == "up" and ";" not in detail else f"{state}: {detail}"
    else:
        src = "not probed"
    return f"{src}; oracle {verdict}".replace("|", "\\|")


def render(runs: list[KernelRun], families: dict[str, str]) -> str:
    lines = [
        "# Kernel matrix",
        "",
        "Generated by `make kernels-doc` (scripts/vm/kernels_doc.py) from the results of",
        "`make test-kernels` (scripts/vm/matrix.sh): each Debian kernel booted under QEMU",
        "with virtme-ng, pure cgroup v2; `host` is the development machine's own kernel",
        "(hybrid cgroups). Do not edit by hand.",
        "",
        "## Runs",
        "",
        "Wall seconds depend on how busy the machine was; host CPU seconds (user + sys of",
        "QEMU and everything else the run started) are what the run costs: TCG is CPU-bound.",
        "`make test-kernels` boots up to `VM_PARALLEL` (2) VMs side by side, each on",
        "single-threaded TCG, so wall seconds of kernels run together overlap.",
        "",
        "`selection`: the pytest arguments of the run (`default` = scripts/vm/selection.txt:",
        "tests/matrix, tests/kernel and the kernel-dependent e2e tests).",
        "",
        "| kernel | suite | commit | selection | passed | failed | skipped | tests (s) | with boot (s) "
        "| host CPU (s) |",
        "| --- | --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in runs:
        n = {k: sum(1 for c in r.cases if c.outcome == k) for k in ("passed", "failed", "skipped")}
        counts = f"{n['passed']} | {n['failed']} | {n['skipped']}"
        if not r.cases:  # the guest died (or pytest did) before writing junit.xml
            counts = f"no results: the run ended with exit {r.exit_code} | ? | ?"
        lines.append(
            f"| {r.kernel} | {r.suite} ({SUITE_LABEL.get(r.suite, '')}) | {r.commit} | {r.selection} | "
            f"{counts} | {r.guest_seconds if r.guest_seconds is not None else '?'} | "
            f"{r.vm_seconds if r.vm_seconds is not None else '?'} | "
            f"{r.cpu_seconds if r.cpu_seconds is not None else '?'} |")
    coll_names: list[str] = []
    for r in runs:
        coll_names += [n for n in r.collectors if n not in coll_names]
    lines += ["", "## Collectors", "", "State from probe in each VM (`degraded`: some of its",
              "families have no source there; `down`: none has).", "",
              "| collector | " + " | ".join(r.kernel for r in runs) + " |",
              "| --- | " + " | ".join("---" for _ in runs) + " |"]
    for name in coll_names:
        cells = []
        for r in runs:
            state, why = r.collectors.get(name, ("not probed", ""))
            cells.append((f"{state}: {short(why)}" if why and state != "up" else state).replace("|", "\\|"))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "## Families",
        "",
        "Each cell: the program variant that feeds the family on that kernel (from",
        "`kpod-metrics probe` run in the VM), then whether the family's oracle tests passed",
        "there.",
        "",
        "| family | collector | " + " | ".join(r.kernel for r in runs) + " |",
        "| --- | --- | " + " | ".join("---" for _ in runs) + " |",
    ]
    names = dict(families)
    for r in runs:
        for fam, row in r.families.items():
            names.setdefault(fam, row.collector)
    for fam, coll in names.items():
        lines.append(f"| `{fam}` | {coll} | " + " | ".join(cell(r, fam, coll) for r in runs) + " |")
    lines += ["", "## Oracle tests per family", "", "| families | test modules |", "| --- | --- |"]
    for pattern, mods in ORACLES:
        lines.append(f"| `{pattern.replace('|', ' or ')}` | " + ", ".join(f"`{m}`" for m in mods) + " |")
    lines += ["", "## Failures and skips", ""]
    for r in runs:
        bad = [c for c in r.cases if c.outcome != "passed"]
        lines.append(f"### {r.kernel} ({r.suite})")
        lines.append("")
        if not bad:
            lines.append("none")
        for c in bad:
            msg = c.message.splitlines()[0][:200] if c.message else ""
            lines.append(f"- {c.outcome}: `{c.module}::{c.name}` — {msg}")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def summary(runs: list[KernelRun]) -> str:
    out = []
    for r in runs:
        n = {k: sum(1 for c in r.cases if c.outcome == k) for k in ("passed", "failed", "skipped")}
        out.append(f"{r.suite:9s} {r.kernel:24s} {n['passed']} passed, {n['failed']} failed, "
                   f"{n['skipped']} skipped; tests {r.guest_seconds} s, with boot {r.vm_seconds} s, "
                   f"host CPU {r.cpu_seconds} s")
        for c in r.cases:
            if c.outcome != "passed":
                msg = c.message.splitlines()[0][:160] if c.message else ""
                out.append(f"    {c.outcome}: {c.module}::{c.name}: {msg}")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--results", type=Path, required=True)
    ap.add_argument("--out", type=Path, default=Path("docs/kernels.md"))
    ap.add_argument("--summary", action="store_true", help="print a summary instead of the page")
    ap.add_argument("suites", nargs="*")
    args = ap.parse_args(argv)
    runs = [r for s in (args.suites or SUITES) if (r := load_run(args.results, s)) is not None]
    if not runs:
        print(f"kernels_doc: no results under {args.results}", file=sys.stderr)
        return 1
    if args.summary:
        print(summary(runs))
        return 0
    args.out.write_text(render(runs, code_families()))
    print(f"kernels_doc: wrote {args.out} from {', '.join(r.suite for r in runs)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
