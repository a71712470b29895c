"""statvfs of pod volumes in a child process, each call within a deadline; mounts that
hang are remembered and skipped until their call returns.

A filesystem whose server is gone (NFS, a FUSE daemon that stopped answering) makes
statvfs, and even stat of its mountpoint, wait in the kernel for as long as the server
stays away. For FUSE that wait is uninterruptible once the daemon has the request: not
even SIGKILL ends a thread in it, and a process does not end before all its threads
have (its fds, BPF links included, stay open). So the calls are made by a small child
process (`python -I -S`, no fds but its two pipes; it ends when the agent's end of a pipe closes):
when one does not answer within `deadline`, that child is left to its call, its
device is skipped, and a new child serves the other mounts. Each cycle looks whether
the abandoned call has returned; the two moments are logged once each.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import signal
import struct
import subprocess
import sys
import time
from dataclasses import dataclass

_log = logging.getLogger(__name__)
Dev = tuple[int, int]
STARTUP_SECONDS = 10.0
"""Longest wait for a helper process to start (a loaded node starts Python slowly)."""

_CHILD = r"""
import os, struct, sys
rd, wr = 0, 1  # EOF on rd (the agent is gone) ends it; so does EPIPE on wr
os.write(wr, b"ready\n")
def read_exact(n):
    buf = b""
    while len(buf) < n:
        chunk = os.read(rd, n - len(buf))
        if not chunk:
            sys.exit(0)
        buf += chunk
    return buf
while True:
    (n,) = struct.unpack("=I", read_exact(4))
    path = read_exact(n)
    try:
        before = os.stat(path).st_dev
        v = os.statvfs(path)
        after = os.stat(path).st_dev
        line = "ok %d %d %d %d %d %d %d %d %d\n" % (before, after, v.f_bsize, v.f_frsize,
            v.f_blocks, v.f_bfree, v.f_bavail, v.f_files, v.f_ffree)
    except OSError as exc:
        line = "err %d\n" % (exc.errno or 0)
    os.write(wr, line.encode())
"""


@dataclass(frozen=True, slots=True)
class Reading:
    st_dev: int
    """st_dev of the path before statvfs (its device must be the one expected)."""
    after_dev: int
    """st_dev after statvfs: a different one means the path was swapped meanwhile."""
    f_bsize: int
    f_frsize: int
    f_blocks: int
    f_bfree: int
    f_bavail: int
    f_files: int
    f_ffree: int


class Stuck(Exception):
    """This mount's statvfs has not returned (now or since an earlier cycle)."""


class _Child:
    """One `stat, statvfs, stat` server process."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-I", "-S", "-c", _CHILD],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            close_fds=True)  # holds nothing of ours: not even the log pipe
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.wr = self.proc.stdin.fileno()
        self.rd = self.proc.stdout.fileno()
        self._buf = b""
        self.ready = False

    def wait_ready(self, timeout: float = STARTUP_SECONDS) -> None:
        """Interpreter start-up is not the mount's time: wait for the child's hello."""
        if not self.ready:
            if self.answer(timeout) != b"ready":
                raise OSError("statvfs helper process did not start")
            self.ready = True

    def ask(self, path: str) -> None:
        raw = os.fsencode(path)
        os.write(self.wr, struct.pack("=I", len(raw)) + raw)

    def answer(self, timeout: float) -> bytes | None:
        """The answer line, or None if none came within `timeout`."""
        end = time.monotonic() + timeout
        while b"\n" not in self._buf:
            left = max(0.0, end - time.monotonic())
            if not select.select([self.rd], [], [], left)[0]:
                return None
            chunk = os.read(self.rd, 512)
            if not chunk:
                raise OSError("statvfs helper process ended")
            self._buf += chunk
        line, _, self._buf = self._buf.partition(b"\n")
        return line

    def kill(self) -> None:
        """SIGKILL; a child stuck in the kernel dies when its call ends (never waited)."""
        with contextlib.suppress(OSError):
            self.proc.send_signal(signal.SIGKILL)
        for f in (self.proc.stdin, self.proc.stdout):
            if f is not None:
                f.close()
        self.proc.poll()  # reaps it if already gone


@dataclass(slots=True)
class StuckMount:
    dev: Dev
    mountpoint: str
    path: str
    since: float
    child: _Child


def _parse(line: bytes) -> Reading:
    parts = line.split()
    if parts[:1] == [b"err"]:
        err = int(parts[1])
        raise OSError(err, os.strerror(err))
    if parts[:1] != [b"ok"] or len(parts) != 10:
        raise OSError(f"statvfs helper answered {line!r}")
    return Reading(*(int(p) for p in parts[1:]))


class MountProber:
    """Measures mounts through a child process, replaced whenever a call hangs."""

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self._child: _Child | None = None
        self._stuck: dict[Dev, StuckMount] = {}

    def stuck(self) -> dict[Dev, StuckMount]:
        return dict(self._stuck)

    def check_returned(self) -> None:
        """Forget the stuck mounts whose call has returned since (once per cycle)."""
        for dev, mount in list(self._stuck.items()):
            try:
                line = mount.child.answer(0)
            except OSError:
                line = b"ended"
            if line is None:
                continue
            del self._stuck[dev]
            mount.child.kill()
            _log.warning("statvfs of %s (device %d:%d) returned after %.1fs: measuring it "
                         "again", mount.mountpoint, *dev, time.monotonic() - mount.since)

    def measure(self, path: str, dev: Dev, mountpoint: str) -> Reading:
        """stat, statvfs, stat of `path`; raises OSError like they do, or Stuck."""
        if dev in self._stuck:
            raise Stuck(mountpoint)
        if self._child is None or self._child.proc.poll() is not None:
            self._child = _Child()
        child = self._child
        try:
            child.wait_ready()
            t0 = time.monotonic()
            child.ask(path)
            line = child.answer(self.deadline)
        except OSError:
            child.kill()
            self._child = None
            raise
        if line is None:
            self._child = _Child()  # it keeps its call; a new one starts for the others
            self._stuck[dev] = StuckMount(dev, mountpoint, path, t0, child)
            _log.warning("statvfs of %s (device %d:%d, via %s) has not returned after "
                         "%.3gs: skipping this filesystem until it does", mountpoint, *dev,
                         path, self.deadline)
            raise Stuck(mountpoint)
        return _parse(line)

    def close(self) -> None:
        for mount in self._stuck.values():
            mount.child.kill()
        self._stuck.clear()
        if self._child is not None:
            self._child.kill()
            self._child = None
