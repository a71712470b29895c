"""The syscall name table: libseccomp and the committed header-generated tables agree.

libseccomp builds its table independently of ours (we ask it number -> name for
every slot), so agreement on every common name checks both the generator and the
committed tables, for x86_64, aarch64 and x86 (the ia32 compat table of x86_64;
libseccomp resolves any architecture).
"""

from __future__ import annotations

import pytest

from kpodmetrics import syscalls
from kpodmetrics.config import DEFAULT_SYSCALLS
from tests.conftest import require


@pytest.mark.parametrize("arch", ["x86_64", "aarch64", "x86"])
def test_fallback_agrees_with_libseccomp(arch: str) -> None:
    live = syscalls.seccomp_table(arch)
    require(live is not None, "libseccomp.so.2 not installed (apt-get install libseccomp2)")
    assert live is not None
    fallback = syscalls.FALLBACK[arch]
    common = set(live) & set(fallback)
    assert len(common) >= 290, "most syscalls should be known to both"
    assert {n: fallback[n] for n in common} == {n: live[n] for n in common}
    # names only one side knows (a libseccomp older or newer than the headers) are fine:
    # table() merges both


def test_known_numbers() -> None:
    """Spot checks from the architecture ABIs (independent of both tables)."""
    x86 = syscalls.FALLBACK["x86_64"]
    arm = syscalls.FALLBACK["aarch64"]
    assert (x86["read"], x86["openat"], x86["close"], x86["futex"]) == (0, 257, 3, 202)
    assert (arm["read"], arm["openat"], arm["close"], arm["futex"]) == (63, 56, 57, 98)
    assert "open" not in arm and "epoll_wait" not in arm  # arm64 has only the *at / pwait forms
    assert arm["fcntl"] == 25 and arm["lseek"] == 62  # reached through __NR3264_ aliases


def test_known_ia32_numbers() -> None:
    """i386 numbers (arch/x86/entry/syscalls/syscall_32.tbl), independent of both tables:
    read is 3 there, which is close on x86_64."""
    ia32 = syscalls.FALLBACK["x86"]
    assert (ia32["restart_syscall"], ia32["exit"], ia32["read"], ia32["write"]) == (0, 1, 3, 4)
    assert (ia32["close"], ia32["openat"], ia32["futex"], ia32["socketcall"]) == (6, 295, 240, 102)
    assert (ia32["sigreturn"], ia32["rt_sigreturn"], ia32["exit_group"]) == (119, 173, 252)
    assert syscalls.FALLBACK["x86_64"]["close"] == ia32["read"]


def test_compat_names_follow_the_native_ones() -> None:
    native = syscalls.resolve(DEFAULT_SYSCALLS, "x86_64")
    got = syscalls.compat_for(native, "x86_64")
    assert list(got) == list(DEFAULT_SYSCALLS)  # i386 has every default name
    assert (got["read"], got["close"], got["openat"], got["epoll_pwait"]) == (3, 6, 295, 319)
    # a name only x86_64 has is not tracked for 32-bit tasks; no error
    assert syscalls.compat_for({"newfstatat": 262, "read": 0}, "x86_64") == {"read": 3}
    # arm64 has no compat table the program can tell apart
    assert syscalls.compat_for(syscalls.resolve(["read"], "aarch64"), "aarch64") == {}


def test_sigreturn_is_refused() -> None:
    with pytest.raises(syscalls.UnmeasurableSyscall, match="sigreturn"):
        syscalls.resolve(["sigreturn"], "x86_64")


def test_defaults_resolve_on_x86_64() -> None:
    got = syscalls.resolve(DEFAULT_SYSCALLS, "x86_64")
    assert list(got) == list(DEFAULT_SYSCALLS)
    assert all(0 <= nr < syscalls.NR_LIMIT for nr in got.values())


def test_unknown_names_are_all_reported_with_suggestions() -> None:
    with pytest.raises(syscalls.UnknownSyscall) as info:
        syscalls.resolve(["read", "opnat", "xyzzy"], "x86_64")
    assert info.value.unknown == ["opnat", "xyzzy"]
    msg = str(info.value)
    assert "'opnat'" in msg and "did you mean openat" in msg
    assert "'xyzzy' on x86_64" in msg and "xyzzy' on x86_64 (" not in msg


def test_generator_reproduces_the_committed_x86_64_table() -> None:
    import os

    header = "/usr/include/x86_64-linux-gnu/asm/unistd_64.h"
    require(os.path.exists(header), "kernel headers not installed (linux-libc-dev)")
    assert syscalls.generate_x86_64(header) == syscalls.FALLBACK["x86_64"]


def test_generator_reproduces_the_committed_ia32_table() -> None:
    import os

    header = "/usr/include/x86_64-linux-gnu/asm/unistd_32.h"
    require(os.path.exists(header), "kernel headers not installed (linux-libc-dev)")
    assert syscalls.generate_x86(header) == syscalls.FALLBACK["x86"]


def test_parse_follows_aliases() -> None:
    text = "#define __NR3264_fcntl 25\n#define __NR_fcntl __NR3264_fcntl\n#define __NR_syscalls 463\n"
    assert syscalls.parse_unistd(text) == {"fcntl": 25}


def test_default_list_drops_what_the_architecture_lacks() -> None:
    got = syscalls.for_settings(DEFAULT_SYSCALLS, "aarch64")
    assert "epoll_wait" not in got and got["openat"] == 56 and len(got) == 10
    assert got["epoll_pwait"] == 22
    with pytest.raises(syscalls.UnknownSyscall, match="epoll_wait"):
        syscalls.for_settings(["openat", "epoll_wait"], "aarch64")
