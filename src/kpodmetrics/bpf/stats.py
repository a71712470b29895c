"""Per-program run time and run count of our BPF programs (kernel BPF stats).

The kernel only accounts program run time while BPF stats are on. We switch them on
with `bpf_enable_stats(BPF_STATS_RUN_TIME)`, which returns an fd: stats stay on while
any such fd is open and go back off by themselves when the agent exits, even if it is
killed. Flipping the global `kernel.bpf_stats_enabled` sysctl instead would leave the
(small, per-run) accounting cost on for everyone after we are gone. The counters are
read from /proc/self/fdinfo/<program fd> (`run_time_ns`, `run_cnt`).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os

from kpodmetrics.bpf import libbpf

_log = logging.getLogger(__name__)


class BpfStats:
    """Holds the BPF_ENABLE_STATS fd for the agent's life."""

    def __init__(self) -> None:
        self.fd = -1
        self.reason = ""

    @property
    def enabled(self) -> bool:
        return self.fd >= 0

    def enable(self) -> bool:
        """Turn run-time stats on; False (with `reason`) where the kernel refuses."""
        if self.fd >= 0:
            return True
        try:
            lib = libbpf.lib()
            fd = int(lib.bpf_enable_stats(libbpf.BPF_STATS_RUN_TIME))
        except (libbpf.LibbpfMissing, OSError, AttributeError) as exc:
            self.reason = str(exc)
            return False
        if fd < 0:
            err = -fd if fd < -1 else (libbpf.ffi.errno or errno.EINVAL)
            self.reason = (f"bpf_enable_stats: {errno.errorcode.get(err, str(err))} "
                           "(needs Linux >= 5.8 and CAP_SYS_ADMIN)")
            _log.warning("BPF program stats unavailable: %s", self.reason)
            return False
        self.fd = fd
        return True

    def close(self) -> None:
        if self.fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self.fd)
            self.fd = -1


def read_program_stats(prog_fd: int, proc_self: str = "/proc/self") -> tuple[int, int] | None:
    """(run_time_ns, run_cnt) of the program behind `prog_fd`, or None if unreadable."""
    run_time = run_cnt = None
    try:
        with open(f"{proc_self}/fdinfo/{prog_fd}") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                if key == "run_time_ns":
                    run_time = int(value)
                elif key == "run_cnt":
                    run_cnt = int(value)
    except (OSError, ValueError):
        return None
    if run_time is None or run_cnt is None:
        return None
    return run_time, run_cnt
