"""Lint the Dockerfile's steps: multi-stage, the runtime stage installs what `make run`
installs (Makefile APT_RUN) and no compiler, pip installs the package with its prebuilt
BPF objects from locally built wheels. (tests/e2e/test_image.py builds and runs it.)
"""

from __future__ import annotations

import re
import shlex
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "Dockerfile"
MAKEFILE = REPO / "Makefile"

# APT_RUN packages that the Python base image already provides: python:3.11-slim ships
# CPython built with ensurepip/venv at /usr/local, which is what `make run`'s
# python3-venv gives a plain Debian host. Installing Debian's package would add a
# second, unused interpreter.
PROVIDED_BY_BASE = {"python3-venv"}
COMPILERS = {"clang", "llvm", "gcc", "g++", "cc", "build-essential", "libbpf-dev", "bpftool",
             "make", "libc6-dev", "linux-libc-dev"}


@dataclass
class Stage:
    base: str
    name: str
    steps: list[tuple[str, str]] = field(default_factory=list)  # (INSTRUCTION, args)

    def args(self, instr: str) -> list[str]:
        return [a for i, a in self.steps if i == instr]


def parse_dockerfile(text: str) -> tuple[dict[str, str], list[Stage]]:
    """Global ARG defaults and the stages, with continuation lines joined."""
    logical: list[str] = []
    buf = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not buf and (not line or line.startswith("#")):
            continue
        if buf and line.startswith("#"):
            continue
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        logical.append(buf + line)
        buf = ""
    assert not buf, "dangling line continuation"
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in logical:
        instr, _, rest = line.partition(" ")
        instr = instr.upper()
        rest = rest.strip()
        if instr == "FROM":
            m = re.fullmatch(r"(\S+)(?:\s+AS\s+(\S+))?", rest, re.IGNORECASE)
            assert m, f"bad FROM: {line}"
            base = re.sub(r"\$\{?(\w+)\}?", lambda v: args.get(v.group(1), v.group(0)),
                          m.group(1))
            stages.append(Stage(base=base, name=m.group(2) or str(len(stages))))
        elif not stages:
            assert instr == "ARG", f"only ARG may precede FROM: {line}"
            key, _, default = rest.partition("=")
            args[key] = default
        else:
            stages[-1].steps.append((instr, rest))
    return args, stages


def apt_installs(run: str) -> set[str]:
    lex = shlex.shlex(run, posix=True, punctuation_chars=True)
    lex.whitespace_split = True
    commands: list[list[str]] = [[]]
    for tok in lex:
        if tok in ("&&", "||", ";", "|"):
            commands.append([])
        else:
            commands[-1].append(tok)
    pkgs: set[str] = set()
    for words in commands:
        if len(words) >= 2 and words[0] in ("apt-get", "apt") and "install" in words:
            after = words[words.index("install") + 1:]
            pkgs |= {w for w in after if not w.startswith("-")}
    return pkgs


def make_var(name: str) -> list[str]:
    m = re.search(rf"^{name}\s*:?=\s*(.*)$", MAKEFILE.read_text(), re.MULTILINE)
    assert m, f"{name} not found in Makefile"
    assert "$(" not in m.group(1), f"{name} references other variables; extend this test"
    return m.group(1).split()


@pytest.fixture(scope="module")
def stages() -> list[Stage]:
    _, st = parse_dockerfile(DOCKERFILE.read_text())
    return st


def test_multi_stage_on_the_same_python_base(stages: list[Stage]) -> None:
    assert len(stages) >= 2
    bases = {s.base for s in stages}
    assert len(bases) == 1, f"stages use different bases {bases}: the venv would break"
    base = bases.pop()
    # the default base is made from Debian bookworm packages (python3 is 3.11 there)
    assert base == "localhost/kpod-metrics-base:bookworm", base
    script = (REPO / "scripts/image/base-image.sh").read_text()
    assert re.search(r"^suite=\$\{BASE_SUITE:-bookworm\}$", script, re.MULTILINE)
    requires = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["requires-python"]
    assert requires == ">=3.11"


def test_runtime_installs_what_make_run_installs(stages: list[Stage]) -> None:
    apt_run = set(make_var("APT_RUN"))
    final = stages[-1]
    installed = set().union(*(apt_installs(r) for r in final.args("RUN")))
    assert apt_run >= PROVIDED_BY_BASE, "PROVIDED_BY_BASE is stale: Makefile changed"
    assert installed == apt_run - PROVIDED_BY_BASE
    assert "libbpf1" in installed
    runs = " ".join(final.args("RUN"))
    assert "--no-install-recommends" in runs
    assert "rm -rf /var/lib/apt/lists" in runs


def test_debian_base_has_what_make_run_installs() -> None:
    script = (REPO / "scripts/image/base-image.sh").read_text()
    m = re.search(r"^packages=(\S+)$", script, re.MULTILINE)
    assert m
    packages = set(m.group(1).split(","))
    assert set(make_var("APT_RUN")) <= packages
    assert not packages & (COMPILERS | set(make_var("APT_BUILD")))


def test_no_compiler_in_the_final_image(stages: list[Stage]) -> None:
    final = stages[-1]
    forbidden = COMPILERS | set(make_var("APT_BUILD"))
    for run in final.args("RUN"):
        assert not (apt_installs(run) & forbidden), run
        words = set(re.findall(r"[\w+.-]+", run))
        assert not (words & {"clang", "gcc", "cc", "make"}), f"compiler used in final stage: {run}"
    # the build stage needs none either: the BPF objects are prebuilt and committed
    for st in stages:
        for run in st.args("RUN"):
            assert not (apt_installs(run) & forbidden), f"{st.name}: {run}"


def test_pip_installs_the_package_in_a_build_stage(stages: list[Stage]) -> None:
    build = stages[0]
    runs = build.args("RUN")
    assert any(re.search(r"python3? -m venv (/\S+)", r) for r in runs)
    # from the wheels build.sh made, with no index: the build needs no network
    assert any(re.search(r"pip install --no-index --find-links /wheels( --?\S+)* kpod-metrics", r)
               for r in runs), runs
    copies = " ".join(build.args("COPY"))
    assert "build/image/wheels /wheels" in copies
    final = stages[-1]
    assert not any("pip install" in r for r in final.args("RUN")), "pip belongs in the build"
    venv = re.search(r"python3? -m venv (/\S+)", " ".join(runs))
    assert venv
    assert any(c.startswith(f"--from={build.name} {venv.group(1)}") for c in final.args("COPY"))


def test_entrypoint_user_and_port(stages: list[Stage]) -> None:
    final = stages[-1]
    assert final.args("ENTRYPOINT") == ['["kpod-metrics"]']
    assert final.args("CMD") == ['["run"]']
    assert final.args("EXPOSE") == ["9090"]
    # root with capabilities dropped by the DaemonSet (see docs/deploy.md)
    assert final.args("USER") == ["0:0"]


def test_prebuilt_objects_ship_as_package_data() -> None:
    objects = list((REPO / "src" / "kpodmetrics" / "bpf" / "objects").glob("*.bpf.o"))
    assert objects, "no prebuilt BPF objects: run `make bpf`"
    data = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert "bpf/objects/*.bpf.o" in data["tool"]["setuptools"]["package-data"]["kpodmetrics"]


def test_dockerignore_keeps_the_context_small() -> None:
    lines = [ln.strip() for ln in (REPO / ".dockerignore").read_text().splitlines()
             if ln.strip() and not ln.startswith("#")]
    assert lines[0] == "*"
    assert set(lines) == {"*", "!build/image/wheels/"}
    assert not any(ln.startswith("!") and ln.lstrip("!").startswith(("ebpf", "tests", ".venv"))
                   for ln in lines)


def test_parser_sees_continuations() -> None:
    _, st = parse_dockerfile("ARG B=x:1\nFROM ${B} AS a\nRUN apt-get install -y \\\n"
                             "    # comment\n    foo bar\nFROM ${B}\n")
    assert [s.base for s in st] == ["x:1", "x:1"]
    assert apt_installs(st[0].args("RUN")[0]) == {"foo", "bar"}
