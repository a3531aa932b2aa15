"""CPVConfig: the user's cpv settings in ``~/.cpv/config.json``.

``CPV_HOME`` (a directory) overrides ``~/.cpv``. The file is 0600 in a 0700
directory and holds **paths and names only**, never secret values: keys whose
name suggests a secret are refused unless they name a file or an environment
variable (``*_path``, ``*_file``, ``*_env``).

Backends are chosen by name: ``storage``, ``hosting`` and ``versioning``. When a
key is absent the default follows what is set up: ``dvc-s3`` storage once AWS is
configured, ``bitbucket-ssh`` hosting once Bitbucket is, otherwise the embedded
``local`` backends; versioning defaults to ``git-tags``.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from cpv_core.domain.checks import ValidationReport
from cpv_core.errors import ConfigError
from cpv_core.paths import atomic_write_bytes, cpv_home, make_private_dirs

logger = logging.getLogger("cpv.config")

CONFIG_FILE = "config.json"
_SECRET_WORDS = ("secret", "password", "passwd", "token", "key", "credential")
_SAFE_SUFFIXES = ("_path", "_file", "_env", "_id_env")


#: values that are credentials whatever key they are stored under
_SECRET_PATTERNS = [
    re.compile(p)
    for p in (
        r"\b(?:AKIA|ASIA|AGPA|AIDA|AROA|ANPA|ANVA|AIPA)[A-Z0-9]{16}\b",  # AWS access key ids
        r"-----BEGIN [A-Z ]*PRIVATE KEY-----",  # PEM private keys
        r"\bgh[pousr]_[A-Za-z0-9]{30,}",  # GitHub tokens
        r"\bxox[abprs]-[A-Za-z0-9-]{10,}",  # Slack tokens
        r"\bATBB[A-Za-z0-9]{20,}",  # Bitbucket app passwords
        r"\beyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}",  # JWTs
    )
]
#: keys whose values are paths: stored absolute, so every working directory means the same place
PATH_KEYS = {"local.root", "workspace_root"}


def looks_like_secret(value: object) -> bool:
    """Whether ``value`` looks like a credential: a known token format, or one
    long high-entropy word mixing at least three character classes (an AWS
    secret key, an API token). Paths, URLs and templates never do."""
    if not isinstance(value, str):
        return False
    if any(p.search(value) for p in _SECRET_PATTERNS):
        return True
    token = value.strip()
    if len(token) < 20 or any(ch.isspace() for ch in token) or "://" in token or "{" in token:
        return False
    if token.startswith(("/", "~", ".")):
        return False
    classes = sum(
        [
            any(c.islower() for c in token),
            any(c.isupper() for c in token),
            any(c.isdigit() for c in token),
            any(not c.isalnum() for c in token),
        ]
    )
    counts = [token.count(c) for c in set(token)]
    entropy = -sum(n / len(token) * math.log2(n / len(token)) for n in counts)
    return classes >= 3 and entropy >= 3.5


def _check_no_secrets(data: Any, where: str = "") -> None:
    if isinstance(data, dict):
        for key, value in data.items():
            lowered = str(key).lower()
            if any(w in lowered for w in _SECRET_WORDS) and not lowered.endswith(_SAFE_SUFFIXES):
                raise ConfigError(
                    f"config key {where + str(key)!r} looks like a secret value",
                    fix="cpv stores only paths and names: store the path of the file that holds it (…_path) or the name of an environment variable (…_env)",
                )
            _check_no_secrets(value, f"{where}{key}.")


class CPVConfig:
    """Load, change and persist the cpv configuration.

    :param config_dir: directory holding ``config.json``; default ``$CPV_HOME``
        or ``~/.cpv``.
    """

    def __init__(self, config_dir: str | Path | None = None, *, verbose: bool = False, **_: Any) -> None:
        self.config_dir = Path(config_dir).expanduser().resolve() if config_dir else cpv_home()
        self.config_path = self.config_dir / CONFIG_FILE
        self.verbose = verbose
        self._config: dict[str, Any] = self._load_config()

    # -- persistence -----------------------------------------------------
    def _load_config(self) -> dict[str, Any]:
        """Read ``config.json``; an absent file is an empty config."""
        try:
            raw = self.config_path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise ConfigError(
                f"cannot read cpv config {self.config_path}: {exc.strerror}",
                fix="check its permissions, or point CPV_HOME at another directory",
            ) from None
        try:
            data = json.loads(raw) if raw.strip() else {}
        except json.JSONDecodeError as exc:
            raise ConfigError(
                f"cpv config {self.config_path} is not valid JSON (line {exc.lineno}: {exc.msg})",
                fix="fix or delete the file and run the setup commands again",
            ) from None
        if not isinstance(data, dict):
            raise ConfigError(f"cpv config {self.config_path} must hold a JSON object", fix="fix or delete the file")
        return data

    def _save_config(self) -> None:
        """Write ``config.json`` atomically, 0600 in a 0700 directory."""
        _check_no_secrets(self._config)
        self._config["last_updated"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        make_private_dirs(self.config_dir)
        payload = json.dumps(self._config, indent=2, sort_keys=True).encode() + b"\n"
        atomic_write_bytes(self.config_path, payload, mode=0o600)

    save = _save_config

    # -- reading ---------------------------------------------------------
    def get_config(self, key: str | None = None, default: Any = None) -> Any:
        """The whole config (a copy) or one value by dotted key (``"aws.bucket"``)."""
        if key is None:
            return copy.deepcopy(self._config)
        node: Any = self._config
        for part in key.split("."):
            if not isinstance(node, dict) or part not in node:
                return default
            node = node[part]
        return copy.deepcopy(node)

    def set_config(self, key: str, value: Any, *, save: bool = True) -> None:
        """Set one value by dotted key (``None`` removes it) and save.

        A value that looks like a credential is refused under any key (cpv
        stores paths and names only); a relative path under a path key
        (``local.root``, ``workspace_root``) is stored absolute.
        """
        if looks_like_secret(value):
            raise ConfigError(
                f"the value for {key!r} looks like a secret (a key, token or password); it was not stored",
                fix="cpv stores only paths and names: store the path of the file that holds it (…_path) "
                "or the name of an environment variable (…_env)",
            )
        if key in PATH_KEYS and isinstance(value, str) and value and not Path(value).expanduser().is_absolute():
            value = str(Path(value).expanduser().resolve())
            logger.warning("%s is stored as the absolute path %s", key, value)
        parts = key.split(".")
        node = self._config
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"config key {key!r} crosses a non-object value", fix="remove the conflicting key")
        if value is None:
            node.pop(parts[-1], None)
        else:
            node[parts[-1]] = value
        _check_no_secrets(self._config)
        if save:
            self._save_config()

    def set_section(self, section: str, entries: dict[str, Any]) -> None:
        """Replace a whole config section (what a credential provider's set-up returned) and save."""
        self._config[section] = dict(entries)
        self._save_config()

    @contextmanager
    def all_or_nothing(self) -> Iterator[None]:
        """Changes saved inside the block all stay; on any exception (Ctrl-C included)
        ``config.json`` and this object return to what they were before it."""
        try:
            before: bytes | None = self.config_path.read_bytes()
        except FileNotFoundError:
            before = None
        saved = copy.deepcopy(self._config)
        try:
            yield
        except BaseException:
            self._config = saved
            if before is None:
                self.config_path.unlink(missing_ok=True)
            else:
                atomic_write_bytes(self.config_path, before, mode=0o600)
            raise

    def backend_name(self, kind: str) -> str:
        """The configured backend name for ``kind`` (storage, hosting, versioning);
        when unset, the one a configured credential provider selects, else the default."""
        from cpv_core.plugin.credentials import backend_name

        return backend_name(self, kind)

    def workspace_root(self) -> Path:
        """Where model workspaces live: ``workspace_root`` or ``$CPV_HOME/workspaces``."""
        value = self._config.get("workspace_root")
        return Path(value).expanduser() if value else self.config_dir / "workspaces"

    # -- credentials: thin seed-compatible shims over cpv_core.plugin.credentials ----------
    def credential_env(self) -> dict[str, str]:
        """Environment variables from every configured credential provider."""
        from cpv_core.plugin.credentials import credential_env

        return credential_env(self)

    def setup_aws_profile(
        self,
        credential_path: str | Path | None = None,
        aws_profile: str = "default",
        bucket: str | None = None,
        endpoint_url: str | None = None,
        region: str | None = None,
        **kwargs: Any,
    ) -> dict[str, Any]:
        """Configure S3 access by reference to an AWS credentials file and profile.

        Stores the path, profile, bucket, endpoint and region, never key values.
        Newly initialised models then use the ``dvc-s3`` storage.
        """
        from cpv_core.plugin.credentials import setup_provider

        options = dict(
            credential_path=credential_path,
            aws_profile=aws_profile,
            bucket=bucket,
            endpoint_url=endpoint_url,
            region=region,
        )
        options.update({k: v for k, v in kwargs.items() if k not in {"verbose", "dry_run"}})
        return setup_provider(self, "aws", options)

    def setup_bitbucket_ssh(
        self, keygen_filename: str | Path | None = None, bitbucket_user: str | None = None, **kwargs: Any
    ) -> dict[str, Any]:
        """Configure Bitbucket over SSH: key (generated if missing), ``~/.ssh/config``
        managed block, workspace, host and port. Newly initialised models then use
        the ``bitbucket-ssh`` hosting."""
        from cpv_core.plugin.credentials import setup_provider

        options = dict(keygen_filename=keygen_filename, bitbucket_user=bitbucket_user)
        options.update({k: v for k, v in kwargs.items() if k not in {"verbose", "dry_run"}})
        return setup_provider(self, "bitbucket-ssh", options)

    def validate_credentials(self, verbose: bool = False, **_: Any) -> ValidationReport:
        """Run every configured provider's checks; truthy when all pass.

        With nothing configured the embedded local default needs no
        credentials, which is reported as one passing check.
        """
        from cpv_core.plugin.credentials import validate_credentials

        return validate_credentials(self, verbose=verbose or self.verbose)
