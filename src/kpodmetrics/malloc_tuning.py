"""glibc malloc settings that keep a long-running agent's RSS at what it uses.

Two glibc defaults make a Python agent's resident memory grow far beyond its live
heap, and neither is about Python:

- **the dynamic mmap threshold.** A block above 128 KiB is mmap()ed and returned to the
  kernel when freed, but glibc then raises the threshold to that block's size (up to
  32 MiB), so every later block of that size comes from the heap, and a freed heap
  block stays resident. Each cycle renders a family's exposition text (megabytes at
  1,000 cgroups) and reads BPF batches into large buffers: after the first cycle all
  of those stay in the heap, in fragments the next cycle cannot always reuse.
- **one arena per thread that ever contended** (up to 8 per CPU). The agent has a
  worker lane, the event loop, the OTLP pusher and the threads a stuck call leaves
  behind; each arena keeps the high-water mark of what its thread freed.

Measured at 1,000 cgroups, standard profile, maps filled (benchmarks.scale, same
machine, one run each): VmRSS 124 MiB with the defaults, 111 MiB with two arenas,
80 MiB with two arenas and a fixed 128 KiB threshold; CPU per cycle 383, 375 and
387 ms (noise). So the agent fixes the threshold and caps the arenas at start-up.

A setting the user gave through glibc's own environment variables (`MALLOC_ARENA_MAX`,
`MALLOC_MMAP_THRESHOLD_`) wins: we leave that one alone. On a C library without
`mallopt` (musl) nothing is done.
"""

from __future__ import annotations

import ctypes
import logging
import os
from collections.abc import Mapping

_log = logging.getLogger(__name__)

M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8
"""mallopt parameter numbers from glibc's malloc.h."""

MMAP_THRESHOLD = 128 * 1024
"""glibc's own starting value; setting it explicitly turns the dynamic raise off."""
ARENA_MAX = 2
"""The event loop and the worker lane, the two threads that allocate all the time."""

SETTINGS = (
    (M_MMAP_THRESHOLD, "MALLOC_MMAP_THRESHOLD_", MMAP_THRESHOLD),
    (M_ARENA_MAX, "MALLOC_ARENA_MAX", ARENA_MAX),
)


def tune(environ: Mapping[str, str] | None = None,
         libc: object | None = None) -> dict[str, int]:
    """Apply SETTINGS through mallopt(3), except those the environment already sets.

    Returns what was set ({env name: value}); call before the agent starts threads.
    `libc`: for tests, an object with a `mallopt(param, value) -> int` attribute."""
    env = os.environ if environ is None else environ
    if libc is None:
        try:
            libc = ctypes.CDLL(None)
        except OSError:
            return {}
    mallopt = getattr(libc, "mallopt", None)
    if mallopt is None:
        return {}
    done: dict[str, int] = {}
    for param, env_name, value in SETTINGS:
        if env_name in env:
            continue
        if mallopt(param, value) == 1:  # mallopt returns 1 on success, 0 on error
            done[env_name] = value
        else:
            _log.warning("mallopt(%d, %d) refused: %s stays at glibc's default",
                         param, value, env_name)
    return done
