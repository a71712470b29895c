"""Processes the benchmark starts: the agent and the libbpf-tools peers.

Everything started goes into one `Registry`, and `Registry.stop_all()` runs in a
`finally` of the runner: no agent or peer (and so no BPF program) outlives the run,
even on Ctrl-C or an exception. Each process gets its own session so a stop reaches
its children too, and only the process groups we created are signalled.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks import bpfinfo
from benchmarks.promtext import Scrape

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """utime + stime of the process (all threads), from /proc/<pid>/stat."""
    with open(f"/proc/{pid}/stat") as fh:
        rest = fh.read().rsplit(")", 1)[1].split()
    return (int(rest[11]) + int(rest[12])) / CLK_TCK  # fields 14 and 15


def memory_kib(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak RSS) in KiB."""
    out: dict[str, int] = {}
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith(("VmRSS:", "VmHWM:")):
                out[line.split(":")[0]] = int(line.split()[1])
    return out


@dataclass
class Managed:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path
    started: float
    bpf: bpfinfo.ProcBpf = field(default_factory=lambda: bpfinfo.ProcBpf(frozenset(), frozenset()))

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_tail(self, n: int = 5) -> str:
        try:
            lines = self.log.read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return " | ".join(lines[-n:])


class Registry:
    """Owns every process the benchmark started; remembers every BPF id they held."""

    def __init__(self, logdir: Path) -> None:
        self.logdir = logdir
        self.live: list[Managed] = []
        self.seen_prog_ids: set[int] = set()
        self.seen_map_ids: set[int] = set()
        self.agent_failures: list[dict[str, object]] = []

    def spawn(self, name: str, argv: list[str]) -> Managed:
        self.logdir.mkdir(parents=True, exist_ok=True)
        log = self.logdir / f"{name}.log"
        fh = open(log, "ab")  # noqa: SIM115 - handed to the child
        # a Python traceback of every thread lands in the log if the child crashes; our
        # own KPOD_BENCH_* settings must not reach the agent (it rejects unknown KPOD_*)
        env = {k: v for k, v in os.environ.items() if not k.startswith("KPOD_BENCH_")}
        env["PYTHONFAULTHANDLER"] = "1"
        try:
            proc = subprocess.Popen(argv, stdout=fh, stderr=subprocess.STDOUT, env=env,
                                    stdin=subprocess.DEVNULL, start_new_session=True)
        finally:
            fh.close()
        m = Managed(name, proc, log, time.monotonic())
        self.live.append(m)
        return m

    def note_bpf(self, m: Managed) -> bpfinfo.ProcBpf:
        m.bpf = bpfinfo.held_by(m.pid)
        self.seen_prog_ids |= m.bpf.prog_ids
        self.seen_map_ids |= m.bpf.map_ids
        return m.bpf

    def stop(self, m: Managed, grace: float = 10.0) -> None:
        """SIGINT (peers print and exit; the agent shuts down cleanly), then SIGKILL."""
        if m.alive():
            self.note_bpf(m)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(m.pid, signal.SIGINT)
            try:
                m.proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(m.pid, signal.SIGKILL)
                m.proc.wait(timeout=10)
        if m in self.live:
            self.live.remove(m)

    def stop_all(self) -> None:
        for m in list(self.live):
            try:
                self.stop(m)
            except Exception as exc:  # keep stopping the others
                print(f"warning: could not stop {m.name} (pid {m.pid}): {exc}", file=sys.stderr)

    def leaked_programs(self, settle: float = 10.0) -> list[int]:
        """Ids of programs our processes held that are still loaded after they stopped.

        The kernel frees a program asynchronously (after an RCU grace period) once the
        last fd and link are gone, so a just-stopped agent's programs may be listed for
        a moment: only ids still there after `settle` seconds count as leaked.
        """
        deadline = time.monotonic() + settle
        while True:
            left = sorted(self.seen_prog_ids & set(bpfinfo.programs()))
            if not left or time.monotonic() > deadline:
                return left
            time.sleep(0.25)


class AgentDown(RuntimeError):
    """The agent exited or never became ready."""


class Agent:
    """kpod-metrics as a subprocess, standalone mode, on a free port."""

    def __init__(self, reg: Registry, profile: str, poll: float, tag: str = "",
                 launcher: tuple[str, ...] = ("-m", "kpodmetrics")) -> None:
        self.reg = reg
        self.profile = profile
        self.port = free_port()
        argv = [sys.executable, *launcher, "run", "--mode", "standalone",
                "--profile", profile, "--port", str(self.port), "--address", "127.0.0.1",
                "--poll-interval", f"{poll}s", "--log-level", "warning"]
        self.m = reg.spawn(f"agent-{profile}{tag}", argv)
        self.startup_s: float | None = None

    @property
    def pid(self) -> int:
        return self.m.pid

    def _get(self, path: str, timeout: float = 5.0) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}",
                                        timeout=timeout) as r:
                return int(r.status), r.read()
        except urllib.error.HTTPError as exc:
            return int(exc.code), b""

    def wait_ready(self, timeout: float = 60.0) -> float:
        """Seconds from process start to the first /readyz 200 (first metrics served)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.m.alive():
                raise AgentDown(f"agent exited ({self.m.proc.returncode}): {self.m.log_tail()}")
            try:
                code, _ = self._get("/readyz", timeout=1.0)
                if code == 200:
                    self.startup_s = time.monotonic() - self.m.started
                    self.reg.note_bpf(self.m)
                    return self.startup_s
            except OSError:
                pass
            time.sleep(0.02)
        raise AgentDown(f"agent not ready after {timeout:.0f}s: {self.m.log_tail()}")

    def scrape(self) -> Scrape:
        code, body = self._get("/metrics", timeout=30.0)
        if code != 200:
            raise AgentDown(f"/metrics answered {code}")
        return Scrape(body.decode("utf-8", "replace"))

    def cycles(self, s: Scrape) -> tuple[float, float]:
        """(count, sum seconds) of kpod_collection_cycle_duration_seconds."""
        return (s.value("kpod_collection_cycle_duration_seconds_count") or 0.0,
                s.value("kpod_collection_cycle_duration_seconds_sum") or 0.0)

    def collectors(self, s: Scrape) -> dict[str, dict[str, object]]:
        """Every collector of the profile: up or down, and why it is down."""
        up = s.by_label("kpod_collector_up", "collector")
        out: dict[str, dict[str, object]] = {c: {"up": bool(v)} for c, v in up.items()}
        for labels, _ in s.samples.get("kpod_collector_status_info", []):
            d = dict(labels)
            entry = out.setdefault(d.get("collector", "?"), {"up": False})
            reasons = entry.setdefault("down", [])
            assert isinstance(reasons, list)
            reasons.append({"program": d.get("program", ""), "reason": d.get("reason", "")})
        return out

    def stop(self) -> None:
        self.reg.stop(self.m, grace=15.0)


def start_agent(reg: Registry, profile: str, poll: float, tag: str = "",
                attempts: int = 3) -> Agent:
    """An agent that reached /readyz; a start that crashes is recorded and retried, so
    one bad start does not drop a whole configuration from the comparison."""
    last = ""
    for i in range(attempts):
        agent = Agent(reg, profile, poll, tag=f"{tag}-try{i}" if i else tag)
        try:
            agent.wait_ready()
            return agent
        except AgentDown as exc:
            last = str(exc)
            reg.agent_failures.append({"profile": profile, "tag": tag,
                                       "returncode": agent.m.proc.poll(), "error": last[:2000],
                                       "log": str(agent.m.log)})
            agent.stop()
    raise AgentDown(f"{attempts} starts failed; last: {last}")


def wait_bpf_settled(reg: Registry, m: Managed, timeout: float = 8.0) -> bpfinfo.ProcBpf:
    """Wait until a peer holds BPF programs and their number stopped changing."""
    deadline = time.monotonic() + timeout
    last: frozenset[int] = frozenset()
    stable_since = time.monotonic()
    while time.monotonic() < deadline and m.alive():
        held = reg.note_bpf(m)
        if held.prog_ids != last:
            last, stable_since = held.prog_ids, time.monotonic()
        elif last and time.monotonic() - stable_since > 0.4:
            break
        time.sleep(0.05)
    return m.bpf
