"""The plugin manager and a small typed facade over it.

Builtin plugins (``cpv_plugins.*``) are registered first, then every entry
point of the group ``cpv`` (the builtins are declared there too, exactly like
third-party plugins, and are skipped when already registered). A plugin that
fails to import produces a warning naming it instead of a dead CLI.

``CPV_DISABLE_PLUGINS=1`` (or ``all``) loads the builtins only;
``CPV_DISABLE_PLUGINS=name1,name2`` skips the named entry points.
"""

from __future__ import annotations

import functools
import importlib
import os
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import pluggy

from cpv_core.errors import ConfigError
from cpv_core.plugin import hookspecs
from cpv_core.plugin.entry_points import EntryPoint
from cpv_core.plugin.entry_points import find as find_entry_points
from cpv_core.plugin.protocols import (
    BackendContext,
    CredentialProvider,
    CredentialProviderInfo,
    HostingBackend,
    HostingBackendInfo,
    SettingInfo,
    SetupChoice,
    StorageBackend,
    StorageBackendInfo,
    VersioningBackend,
    VersioningBackendInfo,
)

ENTRY_POINT_GROUP = "cpv"
DISABLE_ENV = "CPV_DISABLE_PLUGINS"

#: Builtin plugin modules, registered before any entry point.
BUILTIN_PLUGINS: dict[str, str] = {
    "git_tags": "cpv_plugins.git.backend",
    "local": "cpv_plugins.local",
    "dvc_s3": "cpv_plugins.dvc_s3",
    "gcs": "cpv_plugins.gcs",
    "azure": "cpv_plugins.azure",
    "git_hosting": "cpv_plugins.git_hosting",
    "bitbucket_ssh": "cpv_plugins.bitbucket_ssh",
    "webhook": "cpv_plugins.webhook",
    "mlflow_sync": "cpv_plugins.mlflow_sync",
}


class PluginLoadWarning(UserWarning):
    """A third-party plugin could not be loaded; cpv continues without it."""


def _disabled_entry_points() -> tuple[bool, set[str]]:
    value = os.environ.get(DISABLE_ENV, "").strip()
    if value.lower() in {"1", "true", "yes", "all", "*"}:
        return True, set()
    return False, {v.strip() for v in value.split(",") if v.strip()}


def _register_builtins(pm: pluggy.PluginManager) -> None:
    for name, module_name in BUILTIN_PLUGINS.items():
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            # A builtin whose own module is missing is a broken install, not
            # an optional extra: say so but keep the others.
            warnings.warn(f"builtin cpv plugin {name!r} ({module_name}) is missing: {exc}", PluginLoadWarning, stacklevel=2)
            continue
        pm.register(module, name=name)


#: the entry point each plugin was loaded from (its distribution's version for ``cpv plugins``), by plugin name
_entry_points: dict[str, EntryPoint] = {}


def _register_entry_points(pm: pluggy.PluginManager) -> None:
    all_disabled, disabled = _disabled_entry_points()
    if all_disabled:
        return
    for ep in find_entry_points(ENTRY_POINT_GROUP):
        if ep.name in disabled or pm.get_plugin(ep.name) is not None:
            continue
        try:
            plugin = ep.load()
            if pm.is_registered(plugin):
                continue
            pm.register(plugin, name=ep.name)
            _entry_points[ep.name] = ep
        except Exception as exc:  # noqa: BLE001 - one broken plugin must not break cpv
            warnings.warn(
                f"cpv plugin {ep.name!r} ({ep.value}) failed to load and was skipped: "
                f"{type(exc).__name__}: {exc}. Reinstall or uninstall it, or set {DISABLE_ENV}={ep.name}.",
                PluginLoadWarning,
                stacklevel=2,
            )


@functools.cache
def get_plugin_manager() -> pluggy.PluginManager:
    """The process-wide plugin manager (builtins, then entry points)."""
    pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    _register_builtins(pm)
    _register_entry_points(pm)
    pm.check_pending()
    return pm


def reset_plugin_manager() -> None:
    """Forget the cached manager (tests, or after installing a plugin)."""
    get_plugin_manager.cache_clear()


@dataclass(frozen=True)
class PluginInfo:
    """What ``cpv plugins`` shows for one plugin."""

    name: str
    module: str
    version: str | None
    hooks: tuple[str, ...]
    builtin: bool


T = TypeVar("T")


def _collect(results: Iterable[Iterable[T] | None]) -> list[T]:
    out: list[T] = []
    for result in results:
        if result:
            out.extend(result)
    return out


def _offers(hook: Any) -> list[tuple[str, Any]]:
    """``(plugin name, info)`` for every item every implementation of ``hook`` returns."""
    out: list[tuple[str, Any]] = []
    for impl in hook.get_hookimpls():
        for info in impl.function() or []:
            out.append((impl.plugin_name, info))
    return out


def _pick(kind: str, name: str, offers: list[tuple[str, Any]]) -> tuple[str, Any]:
    """The one ``(plugin, info)`` offering backend ``name``: plugin order never decides,
    so a name offered twice is an error naming both plugins."""
    matches = [(plugin, info) for plugin, info in offers if info.name == name]
    if not matches:
        choices = ", ".join(sorted({info.name for _, info in offers})) or "none"
        raise ConfigError(
            f"{kind} backend {name!r} is not provided by any installed plugin (available: {choices})",
            fix=f'install the plugin that provides it, or set "{kind}" to one of the available names in the cpv config',
        )
    if len(matches) > 1:
        plugins = " and ".join(sorted(plugin for plugin, _ in matches))
        raise ConfigError(
            f"{kind} backend {name!r} is offered by more than one plugin ({plugins}); cpv never picks one by load order",
            fix="uninstall one of them, or disable one with CPV_DISABLE_PLUGINS",
        )
    return matches[0]


def _create(kind: str, plugin: str, factory: Any, ctx: BackendContext, protocol: type) -> Any:
    """``factory(ctx)``, checked against ``protocol``; a backend class that leaves an abstract
    method of a base class unimplemented is refused before it is instantiated."""
    abstract = sorted(getattr(factory, "__abstractmethods__", ()))
    if abstract:
        raise ConfigError(
            f"the {kind} backend from plugin {plugin!r} lacks {', '.join(abstract)} (abstract in its base class)",
            fix=f"update or uninstall the plugin {plugin!r}",
        )
    return _checked(kind, plugin, factory(ctx), protocol)


class WithDefaults:
    """A backend that lacks some optional protocol methods, given the defaults of the base
    class for them (everything else is the backend's own: attribute access passes through)."""

    def __init__(self, backend: Any, defaults: type, missing: Sequence[str]) -> None:
        object.__setattr__(self, "_backend", backend)
        for name in missing:  # bound to this wrapper, so a default's self.track() reaches the backend
            object.__setattr__(self, name, getattr(defaults, name).__get__(self))

    def __getattr__(self, name: str) -> Any:
        return getattr(object.__getattribute__(self, "_backend"), name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(object.__getattribute__(self, "_backend"), name, value)


def with_defaults(backend: Any, protocol: type) -> Any:
    """``backend``, or it wrapped in :class:`WithDefaults` when it lacks optional methods of
    ``protocol`` (a backend written before they existed keeps working)."""
    from cpv_core.plugin.bases import OPTIONAL_STORAGE_METHODS, OPTIONAL_VERSIONING_METHODS, StorageBackendBase, VersioningBackendBase

    optional: dict[type, tuple[type, tuple[str, ...]]] = {
        StorageBackend: (StorageBackendBase, OPTIONAL_STORAGE_METHODS),
        VersioningBackend: (VersioningBackendBase, OPTIONAL_VERSIONING_METHODS),
    }
    if protocol not in optional:
        return backend
    defaults, names = optional[protocol]
    missing = [n for n in names if not callable(getattr(backend, n, None))]
    return WithDefaults(backend, defaults, missing) if missing else backend


def _checked(kind: str, plugin: str, backend: Any, protocol: type) -> Any:
    """``backend`` if it has every method of ``protocol`` (optional ones are given their
    defaults first); else a ConfigError naming the plugin, so a backend missing a method
    fails at selection, not halfway through an upload."""
    backend = with_defaults(backend, protocol)
    wanted = [n for n, v in vars(protocol).items() if callable(v) and not n.startswith("_")]
    missing = [n for n in wanted if not callable(getattr(backend, n, None))]
    if missing:
        raise ConfigError(
            f"the {kind} backend from plugin {plugin!r} lacks {', '.join(missing)} (required by cpv's {protocol.__name__})",
            fix=f"update or uninstall the plugin {plugin!r}",
        )
    return backend


class Plugins:
    """Typed access to the hooks, so the rest of cpv never touches ``pm.hook`` untyped."""

    def __init__(self, pm: pluggy.PluginManager | None = None) -> None:
        self.pm = pm or get_plugin_manager()

    # -- registries -------------------------------------------------------
    def storage_backends(self) -> list[StorageBackendInfo]:
        """Every storage backend offered by a registered plugin."""
        return _collect(self.pm.hook.cpv_storage_backends())

    def versioning_backends(self) -> list[VersioningBackendInfo]:
        """Every versioning backend offered by a registered plugin."""
        return _collect(self.pm.hook.cpv_versioning_backends())

    def hosting_backends(self) -> list[HostingBackendInfo]:
        """Every hosting backend offered by a registered plugin."""
        return _collect(self.pm.hook.cpv_hosting_backends())

    def credential_providers(self) -> list[CredentialProviderInfo]:
        """Every credential provider offered by a registered plugin."""
        return _collect(self.pm.hook.cpv_credential_providers())

    def settings(self) -> list[SettingInfo]:
        """Every config key plugins declare beyond their backends' (hook ``cpv_settings``)."""
        return _collect(self.pm.hook.cpv_settings())

    def setup_choices(self) -> list[SetupChoice]:
        """Every answer plugins offer to ``cpv setup``'s questions (hook ``cpv_setup_choices``)."""
        return _collect(self.pm.hook.cpv_setup_choices())

    # -- selection by configured name ---------------------------------------
    def storage(self, name: str, ctx: BackendContext) -> StorageBackend:
        """Create the storage backend called ``name`` for ``ctx``."""
        plugin, info = _pick("storage", name, _offers(self.pm.hook.cpv_storage_backends))
        return _create("storage", plugin, info.factory, ctx, StorageBackend)  # type: ignore[no-any-return]

    def versioning(self, name: str, ctx: BackendContext) -> VersioningBackend:
        """Create the versioning backend called ``name`` for ``ctx``."""
        plugin, info = _pick("versioning", name, _offers(self.pm.hook.cpv_versioning_backends))
        return _create("versioning", plugin, info.factory, ctx, VersioningBackend)  # type: ignore[no-any-return]

    def hosting(self, name: str, ctx: BackendContext) -> HostingBackend:
        """Create the hosting backend called ``name`` for ``ctx``."""
        plugin, info = _pick("hosting", name, _offers(self.pm.hook.cpv_hosting_backends))
        return _create("hosting", plugin, info.factory, ctx, HostingBackend)  # type: ignore[no-any-return]

    def credential_provider(self, name: str) -> CredentialProvider:
        """The credential provider called ``name``."""
        plugin, info = _pick("credentials", name, _offers(self.pm.hook.cpv_credential_providers))
        return _checked("credentials", plugin, info.provider, CredentialProvider)  # type: ignore[no-any-return]

    def enumerate_models(self, config: Any) -> list[tuple[str, str]]:
        """Every ``(team, model)`` the plugins' remotes hold (names checked, duplicates dropped)."""
        from cpv_core.domain.names import validate_name
        from cpv_core.errors import ValidationError

        found: dict[tuple[str, str], None] = {}
        for answer in self.pm.hook.cpv_enumerate_models(config=config):
            for pair in answer or []:
                try:
                    team, model = pair
                    found[(validate_name(team, "team name"), validate_name(model, "model name"))] = None
                except (ValidationError, TypeError, ValueError):
                    continue  # a prefix or repository that is not a cpv model
        return sorted(found)

    def register_commands(self, cli: Any) -> None:
        """Let plugins add CLI commands."""
        self.pm.hook.cpv_register_commands(cli=cli)

    # -- introspection ------------------------------------------------------
    def describe(self) -> list[PluginInfo]:
        """Name, module, version and implemented hooks of every plugin."""
        infos = []
        for name, plugin in sorted(self.pm.list_name_plugin(), key=lambda item: str(item[0])):
            if plugin is None:
                continue
            hooks = tuple(sorted(h.name for h in self.pm.get_hookcallers(plugin) or []))
            ep = _entry_points.get(str(name))
            version = ep.version if ep is not None else _builtin_version(name)
            infos.append(
                PluginInfo(
                    name=str(name),
                    module=getattr(plugin, "__name__", type(plugin).__name__),
                    version=version,
                    hooks=hooks,
                    builtin=name in BUILTIN_PLUGINS,
                )
            )
        return infos


def _builtin_version(name: str) -> str | None:
    if name not in BUILTIN_PLUGINS:
        return None
    from cpv_core import __version__

    return __version__
