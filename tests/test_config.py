import json
import os
import stat

import pytest

from cpv_core import ConfigError
from cpv_core.config import CPVConfig


def test_config_lives_in_cpv_home_with_private_permissions(cpv_home):
    cfg = CPVConfig()
    assert cfg.config_dir == cpv_home
    cfg.set_config("workspace_root", "/tmp/somewhere")
    assert stat.S_IMODE(os.stat(cfg.config_path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(cpv_home).st_mode) == 0o700
    again = CPVConfig()
    assert again.get_config("workspace_root") == "/tmp/somewhere"
    assert "last_updated" in again.get_config()


def test_dotted_keys_and_removal(cpv_home):
    cfg = CPVConfig()
    cfg.set_config("aws.bucket", "b1")
    cfg.set_config("aws.region", "eu-west-1")
    assert cfg.get_config("aws") == {"bucket": "b1", "region": "eu-west-1"}
    cfg.set_config("aws.region", None)
    assert CPVConfig().get_config("aws") == {"bucket": "b1"}
    assert cfg.get_config("missing.key", "dflt") == "dflt"


@pytest.mark.parametrize("key", ["aws.secret_access_key", "bitbucket.api_token", "password", "aws.aws_access_key_id_value_secret"])
def test_secret_values_are_refused_and_nothing_is_written(cpv_home, key):
    cfg = CPVConfig()
    with pytest.raises(ConfigError) as err:
        cfg.set_config(key, "hunter2")
    assert "secret" in err.value.message
    assert not (cpv_home / "config.json").exists()


def test_references_to_secrets_are_fine(cpv_home):
    cfg = CPVConfig()
    cfg.set_config("bitbucket.api_token_env", "BITBUCKET_TOKEN")
    cfg.set_config("bitbucket.private_key_path", "/home/u/.ssh/id")
    assert CPVConfig().get_config("bitbucket.api_token_env") == "BITBUCKET_TOKEN"


def test_unreadable_config_names_the_file(cpv_home):
    cpv_home.mkdir(parents=True)
    (cpv_home / "config.json").write_text("{not json")
    with pytest.raises(ConfigError) as err:
        CPVConfig()
    assert str(cpv_home / "config.json") in err.value.message


def test_backend_defaults_follow_what_is_configured(cpv_home):
    cfg = CPVConfig()
    assert [cfg.backend_name(k) for k in ("storage", "hosting", "versioning")] == ["local", "local", "git-tags"]
    cfg._config["aws"] = {"bucket": "b"}
    cfg._config["bitbucket"] = {"workspace": "w"}
    assert cfg.backend_name("storage") == "dvc-s3"
    assert cfg.backend_name("hosting") == "bitbucket-ssh"
    cfg._config["storage"] = "dirstore"
    assert cfg.backend_name("storage") == "dirstore"


def test_validate_with_nothing_configured_passes(cpv_home):
    report = CPVConfig().validate_credentials()
    assert report and report.ok
    assert json.loads(json.dumps(report.to_dict()))["ok"] is True
