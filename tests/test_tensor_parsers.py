"""The tensor layout's parsers, fuzzed (issue #32): safetensors headers, tensor cuts and
chunk manifests are read from stores and repositories, so any input either parses to
something consistent or is refused with one error."""

from __future__ import annotations

import hashlib
import io
import json
import struct
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.numpy import load_file, save, save_file

from cpv_core.domain.safetensors_format import parse_header, select, subset_header
from cpv_core.errors import DVCError, ValidationError
from cpv_plugins.dvc.chunking import MIN_CHUNK, ChunkManifest, chunk_file, parse_manifest, tensor_cuts

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def write_model(path: Path, tensors: dict[str, np.ndarray]) -> bytes:
    save_file(tensors, str(path))
    return path.read_bytes()


@FUZZ
@given(raw=st.binary(max_size=300), size=st.integers(0, 10**6))
def test_header_parser_refuses_any_garbage_with_a_validation_error(raw, size):
    try:
        parse_header(raw, size, "fuzz")
    except ValidationError:
        pass


header_values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 2**64) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12,
)


@FUZZ
@given(doc=st.dictionaries(st.sampled_from(["a", "b", "__metadata__"]), header_values, max_size=3), size=st.integers(0, 4096))
def test_header_parser_refuses_lying_json_with_a_validation_error(doc, size):
    body = json.dumps(doc).encode()
    try:
        header = parse_header(struct.pack("<Q", len(body)) + body, size, "fuzz")
    except ValidationError:
        return
    assert header.file_size == size  # accepted: it tiles the file exactly


@FUZZ
@given(
    shapes=st.lists(
        st.tuples(st.sampled_from(["F32", "F16", "U8", "I64"]), st.lists(st.integers(0, 40), max_size=3)), min_size=1, max_size=6
    )
)
def test_a_subset_header_is_what_the_safetensors_library_reads(shapes, tmp_path_factory):

    dtypes = {"F32": np.float32, "F16": np.float16, "U8": np.uint8, "I64": np.int64}
    arrays = {f"t{i}": np.full(shape, i, dtype=dtypes[dt]) for i, (dt, shape) in enumerate(shapes)}
    path = tmp_path_factory.mktemp("st") / "f.safetensors"
    raw = write_model(path, arrays)
    header = parse_header(raw[: 8 + struct.unpack("<Q", raw[:8])[0]], len(raw), "file")
    chosen = select(header, ["t0", "t*"])
    sub = subset_header(chosen, header.metadata) + b"".join(raw[t.start : t.end] for t in chosen)
    out = path.with_name("sub.safetensors")
    out.write_bytes(sub)
    for name, array in load_file(str(out)).items():
        assert np.array_equal(array, arrays[name])


def _tensors_file(shapes: list[int]) -> bytes:
    return save({f"t{i}": np.ones(n, dtype=np.uint8) for i, n in enumerate(shapes)})


@FUZZ
@given(sizes=st.lists(st.integers(0, 3 * MIN_CHUNK), min_size=1, max_size=8))
def test_tensor_cuts_cover_the_file_and_start_every_large_tensor(sizes):
    raw = _tensors_file(sizes)
    header = parse_header(raw[: 8 + struct.unpack("<Q", raw[:8])[0]], len(raw), "file")
    cuts = tensor_cuts(header)
    assert cuts == sorted(set(cuts)) and cuts[-1] == len(raw) and cuts[0] == header.data_start
    for t in header.tensors:
        if t.nbytes >= MIN_CHUNK:
            assert t.start in cuts and t.end in cuts
    md5, chunks = chunk_file(io.BytesIO(raw), len(raw), lambda digest, data: None, lambda n: None)
    assert [length for _, length in chunks] == [b - a for a, b in zip([0, *cuts], cuts, strict=False)]
    assert md5 == hashlib.md5(raw).hexdigest()


@FUZZ
@given(raw=st.binary(max_size=400) | header_values.map(lambda v: json.dumps(v).encode()))
def test_manifest_parser_refuses_garbage_with_one_error(raw):
    try:
        parse_manifest(raw, "0" * 32, 10, "fuzz")
    except DVCError:
        pass


@FUZZ
@given(
    lengths=st.lists(st.integers(-2, 50), min_size=0, max_size=5),
    size=st.integers(0, 200),
    pack_size=st.integers(-1, 120),
    offsets=st.lists(st.integers(-3, 100), min_size=5, max_size=5),
)
def test_a_manifest_is_accepted_only_when_its_chunks_fit_their_pack_and_add_up(lengths, size, pack_size, offsets):
    chunks = tuple(("1" * 64, n, 0, offsets[i]) for i, n in enumerate(lengths))
    doc = ChunkManifest("0" * 32, size, (("2" * 32, pack_size),), chunks).to_bytes()
    try:
        parsed = parse_manifest(doc, "0" * 32, size, "fuzz")
    except DVCError:
        return
    assert sum(c[1] for c in parsed.chunks) == size
    assert all(c[1] > 0 and 0 <= c[3] and c[3] + c[1] <= pack_size for c in parsed.chunks)
