"""Property tests of every parser of user or repository text (hypothesis, bounded).

For arbitrary input each parser either returns something that round-trips or
satisfies the trust rule, or raises a CPVError; never another exception, and
never a path outside the directory it was given.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cpv_core import CPVError, ValidationError
from cpv_core.metrics import parse_log, validate_metrics
from cpv_core.names import validate_name
from cpv_core.records import clean_metadata, validate_message
from cpv_core.trust import check_oid, check_relpath, select_sub_path, visible
from cpv_core.versions import Version
from cpv_core.workspace import check_meta
from cpv_plugins.dvc_layout import artifact_from_out, parse_manifest, parse_pointer
from cpv_plugins.git_tags import decode_message, encode_message, iter_ref_objects

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
SLOW = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

json_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
json_values = st.recursive(
    json_scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=20
)
path_text = st.lists(st.sampled_from(list("ab./\\\x00\n-_~ ") + ["..", "é", "\x1b", "/../", "../"]), max_size=12).map("".join)


@FAST
@given(path_text)
def test_relpaths_either_stay_inside_or_raise(value):
    root = Path("/work/root")
    try:
        rel = check_relpath(value, "fuzz")
    except ValidationError:
        return
    resolved = os.path.normpath(root / rel)
    assert resolved.startswith(str(root) + "/") and ".." not in Path(rel).parts and not rel.startswith("/")
    assert check_relpath(rel, "again") == rel  # normalised: a fixed point


@FAST
@given(st.text(max_size=40) | json_values)
def test_oids_are_hex_or_refused(value):
    try:
        oid = check_oid(value, "fuzz")
    except ValidationError:
        return
    assert len(oid.removesuffix(".dir")) == 32 and set(oid.removesuffix(".dir")) <= set("0123456789abcdef")


@FAST
@given(st.text(max_size=70))
def test_names_are_allowlisted(value):
    try:
        name = validate_name(value, "team name")
    except ValidationError:
        return
    assert name == value and "/" not in name and ".." not in name and not name.startswith("-")


@FAST
@given(st.text(max_size=20))
def test_versions_round_trip(value):
    try:
        version = Version.parse(value)
    except ValidationError:
        return
    assert str(version) == value


@FAST
@given(json_values)
def test_metrics_are_checked_and_round_trip_as_json(value):
    try:
        clean = validate_metrics(value)
    except ValidationError:
        return
    assert json.loads(json.dumps(clean)) == (json.loads(json.dumps(value)) if value is not None else {})


@FAST
@given(st.lists(st.text(max_size=60) | json_values.map(json.dumps), max_size=8))
def test_metrics_log_lines_never_raise(lines):
    for record in parse_log("\n".join(lines)):
        assert isinstance(record, dict) and isinstance(record["metrics"], dict)


@FAST
@given(
    st.dictionaries(
        st.sampled_from(["metrics", "size", "nfiles", "digest", "path", "lineage", "model", "data", "x"]), json_values, max_size=6
    )
)
def test_tag_metadata_is_cleaned_never_raises(meta):
    clean = clean_metadata(meta, "model/v1.0")
    assert set(clean) <= set(meta) - {"x"}
    if "size" in clean:
        assert isinstance(clean["size"], int) and clean["size"] >= 0


@FAST
@given(st.text(max_size=200).filter(lambda t: "\x00" not in t), st.dictionaries(st.text(max_size=8), st.integers(), max_size=3))
def test_tag_messages_round_trip_and_cannot_replace_metadata(message, metadata):
    text = encode_message(message, metadata)
    decoded, meta = decode_message(text)
    assert meta == metadata
    assert decoded == message.strip()


@FAST
@given(st.binary(max_size=300))
def test_ref_listing_framing_never_raises(raw):
    for ref, otype, _obj, _peeled, body in iter_ref_objects(raw):
        assert isinstance(body, bytes) and isinstance(ref, str) and isinstance(otype, str)


@FAST
@given(st.text(max_size=300) | json_values.map(json.dumps))
def test_pointer_files_parse_or_raise_a_cpv_error(text):
    try:
        out = parse_pointer(text, "model.bin.dvc")
        if out is not None:
            art = artifact_from_out("model.bin", out, "model.bin.dvc")
            check_oid(art.digest.removeprefix("md5:"), "again")
            assert art.size >= 0 and art.nfiles >= 1
    except CPVError:
        pass


@FAST
@given(
    st.lists(
        st.fixed_dictionaries({"relpath": path_text, "md5": st.sampled_from(["0" * 32, "a" * 32, "../x", "b" * 32 + ".dir"])}), max_size=6
    )
)
def test_manifests_hold_only_contained_paths(entries):
    try:
        files = parse_manifest(json.dumps(entries).encode(), "fuzz.dir")
    except ValidationError:
        return
    for rel, md5 in files.items():
        assert check_relpath(rel, "again") == rel and check_oid(md5, "again", allow_dir=False) == md5


@FAST
@given(
    st.dictionaries(
        st.sampled_from(["team", "model", "files", "backends", "format"]),
        json_values | st.dictionaries(st.sampled_from(["model", "data"]), path_text),
        max_size=5,
    )
)
def test_workspace_json_is_checked(meta):
    try:
        checked = check_meta(json.dumps(meta).encode(), ".cpv/workspace.json")
    except ValidationError:
        return
    for value in checked.get("files", {}).values():
        assert check_relpath(value, "again") == value and value.split("/")[0] not in {".git", ".dvc", ".cpv"}


@FAST
@given(path_text)
def test_sub_paths_select_a_subset_or_raise(sub):
    files = {"train/a.txt": "0" * 32, "train/b/c.txt": "1" * 32, "test/d.txt": "2" * 32}
    try:
        chosen = select_sub_path(files, sub, "data v0.1")
    except ValidationError:
        return
    assert set(chosen.values()) <= set(files.values())


@FAST
@given(st.text(max_size=60))
def test_visible_text_has_no_control_characters(text):
    import unicodedata

    assert not any(unicodedata.category(ch) in {"Cc", "Cf"} for ch in visible(text))


@FAST
@given(st.text(max_size=100) | st.integers() | st.none())
def test_messages_are_text_without_nul(message):
    try:
        assert validate_message(message) == message
    except ValidationError:
        assert not isinstance(message, str) or "\x00" in message


@SLOW
@given(st.lists(st.tuples(path_text, st.binary(max_size=16)), min_size=1, max_size=5))
def test_materialize_never_writes_outside_the_destination(cpv_home, entries):
    """The whole download path of the local backend with an arbitrary manifest:
    every file written lies under the destination, or nothing is placed."""
    import hashlib

    from cpv_core.backends import BackendContext
    from cpv_core.config import CPVConfig
    from cpv_plugins.local import LocalStorage

    base = Path(tempfile.mkdtemp(dir=cpv_home.parent))
    try:
        workspace, dest = base / "ws", base / "out" / "dest"
        workspace.mkdir()
        storage = LocalStorage(BackendContext(config=CPVConfig(), team="T", model="m", workspace=workspace))
        remote = Path(storage.remote_url())
        manifest = []
        for rel, data in entries:
            md5 = hashlib.md5(data).hexdigest()
            obj = remote / "files" / "md5" / md5[:2] / md5[2:]
            obj.parent.mkdir(parents=True, exist_ok=True)
            obj.write_bytes(data)
            manifest.append({"md5": md5, "relpath": rel})
        raw = json.dumps(manifest).encode()
        dir_md5 = hashlib.md5(raw).hexdigest()
        (remote / "files" / "md5" / dir_md5[:2]).mkdir(parents=True, exist_ok=True)
        (remote / "files" / "md5" / dir_md5[:2] / f"{dir_md5[2:]}.dir").write_bytes(raw)
        before = {p for p in base.rglob("*")}
        pointer = f"outs:\n- md5: {dir_md5}.dir\n  size: 1\n  nfiles: {len(entries)}\n  path: data\n".encode()
        try:
            storage.materialize("refs/tags/data/v0.1", "data", pointer, dest)
        except CPVError:
            pass
        written = {p for p in base.rglob("*")} - before
        assert all(p == dest or dest in p.parents or p == dest.parent for p in written), written  # nothing beside dest
    finally:
        shutil.rmtree(base, ignore_errors=True)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    metrics=st.dictionaries(st.text(min_size=1, max_size=10).filter(str.strip), json_scalars, max_size=4),
    message=st.text(max_size=80).filter(lambda t: "\x00" not in t),
)
def test_what_list_shows_is_what_was_given(cpv_home, metrics, message):
    """End to end through real git: arbitrary metrics and tag messages round-trip
    through upload, tag and list (or are refused with a CPVError)."""
    from cpv_core import ModelsCheckpointsManage

    m = ModelsCheckpointsManage("Fuzz", "model")
    if not m.ws.is_initialized():
        m.import_model_init()
    (m.repo_path / "model.bin").write_bytes(os.urandom(64))
    try:
        m.upload_model_checkpoint(metrics=metrics)
    except CPVError:
        return
    version = m.tag_model_checkpoint(message=message)
    record = m.get_model_metadata(version)
    assert record.metrics == json.loads(json.dumps(metrics)) and record.message == message.strip()
    assert [r.version for r in m.list_checkpoints()][-1] == version


@settings(max_examples=150, deadline=None)
@given(
    st.recursive(
        st.none() | st.booleans() | st.text(max_size=70) | st.integers(),
        lambda inner: st.dictionaries(st.text(max_size=8), inner, max_size=4),
        max_leaves=8,
    )
)
def test_a_code_origin_from_the_repository_is_kept_only_in_its_exact_shape(value):
    from cpv_core.metrics import clean_code_origin

    clean = clean_code_origin(value)
    if clean is not None:
        assert set(clean) == {"commit", "branch", "dirty"} and isinstance(clean["dirty"], bool)
        assert len(clean["commit"]) in (40, 64) and all(c in "0123456789abcdef" for c in clean["commit"])
        assert not any(ord(c) < 32 for c in clean["branch"])
    good = {"commit": "a" * 40, "branch": "main", "dirty": False}
    assert clean_code_origin(good) == good and clean_code_origin({**good, "dirty": "no"}) is None


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=60), st.lists(st.text(alphabet="abc/._-*", min_size=1, max_size=12), max_size=8, unique=True))
def test_include_patterns_select_only_entries_or_refuse_clearly(text, entries):
    from cpv_core.errors import ValidationError
    from cpv_core.transfer import check_include, included_entries

    try:
        patterns = check_include(text)
    except ValidationError:
        return
    assert patterns and all(patterns)
    files = {rel: "0" * 32 for rel in entries}
    try:
        chosen = included_entries(files, patterns, "model v0.1")
    except ValidationError as exc:
        assert "matches no file" in exc.message
        return
    assert chosen and set(chosen) <= set(files)


@pytest.mark.parametrize(
    "entry",
    [{"relpath": "a\na", "md5": "0" * 32}, {"relpath": "a", "md5": "0" * 32 + "\n" + "1" * 32}],
)
def test_a_value_holding_a_newline_is_not_read_as_two_plain_entries(entry):
    """Found by the fuzz test above: the fast check joined the entries with newlines."""
    with pytest.raises(ValidationError):
        parse_manifest(json.dumps([entry]).encode(), "crafted.dir")
