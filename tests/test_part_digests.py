"""Part digests: computed in the upload's one read, read back from a pointer only when they
are exactly what cpv writes for that size (repository text is data, never trusted partly)."""

from __future__ import annotations

import hashlib
import io

from hypothesis import given, settings
from hypothesis import strategies as st

from cpv_plugins.part_digests import MAX_PARTS, META_KEY, PartDigests, from_meta, md5_with_parts, part_size_for

KIB = 1024


def expected_parts(data: bytes, part_size: int) -> tuple[str, ...]:
    return tuple(hashlib.sha256(data[i : i + part_size]).hexdigest() for i in range(0, len(data), part_size))


@settings(max_examples=40, deadline=None)
@given(st.binary(min_size=0, max_size=40 * KIB), st.sampled_from([1, 3, 8]))
def test_one_read_gives_the_md5_and_every_part_s_sha256(data, part_kib):
    copy = io.BytesIO()
    seen: list[int] = []
    md5, parts = md5_with_parts(io.BytesIO(data), len(data), copy, seen.append, min_part_size=part_kib * KIB)
    assert md5 == hashlib.md5(data).hexdigest() and copy.getvalue() == data and sum(seen) == len(data)
    if len(data) <= part_kib * KIB:
        assert parts is None  # small: the MD5 alone is quick enough
    else:
        assert parts is not None and parts.digests == expected_parts(data, parts.part_size)
        assert parts.ranges()[-1][1] == len(data) - 1
        assert from_meta(parts.to_meta(), len(data), min_part_size=part_kib * KIB) == parts


def test_a_file_that_changes_size_while_read_gets_no_list():
    md5, parts = md5_with_parts(io.BytesIO(b"x" * 5000), 9000, min_part_size=KIB)
    assert md5 == hashlib.md5(b"x" * 5000).hexdigest() and parts is None


def test_the_part_size_grows_so_the_list_stays_short():
    for size in (65 * 2**20, 2**30, 70 * 10**9, 2**42):
        part = part_size_for(size)
        assert part is not None and -(-size // part) <= MAX_PARTS
    assert part_size_for(64 * 2**20) is None


GOOD = PartDigests(10 * KIB, 4 * KIB, tuple(hashlib.sha256(bytes([i])).hexdigest() for i in range(3)))


@settings(max_examples=60, deadline=None)
@given(
    st.one_of(
        st.none(),
        st.integers(),
        st.text(max_size=20),
        st.dictionaries(
            st.sampled_from(["algorithm", "part_size", "digests", "x"]), st.one_of(st.integers(), st.text(), st.lists(st.text()))
        ),
    )
)
def test_anything_but_a_well_formed_list_from_a_pointer_is_ignored(value):
    assert from_meta(value, GOOD.size, min_part_size=4 * KIB) in (None, GOOD) and from_meta(value, GOOD.size, 4 * KIB) != GOOD


def test_a_list_that_does_not_fit_the_size_is_ignored_whole():
    meta = GOOD.to_meta()
    assert from_meta(meta, GOOD.size, 4 * KIB) == GOOD
    assert from_meta(meta, GOOD.size + 5 * KIB, 4 * KIB) is None  # one part short
    assert from_meta({**meta, "part_size": 2 * KIB}, GOOD.size, 4 * KIB) is None  # not the size cpv records
    assert from_meta({**meta, "part_size": True}, GOOD.size, 4 * KIB) is None
    assert from_meta({**meta, "algorithm": "md5"}, GOOD.size, 4 * KIB) is None
    assert from_meta({**meta, "digests": [*meta["digests"][:2], meta["digests"][2].upper()]}, GOOD.size, 4 * KIB) is None
    assert META_KEY == "cpv_parts"


def _parts_of(data: bytes) -> PartDigests:
    _, parts = md5_with_parts(io.BytesIO(data), len(data))
    assert parts is not None
    return parts


def test_a_directory_s_entry_parts_round_trip_largest_first_within_the_budget(monkeypatch):
    from cpv_plugins import part_digests
    from cpv_plugins.part_digests import entry_parts_from_meta, entry_parts_to_meta

    monkeypatch.setattr(part_digests, "MIN_PART_SIZE", KIB)
    monkeypatch.setattr(part_digests, "ENTRY_DIGEST_BUDGET", 10)
    entries = {hashlib.md5(bytes([n])).hexdigest(): _parts_of(bytes([n]) * (n * KIB + 1)) for n in (2, 3, 4, 6)}
    meta = entry_parts_to_meta(entries)  # 7, 5, 4 and 3 digests: largest first, 7 then 3 fit in 10
    assert {entries[md5].size for md5 in meta} == {6 * KIB + 1, 2 * KIB + 1} and list(meta) == sorted(meta)
    assert entry_parts_from_meta(meta) == {md5: entries[md5] for md5 in meta}


@settings(max_examples=60, deadline=None)
@given(
    st.dictionaries(
        st.one_of(st.text(max_size=34), st.sampled_from([hashlib.md5(b"a").hexdigest(), "0" * 32])),
        st.one_of(
            st.none(),
            st.integers(),
            st.dictionaries(st.sampled_from(["size", "algorithm", "part_size", "digests"]), st.one_of(st.integers(), st.text(max_size=8))),
        ),
        max_size=6,
    )
)
def test_entry_parts_from_a_pointer_are_kept_only_when_well_formed(value):
    from cpv_plugins.part_digests import entry_parts_from_meta

    found = entry_parts_from_meta(value)
    assert all(isinstance(parts, PartDigests) and len(md5) == 32 for md5, parts in found.items())
    assert found == {}  # no generated entry carries a digest list that fits its size


def test_entry_parts_keep_a_good_entry_beside_bad_ones(monkeypatch):
    from cpv_plugins import part_digests
    from cpv_plugins.part_digests import entry_parts_from_meta

    monkeypatch.setattr(part_digests, "MIN_PART_SIZE", KIB)
    good = _parts_of(b"z" * (3 * KIB))
    value = {
        "a" * 32: {"size": good.size, **good.to_meta()},
        "b" * 32: {"size": good.size + 1, **good.to_meta()},  # the list does not fit that size
        "C" * 32: {"size": good.size, **good.to_meta()},  # not an MD5 as cpv writes it
        "d" * 32: {"size": True, **good.to_meta()},
    }
    assert entry_parts_from_meta(value) == {"a" * 32: good}
    assert entry_parts_from_meta(["not", "a", "map"]) == {}


def test_a_large_sharded_model_gets_a_part_size_at_which_every_shard_has_its_list():
    from cpv_plugins.part_digests import ENTRY_DIGEST_BUDGET, MIN_PART_SIZE, entry_part_size

    gib = 1024**3
    shards = [int(4.6 * gib)] * 30  # a 70B model in bf16
    part = entry_part_size(shards)
    assert part == 512 * 1024**2 and sum(-(-s // part) for s in shards) <= ENTRY_DIGEST_BUDGET
    assert entry_part_size([gib] * 4) == MIN_PART_SIZE == 64 * 1024**2  # a small model keeps 64 MiB parts
    assert entry_part_size([]) == MIN_PART_SIZE


def test_entry_lists_in_a_doubled_part_size_are_read_back_and_other_sizes_are_not(monkeypatch):
    from cpv_plugins import part_digests
    from cpv_plugins.part_digests import entry_parts_from_meta

    monkeypatch.setattr(part_digests, "MIN_PART_SIZE", KIB)
    data = b"q" * (9 * KIB)
    # 3 KiB is not the minimum doubled; the file is not above 16 KiB, so it would have no list
    for part_kib, kept in ((1, True), (2, True), (4, True), (8, True), (3, False), (16, False)):
        meta = {
            "size": len(data),
            "algorithm": "sha256",
            "part_size": part_kib * KIB,
            "digests": list(expected_parts(data, part_kib * KIB)),
        }
        found = entry_parts_from_meta({"e" * 32: meta})
        assert (found == {"e" * 32: PartDigests(len(data), part_kib * KIB, expected_parts(data, part_kib * KIB))}) is kept, part_kib
        assert kept or found == {}
