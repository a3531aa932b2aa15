import pytest

from cpv_core import ValidationError
from cpv_core.names import validate_name


@pytest.mark.parametrize("good", ["AI-Convo", "faster-whisper", "model_1", "a", "v1.2-model", "x" * 64])
def test_accepts_reasonable_names(good):
    assert validate_name(good, "model name") == good


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "..",
        "a/b",
        "../etc",
        "-rf",
        "--upload-pack=evil",
        "a b",
        "tab\there",
        "new\nline",
        "nul\x00",
        "x" * 65,
        ".hidden",
        "name.",
        "repo.git",
        "ref.lock",
        "con",
        "NUL",
        "HEAD",
        "a..b",
        "ünïcode",
        "a:b",
        "a\\b",
        "ext::sh",
        "trailing\n",
    ],
)
def test_rejects_hostile_names_quoting_value_and_rule(bad):
    with pytest.raises(ValidationError) as err:
        validate_name(bad, "team name")
    assert repr(bad) in err.value.message
    assert "characters from" in (err.value.fix or "")
