"""Interrupted syscalls counted as the program saw them (issue 14).

A helper's read() on a pipe is interrupted by SIGUSR1 k times before a child fills the
pipe. With SA_RESTART the program made one read, which never failed: the kernel's
-ERESTARTSYS exits are internal and must be neither errors nor calls. Without
SA_RESTART every interrupt is an EINTR the program saw and retried: that many errors
and calls. The oracle is the helper's own count of its read() calls and EINTR returns
(plus the one read of stdin that releases it), on both start-map variants.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest

from kpodmetrics import syscalls
from kpodmetrics.collectors.ebpf.syscalls import SyscallCollector
from tests.conftest import require_root
from tests.kernel.cgroup_util import build_helper, make_cgroups, spawn_in
from tests.kernel.test_syscall_counts import lacks, per_key
from tests.kernel.variant_util import start_forced

SIGNALS = 100


@pytest.fixture(params=["task_storage", "hash"])
def collector(request: pytest.FixtureRequest) -> Iterator[SyscallCollector]:
    require_root()
    c = start_forced(SyscallCollector, "syscalls", request.param, lacks(request.param),
                     syscalls.resolve(["read"]))
    yield c
    c.close()


@pytest.mark.kernel
@pytest.mark.parametrize("sa_restart", [1, 0], ids=["sa_restart", "eintr"])
def test_interrupted_read_counted_as_the_program_saw_it(collector: SyscallCollector,
                                                        sa_restart: int) -> None:
    nr = syscalls.table()["read"]
    with make_cgroups("intr") as (cg,):
        p = spawn_in(cg, [build_helper("sys_calls"), "interrupted", str(SIGNALS),
                          str(sa_restart)], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        try:
            assert p.stdout is not None and p.stdin is not None
            assert p.stdout.readline() == b"ready\n"
            collector.read_map("sys_stats")  # from zero
            p.stdin.write(b"g")
            p.stdin.flush()
            word, reads, eintr, handled, ns = p.stdout.readline().split()
            assert word == b"done"
            got = per_key(collector.read_map("sys_stats").items())
        finally:
            p.kill()
            p.wait()
    # the workload did what it is for: the read was interrupted, and retried on EINTR
    assert int(handled) >= SIGNALS // 2, "the signals must have interrupted the read"
    if sa_restart:
        assert (int(reads), int(eintr)) == (1, 0)
    else:
        assert int(eintr) >= SIGNALS // 2 and int(reads) == int(eintr) + 1
    st = got[(cg.id, nr)]
    assert st.latency.count == int(reads) + 1, "the program's reads plus the release read"
    assert st.errors == int(eintr)
    if sa_restart:
        # one call, charged from its first start: the whole wait, handlers included
        # (the helper's clock also holds a few µs of its own loop; a charge from the
        # last restart alone would be one 2 ms gap)
        assert st.latency.sum >= 0.95 * int(ns)
    else:
        # the calls only: the handlers and the retry loop run in userspace
        assert 0.5 * int(ns) <= st.latency.sum <= int(ns) + 1e9
