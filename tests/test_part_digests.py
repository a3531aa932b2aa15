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
