"""Which configuration keys exist, as the installed plugins declare them, so that
``cpv config set`` refuses a misspelt key or an unknown backend name with the
valid choices instead of storing something nothing reads."""

from __future__ import annotations

from cpv_core.domain.backend_values import LAYOUT_KEY, STORAGE_LAYOUTS
from cpv_core.errors import ConfigError
from cpv_core.plugin.credentials import DEFAULT_BACKENDS, section_of
from cpv_core.plugin.manager import Plugins

#: keys of the core itself
CORE_KEYS = ("workspace_root", "events.timeout", LAYOUT_KEY)
#: spellings accepted for a key (``storage`` itself names the storage backend)
ALIASES = {"storage.layout": LAYOUT_KEY}


def canonical_key(key: str) -> str:
    """``key`` as stored (``storage.layout`` is ``storage_layout``)."""
    return ALIASES.get(key, key)


def known_keys(plugins: Plugins | None = None) -> list[str]:
    """Every settable key: the backend choices, the core's, and what plugins declare."""
    plugins = plugins or Plugins()
    keys = set(DEFAULT_BACKENDS) | set(CORE_KEYS)
    for info in plugins.credential_providers():
        keys.update(f"{section_of(info)}.{key}" for key in info.keys)
    for storage in plugins.storage_backends():
        keys.update(storage.settings)
    for hosting in plugins.hosting_backends():
        keys.update(hosting.settings)
    keys.update(info.key for info in plugins.settings())
    return sorted(keys)


def secret_keys(plugins: Plugins | None = None) -> set[str]:
    """The keys plugins declare secret: shown masked, never logged."""
    return {info.key for info in (plugins or Plugins()).settings() if info.secret}


def mask(value: object) -> str:
    """A secret value as ``cpv config show`` prints it: a URL keeps its scheme and
    host (enough to recognise it), everything else is hidden."""
    from urllib.parse import urlsplit

    text = str(value)
    parts = urlsplit(text)
    if parts.scheme and parts.hostname:
        try:
            port = f":{parts.port}" if parts.port else ""
        except ValueError:  # a port that is not a number: shown as none
            port = ""
        return f"{parts.scheme}://{parts.hostname}{port}/***"
    return "***"


def backend_choices(kind: str, plugins: Plugins | None = None) -> list[str]:
    """The names of the installed backends of ``kind``."""
    plugins = plugins or Plugins()
    if kind == "storage":
        return sorted({info.name for info in plugins.storage_backends()})
    if kind == "hosting":
        return sorted({info.name for info in plugins.hosting_backends()})
    return sorted({info.name for info in plugins.versioning_backends()})


def check_setting(key: str, value: str | None) -> None:
    """Raise :class:`ConfigError` unless ``key`` is known and, for a backend choice,
    ``value`` names an installed backend (``None`` removes a key: always allowed for a known key)."""
    plugins = Plugins()
    keys = known_keys(plugins)
    if key == LAYOUT_KEY and value and value not in STORAGE_LAYOUTS:
        raise ConfigError(f"{key} {value!r} is not a storage layout", fix=f"choose one of: {', '.join(STORAGE_LAYOUTS)} (docs/concepts.md)")
    if key not in keys:
        raise ConfigError(
            f"{key!r} is not a cpv setting", fix=f"use one of: {', '.join(keys)} (plugins add their own; see `cpv config show`)"
        )
    for setting in plugins.settings():
        if setting.key == key and setting.check is not None and value:
            try:
                setting.check(value)
            except ValueError as exc:
                raise ConfigError(str(exc), fix=f"set it again with `cpv config set {key} VALUE`") from None
    if key in DEFAULT_BACKENDS and value:
        choices = backend_choices(key, plugins)
        if value not in choices:
            raise ConfigError(
                f"{key} backend {value!r} is not provided by any installed plugin", fix=f"choose one of: {', '.join(choices)}"
            )


def flag_setting(config: object, key: str, default: bool, fix: str) -> bool:
    """A true/false setting (``true``/``false``, ``yes``/``no``, ``on``/``off``, ``1``/``0``);
    ``default`` when unset; a ConfigError naming the key and ``fix`` for anything else."""
    return parse_flag(config.get_config(key), key, default, fix)  # type: ignore[attr-defined]


def parse_flag(value: object, key: str, default: bool, fix: str) -> bool:
    """``value`` of setting ``key`` as true/false (see :func:`flag_setting`)."""
    from cpv_core.trust import visible

    if value is None or value == "":
        return default
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in {"true", "yes", "1", "on"}:
        return True
    if text in {"false", "no", "0", "off"}:
        return False
    raise ConfigError(f"{key} {visible(repr(value))} is not true or false", fix=fix)
