"""Every cpv hook, typed and documented. Plugins implement them with
``@cpv_core.hookimpl``.

The four backend hooks are *registration* hooks (the pattern conda uses for
solvers): each returns the backends a plugin offers as small dataclasses with
a ``name``; cpv then picks one **by the name in the configuration**, never by
plugin order. What a backend must do is defined by the protocols in
:mod:`cpv_core.backends`.

All hooks are collected hooks (every plugin's result is used) unless marked
"first result".
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    import click

    from .backends import (
        CredentialProviderInfo,
        HostingBackendInfo,
        StorageBackendInfo,
        VersioningBackendInfo,
    )
    from .config import CPVConfig

PROJECT_NAME = "cpv"
hookspec = pluggy.HookspecMarker(PROJECT_NAME)


@hookspec
def cpv_storage_backends() -> Iterable[StorageBackendInfo]:
    """Offer storage backends (large files: track, push, materialise, status).

    Selected by the ``storage`` key of the config (default ``local``).

    Example::

        @hookimpl
        def cpv_storage_backends():
            return [StorageBackendInfo("my-store", MyStore, "objects in /srv/store")]

    :return: the backends this plugin offers, each implementing
        :class:`cpv_core.backends.StorageBackend` through its factory.
    """


@hookspec
def cpv_versioning_backends() -> Iterable[VersioningBackendInfo]:
    """Offer versioning backends (commits, tag naming scheme, list/create/publish versions).

    Selected by the ``versioning`` key of the config (default ``git-tags``).

    Example::

        @hookimpl
        def cpv_versioning_backends():
            return [VersioningBackendInfo("gto-tags", GtoTags)]

    :return: the backends this plugin offers, implementing
        :class:`cpv_core.backends.VersioningBackend`.
    """


@hookspec
def cpv_hosting_backends() -> Iterable[HostingBackendInfo]:
    """Offer VCS hosting backends (remote URL for a team/model, ensure/validate it).

    Selected by the ``hosting`` key of the config (default ``local``).

    Example::

        @hookimpl
        def cpv_hosting_backends():
            return [HostingBackendInfo("gitea", GiteaHosting)]

    :return: the backends this plugin offers, implementing
        :class:`cpv_core.backends.HostingBackend`.
    """


@hookspec
def cpv_credential_providers() -> Iterable[CredentialProviderInfo]:
    """Offer credential providers (set up, validate with a per-check report,
    environment for subprocesses).

    Every configured provider is validated by ``cpv validate`` and contributes
    its environment to backends.

    Example::

        @hookimpl
        def cpv_credential_providers():
            return [CredentialProviderInfo("vault", VaultCredentials())]

    :return: the providers this plugin offers, implementing
        :class:`cpv_core.backends.CredentialProvider`.
    """


@hookspec
def cpv_enumerate_models(config: CPVConfig) -> Iterable[tuple[str, str]]:
    """The ``(team, model)`` pairs this plugin's remotes hold (``cpv registry``).

    Called for every plugin; answer only when ``config`` selects one of your
    backends (e.g. ``config.backend_name("storage") == "mystore"``), and read
    as little as it takes (a listing of prefixes, not of objects). Example::

        @hookimpl
        def cpv_enumerate_models(config):
            if config.backend_name("storage") != "mystore":
                return []
            return [("AI-Convo", "whisper")]

    :param config: the cpv configuration in force.
    :return: team and model names (checked by cpv like any name).
    """


@hookspec
def cpv_register_commands(cli: click.Group) -> None:
    """Add commands to the ``cpv`` command line.

    Example::

        @hookimpl
        def cpv_register_commands(cli):
            @cli.command()
            def hello():
                click.echo("hello")

    :param cli: the top-level click group; add commands or groups to it.
    """
