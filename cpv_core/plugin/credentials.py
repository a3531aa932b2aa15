"""Credential providers at work: which backends are the default, the
environment subprocesses get, set-up and validation.

The providers come from plugins (hook ``cpv_credential_providers``), and each
declares its config section and the backends it selects once configured, so
neither :mod:`cpv_core.plugin.config` nor the core knows any backend by name beyond
the embedded defaults.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from cpv_core.errors import ConfigError
from cpv_core.plugin.manager import Plugins
from cpv_core.plugin.protocols import CheckResult, CredentialProviderInfo, ValidationReport

if TYPE_CHECKING:
    from cpv_core.plugin.config import CPVConfig

logger = logging.getLogger("cpv.config")

#: the backends of the embedded local default, used when nothing else is configured
DEFAULT_BACKENDS = {"storage": "local", "hosting": "local", "versioning": "git-tags"}


def section_of(info: CredentialProviderInfo) -> str:
    """The config section a provider's settings live in."""
    return info.section or info.name


def backend_name(config: CPVConfig, kind: str) -> str:
    """The backend for ``kind``: explicit in the config, else the one a configured
    provider selects (two providers selecting different ones is an error), else the default."""
    explicit = config.get_config(kind)
    if explicit:
        return str(explicit)
    selected = {
        info.selects[kind]: info.name
        for info in Plugins().credential_providers()
        if kind in info.selects and info.provider.is_configured(config)
    }
    if len(selected) > 1:
        raise ConfigError(
            f"the configured credential providers select different {kind} backends: "
            + ", ".join(f"{name} -> {backend}" for backend, name in sorted(selected.items())),
            fix=f"choose one: cpv config set {kind} NAME",
        )
    if selected:
        return next(iter(selected))
    if kind not in DEFAULT_BACKENDS:
        raise ConfigError(f"unknown backend kind {kind!r}", fix="use storage, hosting or versioning")
    return DEFAULT_BACKENDS[kind]


def credential_env(config: CPVConfig) -> dict[str, str]:
    """Environment variables from every configured credential provider."""
    env: dict[str, str] = {}
    for info in Plugins().credential_providers():
        if info.provider.is_configured(config):
            env.update(info.provider.environment(config))
    return env


def setup_provider(config: CPVConfig, name: str, options: dict[str, Any]) -> dict[str, Any]:
    """Run provider ``name``'s set-up and store what it returns in its config section."""
    plugins = Plugins()
    provider = plugins.credential_provider(name)
    info = next(i for i in plugins.credential_providers() if i.name == name)
    entries = provider.setup(config, **options)
    config.set_section(section_of(info), entries)
    return entries


def validate_credentials(config: CPVConfig, *, verbose: bool = False) -> ValidationReport:
    """Every configured provider's checks (one passing check for the local default)."""
    checks: list[CheckResult] = []
    for info in Plugins().credential_providers():
        if info.provider.is_configured(config):
            checks.extend(info.provider.validate(config))
    if not checks:
        checks.append(CheckResult("local", True, "no remote credentials configured: the embedded local default needs none"))
    for check in checks:
        if verbose or not check.ok:
            logger.log(logging.INFO if check.ok else logging.WARNING, "%s %s: %s", "ok" if check.ok else "FAILED", check.name, check.detail)
    return ValidationReport(checks)
