import pytest

from cpv_core import ValidationError, Version
from cpv_core.versions import next_version, sort_versions


@pytest.mark.parametrize("text, major, minor", [("v0.1", 0, 1), ("v1.0", 1, 0), ("v2.13", 2, 13), ("v10.0", 10, 0)])
def test_parse_and_format_round_trip(text, major, minor):
    v = Version.parse(text)
    assert (v.major, v.minor) == (major, minor)
    assert str(v) == text


@pytest.mark.parametrize(
    "bad", ["1.0", "v1", "v1.0.0", "v01.2", "v1.02", "V1.0", "v1.0-rc", " v1.0", "v-1.0", "v0.0", "", "--upload-pack=x", "v1.0\n"]
)
def test_parse_rejects_malformed_with_the_value_in_the_message(bad):
    with pytest.raises(ValidationError) as err:
        Version.parse(bad)
    assert repr(bad) in str(err.value) or "v0.0" in str(err.value)


def test_ordering_is_numeric():
    assert Version.parse("v0.10") > Version.parse("v0.9")
    assert sort_versions(["v0.10", "v0.9", "v1.0", "junk", "v0.1"]) == ["v0.1", "v0.9", "v0.10", "v1.0"]


def test_next_version():
    assert next_version([]) == Version(0, 1)
    assert next_version([], major=True) == Version(1, 0)
    assert next_version([Version(0, 1), Version(0, 3), Version(0, 2)]) == Version(0, 4)
    assert next_version([Version(0, 3)], major=True) == Version(1, 0)
    assert next_version([Version(2, 0), Version(1, 7)]) == Version(2, 1)
