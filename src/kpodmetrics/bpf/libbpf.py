"""cffi ABI-mode binding to the system libbpf (libbpf.so.1) and libc's vsnprintf.

Only the calls the agent uses are declared. libbpf's print callback is routed into
Python logging (logger `kpodmetrics.libbpf`), so verifier logs land in the agent's log.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

from cffi import FFI

CDEF = r"""
struct bpf_object; struct bpf_program; struct bpf_map; struct bpf_link; struct btf;
struct btf_type { uint32_t name_off; uint32_t info; union { uint32_t size; uint32_t type; }; };

struct bpf_object *bpf_object__open_file(const char *path, const void *opts);
int bpf_object__load(struct bpf_object *obj);
void bpf_object__close(struct bpf_object *obj);
const char *bpf_object__name(const struct bpf_object *obj);
struct btf *bpf_object__btf(const struct bpf_object *obj);
struct bpf_program *bpf_object__next_program(const struct bpf_object *obj, struct bpf_program *prog);
struct bpf_map *bpf_object__next_map(const struct bpf_object *obj, const struct bpf_map *map);

const char *bpf_program__name(const struct bpf_program *prog);
const char *bpf_program__section_name(const struct bpf_program *prog);
int bpf_program__set_autoload(struct bpf_program *prog, bool autoload);
bool bpf_program__autoload(const struct bpf_program *prog);
int bpf_program__fd(const struct bpf_program *prog);
struct bpf_link *bpf_program__attach(const struct bpf_program *prog);
struct bpf_link *bpf_program__attach_perf_event(const struct bpf_program *prog, int pfd);
int bpf_link__destroy(struct bpf_link *link);
long libbpf_get_error(const void *ptr);

const char *bpf_map__name(const struct bpf_map *map);
int bpf_map__fd(const struct bpf_map *map);
int bpf_map__type(const struct bpf_map *map);
uint32_t bpf_map__key_size(const struct bpf_map *map);
uint32_t bpf_map__value_size(const struct bpf_map *map);
uint32_t bpf_map__max_entries(const struct bpf_map *map);
int bpf_map__set_max_entries(struct bpf_map *map, uint32_t max_entries);
void *bpf_map__initial_value(struct bpf_map *map, size_t *psize);
int bpf_map__set_initial_value(struct bpf_map *map, const void *data, size_t size);
int bpf_map__set_autocreate(struct bpf_map *map, bool autocreate);
int libbpf_probe_bpf_map_type(int map_type, const void *opts);

struct bpf_map_batch_opts { size_t sz; uint64_t elem_flags; uint64_t flags; };
int bpf_map_lookup_and_delete_batch(int fd, void *in_batch, void *out_batch, void *keys,
                                    void *values, uint32_t *count,
                                    const struct bpf_map_batch_opts *opts);
int bpf_map_get_next_key(int fd, const void *key, void *next_key);
int bpf_map_lookup_elem(int fd, const void *key, void *value);
int bpf_map_delete_elem(int fd, const void *key);
int bpf_map_update_elem(int fd, const void *key, const void *value, uint64_t flags);
int bpf_enable_stats(int type);

struct btf *btf__load_vmlinux_btf(void);
void btf__free(struct btf *btf);
int btf__find_by_name_kind(const struct btf *btf, const char *type_name, uint32_t kind);
const struct btf_type *btf__type_by_id(const struct btf *btf, uint32_t id);
const char *btf__name_by_offset(const struct btf *btf, uint32_t offset);
uint32_t btf__type_cnt(const struct btf *btf);

int libbpf_num_possible_cpus(void);
typedef int (*libbpf_print_fn_t)(int level, const char *fmt, void *ap);
libbpf_print_fn_t libbpf_set_print(libbpf_print_fn_t fn);
int libbpf_strerror(int err, char *buf, size_t size);
int vsnprintf(char *str, size_t size, const char *format, void *ap);
"""

ffi = FFI()
ffi.cdef(CDEF)

LIBBPF_NAME = os.environ.get("KPOD_LIBBPF", "libbpf.so.1")

# enum bpf_map_type values used here
MAP_HASH, MAP_ARRAY, MAP_PERCPU_HASH, MAP_PERCPU_ARRAY = 1, 2, 5, 6
MAP_LRU_HASH, MAP_LRU_PERCPU_HASH = 9, 10
PERCPU_TYPES = frozenset({MAP_PERCPU_HASH, MAP_PERCPU_ARRAY, MAP_LRU_PERCPU_HASH})
BTF_KIND_TYPEDEF = 8
BPF_STATS_RUN_TIME = 0

_LEVELS = {0: logging.WARNING, 1: logging.INFO, 2: logging.DEBUG}
_log = logging.getLogger("kpodmetrics.libbpf")


class LibbpfMissing(RuntimeError):
    """libbpf.so.1 could not be loaded."""


_lib: Any = None
_libc: Any = None
_print_cb: Any = None
_captured: list[str] | None = None
_init_lock = threading.Lock()
"""Collectors start in parallel threads: without it two first calls race, one print
callback is freed while libbpf still holds it, and the next libbpf log line crashes."""


def lib() -> Any:
    """The loaded libbpf (loaded once; print callback installed)."""
    if _lib is not None:
        return _lib
    with _init_lock:
        if _lib is None:
            _load()
    return _lib


def _load() -> None:
    global _lib, _libc, _print_cb
    if _lib is None:
        try:
            loaded = ffi.dlopen(LIBBPF_NAME)
        except OSError as exc:
            raise LibbpfMissing(
                f"cannot load {LIBBPF_NAME}: {exc}. Install the system libbpf "
                "(Debian/Ubuntu: apt-get install libbpf1)"
            ) from exc
        _libc = ffi.dlopen(None)

        @ffi.callback("int(int, const char *, void *)")  # type: ignore[untyped-decorator]
        def _print(level: int, fmt: Any, ap: Any) -> int:
            buf = ffi.new("char[]", 4096)
            _libc.vsnprintf(buf, 4096, fmt, ap)
            text = ffi.string(buf).decode("utf-8", "replace").rstrip("\n")
            if _captured is not None and level <= 1:
                _captured.append(text)
            _log.log(_LEVELS.get(level, logging.DEBUG), "%s", text)
            return 0

        _print_cb = _print
        loaded.libbpf_set_print(_print_cb)
        _lib = loaded


class capture_log:
    """Collect libbpf warnings/infos emitted inside the block (for error messages)."""

    def __enter__(self) -> list[str]:
        global _captured
        lib()
        self._prev = _captured
        _captured = []
        return _captured

    def __exit__(self, *exc: object) -> None:
        global _captured
        _captured = self._prev


def strerror(err: int) -> str:
    """Human text for a libbpf/kernel error number (positive or negative)."""
    buf = ffi.new("char[]", 256)
    lib().libbpf_strerror(-abs(err), buf, 256)
    return str(ffi.string(buf).decode("utf-8", "replace"))


def num_possible_cpus() -> int:
    n = int(lib().libbpf_num_possible_cpus())
    if n <= 0:
        raise OSError(-n, "libbpf_num_possible_cpus failed")
    return n
