"""Parsers of the cgroup v2 and procfs formats: real variants, malformed lines, fuzzing."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from kpodmetrics.collectors.files.support import formats
from kpodmetrics.collectors.files.support.formats import (
    parse_flat_keyed,
    parse_io_stat,
    parse_psi,
    parse_single,
)
from kpodmetrics.collectors.files.support.mountinfo import parse_mountinfo, visible_mounts
from kpodmetrics.collectors.files.support.netdev import IfaceCounters, parse_net_dev

from .test_cgfiles_helpers import FIXTURES


def read(rel: str) -> bytes:
    return (FIXTURES / rel).read_bytes()


def test_io_stat_without_and_with_discard_keys() -> None:
    old = parse_io_stat(read("v4.15/pod/ctr-a/io.stat"))
    assert old.malformed == 0
    assert old.rows == {
        "8:0": {"rbytes": 1459200, "wbytes": 314773504, "rios": 192, "wios": 353},
        "253:1": {"rbytes": 4096, "wbytes": 0, "rios": 1, "wios": 0},
    }
    new = parse_io_stat(read("v6.8/pod/ctr-a/io.stat"))
    assert new.rows["8:16"]["dbytes"] == 4096 and new.rows["8:16"]["wbytes"] == 2097152


def test_io_stat_malformed_lines_are_skipped_and_counted() -> None:
    parsed = parse_io_stat(read("broken/pod/ctr-a/io.stat"))
    # "garbage" and "8:1 rbytes=abc" are malformed; "8:2" lacks wios but is well formed
    assert parsed.malformed == 2
    assert set(parsed.rows) == {"8:0", "8:2"}
    assert "wios" not in parsed.rows["8:2"]


def test_cpu_stat_variants() -> None:
    old = parse_flat_keyed(read("v4.15/pod/ctr-a/cpu.stat"))
    assert old.malformed == 0 and old.values["throttled_usec"] == 250000
    new = parse_flat_keyed(read("v6.8/pod/ctr-a/cpu.stat"))
    assert new.malformed == 0
    assert new.values["core_sched.force_idle_usec"] == 0
    assert new.values["nr_bursts"] == 3 and new.values["usage_usec"] == 123456789


def test_flat_keyed_malformed() -> None:
    parsed = parse_flat_keyed(read("broken/pod/ctr-a/cpu.stat"))
    # "user_usec" (no value) and "nr_periods 1 2" are malformed; "-5" parses (negative)
    assert parsed.malformed == 2
    assert parsed.values == {"usage_usec": 1000000, "system_usec": -5}


def test_memory_stat_old_and_new_field_sets() -> None:
    old = parse_flat_keyed(read("v4.15/pod/ctr-a/memory.stat"))
    new = parse_flat_keyed(read("v6.8/pod/ctr-a/memory.stat"))
    assert old.malformed == new.malformed == 0
    assert (old.values["anon"], old.values["file"], old.values["pgmajfault"]) == (
        52428800, 41943040, 17)
    assert (new.values["anon"], new.values["file"], new.values["pgmajfault"]) == (
        201326592, 50331648, 789)


def test_psi_with_and_without_full() -> None:
    cpu_old = parse_psi(read("v5.10/pod/ctr-a/cpu.pressure"))
    assert cpu_old.malformed == 0 and cpu_old.rows == {"some": {"total": 1234567}}
    cpu_new = parse_psi(read("v6.8/pod/ctr-a/cpu.pressure"))
    assert cpu_new.rows == {"some": {"total": 2000000}, "full": {"total": 1000000}}
    broken = parse_psi(read("broken/pod/ctr-a/cpu.pressure"))
    assert broken.malformed == 1 and broken.rows == {"some": {"total": 1000}}


def test_single_value() -> None:
    assert parse_single(b"8388608\n") == 8388608
    assert parse_single(b"max\n") is None
    assert parse_single(b"") is None
    assert parse_single(b"1\n2\n") is None
    assert parse_single("\u0661\u0662\n".encode()) is None  # unicode digits are not kernel output


def test_net_dev_current_and_old_layout() -> None:
    cur = parse_net_dev(read("proc/net_dev_v6"))
    assert cur.malformed == 0
    assert cur.interfaces["eth0"] == IfaceCounters(1843205, 12034, 1, 2, 998877, 8123, 3, 4)
    assert set(cur.interfaces) == {"lo", "eth0", "net1"}
    old = parse_net_dev(read("proc/net_dev_old"))
    assert old.interfaces["eth0"].rx_bytes == 4294967296
    assert old.interfaces["eth0"].tx_packets == 4


def test_mountinfo_fields_and_escapes() -> None:
    parsed = parse_mountinfo(read("proc/mountinfo_pod"))
    assert parsed.malformed == 0
    by_mp = {m.mountpoint: m for m in parsed.mounts}
    assert by_mp["/data copy"].dev == (259, 3) and by_mp["/data copy"].root == "/sub"
    assert by_mp["/"].fstype == "overlay"
    assert by_mp["/mnt/nfs"].source == "10.0.0.5:/export"
    assert by_mp["/dev/pts"].fstype == "devpts"  # "master:1" optional field handled
    assert parse_mountinfo(b"1 2 3:4 / /x rw - \n").malformed == 1  # no fs type/source


# a 6.1 matrix VM's table, cut down: ext4 on top of a tmpfs at /var/tmp, an overlay at
# /usr over one at /usr/lib; and a host's: / listed after /dev, its child (tucked)
SHADOWED = b"""\
76 1 0:21 / / rw - 9p /dev/root rw
93 76 0:28 / /usr/lib rw - overlay overlay rw
97 76 0:40 / /usr rw - overlay overlay rw
98 76 0:43 / /var rw - tmpfs tmpfs rw
100 98 0:55 / /var/tmp rw - tmpfs tmpfs rw
101 100 254:0 / /var/tmp rw - ext4 /dev/vda rw
102 98 0:56 / /var/lib/private rw - tmpfs tmpfs rw
109 101 0:59 / /var/tmp/out rw - 9p out rw
"""
TUCKED = b"""\
24 27 0:6 / /dev rw - devtmpfs devtmpfs rw
25 24 0:23 / /dev/shm rw - tmpfs tmpfs rw
27 1 254:0 / / rw - ext4 /dev/vda rw
30 25 0:27 / /dev/shm rw - tmpfs tmpfs rw
"""


def test_mounts_hidden_by_a_later_mount_at_or_above_them_are_not_visible() -> None:
    mounts = parse_mountinfo(SHADOWED).mounts
    assert [m.mount_id for m in visible_mounts(mounts)] == [76, 97, 98, 101, 102, 109]
    # / is listed after /dev, its child: tucked beneath, not on top; /dev/shm has a
    # second tmpfs on top of it
    mounts = parse_mountinfo(TUCKED).mounts
    assert [m.mount_id for m in visible_mounts(mounts)] == [24, 27, 30]
    assert visible_mounts(parse_mountinfo(SHADOWED + b"110 1 254:1 / / rw - ext4 x rw\n")
                          .mounts)[0].mount_id == 110  # a new root hides every other
    assert visible_mounts([]) == []


# -- fuzzing: any bytes never raise; garbage added to a valid file changes nothing
#    but the malformed count ------------------------------------------------------

PARSERS = (parse_io_stat, parse_psi, parse_flat_keyed, parse_net_dev, parse_mountinfo)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600))
def test_parsers_never_raise_on_random_bytes(data: bytes) -> None:
    for parser in PARSERS:
        parser(data)
    parse_single(data)


VALID = {
    parse_io_stat: "v6.8/pod/ctr-a/io.stat",
    parse_psi: "v6.8/pod/ctr-a/cpu.pressure",
    parse_flat_keyed: "v6.8/pod/ctr-a/memory.stat",
    parse_net_dev: "proc/net_dev_v6",
    parse_mountinfo: "proc/mountinfo_pod",
}

# lines that no parser accepts: no key/value shape, no digits where numbers go
garbage_line = st.text(
    alphabet=st.characters(blacklist_characters="\n0123456789:=|-", blacklist_categories=("Cs",)),
    min_size=1, max_size=40,
).filter(lambda s: s.strip() != "")


@settings(max_examples=150, deadline=None)
@given(st.lists(garbage_line, min_size=1, max_size=5), st.randoms())
def test_garbage_lines_are_skipped_and_counted(junk: list[str], rnd: object) -> None:
    import random

    assert isinstance(rnd, random.Random)
    for parser, rel in VALID.items():
        lines = read(rel).decode().splitlines()
        baseline = parser(read(rel))
        mixed = list(lines)
        for j in junk:
            # a line of words without separators: at least 3 words so no 2-token
            # `key value` or mountinfo shape can accept it
            mixed.insert(rnd.randint(2 if parser is parse_net_dev else 0, len(mixed)),
                         f"{j} x y")
        parsed = parser("\n".join(mixed).encode())
        assert parsed.malformed == len(junk), (parser.__name__, mixed)
        if parser is parse_net_dev:
            assert parsed.interfaces == baseline.interfaces  # type: ignore[attr-defined]
        elif parser is parse_mountinfo:
            assert parsed.mounts == baseline.mounts  # type: ignore[attr-defined]
        elif parser is parse_flat_keyed:
            assert parsed.values == baseline.values  # type: ignore[attr-defined]
        else:
            assert parsed.rows == baseline.rows  # type: ignore[attr-defined]


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=0, max_value=200), st.sampled_from(sorted(VALID.values())))
def test_truncated_files_never_raise_and_keep_whole_lines(cut: int, rel: str) -> None:
    data = read(rel)
    cut_data = data[: max(0, len(data) - cut)]
    for parser in PARSERS:
        parser(cut_data)
    if rel.endswith("io.stat"):
        full = parse_io_stat(data)
        part = parse_io_stat(cut_data)
        for dev, pairs in part.rows.items():
            # a cut inside a number shortens it but never invents a key
            assert set(pairs) <= set(full.rows[dev])


# -- the whole-file fast paths agree with the strict line parsers -------------------------


def _same_flat(data: bytes) -> None:
    fast, strict = parse_flat_keyed(data), formats._parse_flat_keyed_lines(data)
    assert (fast.values, fast.malformed) == (strict.values, strict.malformed), data


def _same_psi(data: bytes) -> None:
    fast, strict = parse_psi(data), formats._parse_psi_lines(data)
    assert (fast.rows, fast.malformed) == (strict.rows, strict.malformed), data


def test_fast_paths_agree_on_every_fixture() -> None:
    flat = [p for p in FIXTURES.rglob("*")
            if p.name in ("cpu.stat", "memory.stat", "memory.events", "memory.events.local")]
    psi = list(FIXTURES.rglob("*.pressure"))
    assert flat and psi
    for p in flat:
        _same_flat(p.read_bytes())
    for p in psi:
        _same_psi(p.read_bytes())


def test_fast_paths_take_the_kernels_form_and_leave_the_rest() -> None:
    """The kernel's own form is taken by the regular expression; every variation goes
    to the strict parser, with the same answer as before the fast path existed."""
    psi = b"some avg10=0.00 avg60=0.12 avg300=0.05 total=123\nfull avg10=0.00 " \
          b"avg60=0.00 avg300=0.00 total=45\n"
    assert formats._PSI_FILE.fullmatch(psi) is not None
    assert parse_psi(psi).rows == {"some": {"total": 123}, "full": {"total": 45}}
    flat = b"usage_usec 10\nuser_usec 7\nsystem_usec 3\nnegative -4\n"
    assert formats._FLAT_FILE.fullmatch(flat.decode()) is not None
    assert parse_flat_keyed(flat).values == {"usage_usec": 10, "user_usec": 7,
                                             "system_usec": 3, "negative": -4}
    for variant in (
        b"usage_usec 10\nusage_usec 11\n",        # a repeated key: malformed
        b"usage_usec  10\nuser_usec\t7\n",        # other whitespace
        b"usage_usec 10\nuser_usec 7",            # no final newline
        b"usage_usec 10\n\nuser_usec 7\n",        # a blank line
        b"usage_usec 1x\nuser_usec 7\n",          # not a number
        b"usage_usec 123456789012345678901\n",    # too long a number
        b"",
    ):
        _same_flat(variant)
    for variant in (
        psi.replace(b"total=45", b"total=99999999999999999999"),  # beyond u64
        psi.replace(b"avg60=0.12", b"avg60=1"),                   # no fraction
        psi + psi,                                                # rows repeated
        psi.replace(b"full", b"fuzz"),
        psi[:-1],
        b"some avg10=0.00 avg60=0.00 avg300=0.00 total=7\n",      # cpu.pressure before 5.13
        b"",
    ):
        _same_psi(variant)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["usage_usec", "a.b", "x-y", "k", "é", ""]),
                          st.sampled_from(["0", "-3", "12", "18446744073709551615", "1.5",
                                           "", "7 8"]),
                          st.sampled_from([" ", "  ", "\t"])), max_size=6),
       st.booleans())
def test_flat_fast_path_agrees_with_the_strict_parser(rows, final_newline) -> None:  # type: ignore[no-untyped-def]
    text = "\n".join(f"{k}{sep}{v}" for k, v, sep in rows) + ("\n" if final_newline else "")
    _same_flat(text.encode())


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["some", "full", "none"]),
                          st.sampled_from(["0.00", "12.5", "1", "x"]),
                          st.sampled_from(["0", "42", "18446744073709551616", "-1"])),
                max_size=3))
def test_psi_fast_path_agrees_with_the_strict_parser(rows) -> None:  # type: ignore[no-untyped-def]
    data = "".join(f"{r} avg10={a} avg60={a} avg300={a} total={t}\n" for r, a, t in rows)
    _same_psi(data.encode())
