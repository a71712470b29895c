"""Exceptions that name the object, program or map and the errno."""

from __future__ import annotations

import errno as _errno


class BpfError(RuntimeError):
    """A libbpf or bpf() call failed."""

    def __init__(self, what: str, err: int, detail: str = "", remedy: str = "") -> None:
        self.err = abs(err)
        name = _errno.errorcode.get(self.err, str(self.err))
        msg = f"{what}: {name} ({self.err})"
        if detail:
            msg += f": {detail}"
        if remedy:
            msg += f". {remedy}"
        super().__init__(msg)


class ObjectNotFound(BpfError):
    pass


class ProgramLoadError(BpfError):
    pass


class MapError(BpfError):
    pass


def remedy_for(err: int) -> str:
    """A hint for the usual causes."""
    e = abs(err)
    if e == _errno.EPERM:
        return ("run as root or grant CAP_BPF and CAP_PERFMON "
                "(and CAP_SYS_RESOURCE on kernels before 5.11)")
    if e == _errno.ENOENT:
        return "check the path and that the kernel exposes /sys/kernel/btf/vmlinux"
    if e == _errno.EINVAL:
        return "the kernel rejected the program; see the libbpf log above"
    return ""
