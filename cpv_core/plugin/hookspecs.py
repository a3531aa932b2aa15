"""Every cpv hook, typed and documented. Plugins implement them with
``@cpv_core.hookimpl``.

The four backend hooks are *registration* hooks (the pattern conda uses for
solvers): each returns the backends a plugin offers as small dataclasses with
a ``name``; cpv then picks one **by the name in the configuration**, never by
plugin order. What a backend must do is defined by the protocols in
:mod:`cpv_core.plugin.protocols`.

All hooks are collected hooks (every plugin's result is used) unless marked
"first result".

The three *event* hooks (``cpv_version_published``, ``cpv_stage_changed``,
``cpv_upload_finished``) are called after the remote state is final, each
listener in its own thread under a time bound (``events.timeout``); a
listener's exception is logged with the plugin's name and never undoes or
fails the command (:mod:`cpv_core.plugin.events`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    import click

    from cpv_core.domain.event_records import PublishedVersion, StageChange, UploadFinished
    from cpv_core.plugin.config import CPVConfig
    from cpv_core.plugin.protocols import (
        CredentialProviderInfo,
        HostingBackendInfo,
        SettingInfo,
        SetupChoice,
        StorageBackendInfo,
        VersioningBackendInfo,
    )

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
        :class:`cpv_core.plugin.protocols.StorageBackend` through its factory.
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
        :class:`cpv_core.plugin.protocols.VersioningBackend`.
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
        :class:`cpv_core.plugin.protocols.HostingBackend`.
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
        :class:`cpv_core.plugin.protocols.CredentialProvider`.
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


@hookspec
def cpv_settings() -> Iterable[SettingInfo]:
    """Declare the config keys a plugin reads beyond its backends' (a listener's
    ``notify.webhook``), so ``cpv config set`` accepts them and ``cpv config show``
    masks the secret ones.

    Example::

        @hookimpl
        def cpv_settings():
            return [SettingInfo("notify.webhook", "URL to post new versions to", secret=True)]

    :return: the keys, with a one-line description each.
    """


@hookspec
def cpv_version_published(record: PublishedVersion, config: CPVConfig) -> None:
    """A version is on the remote (model, data, or a combined ``checkpoint``).

    Called once per version, after the push succeeded. Example (a listener takes only the
    arguments it needs)::

        @hookimpl
        def cpv_version_published(record):
            print(f"{record.team}/{record.model} {record.kind} {record.version}: {dict(record.metrics)}")

    :param record: team, model, kind, version, commit, author, metrics, where the bytes are.
    :param config: the cpv configuration in force (read your plugin's keys from it).
    """


@hookspec
def cpv_stage_changed(change: StageChange, config: CPVConfig) -> None:
    """A stage has a new holder (a promotion) or none (a demotion), on the remote.

    Example::

        @hookimpl
        def cpv_stage_changed(change):
            if change.stage == "prod":
                print(f"{change.team}/{change.model}: prod is now {change.version or 'empty'}")

    :param change: team, model, kind, stage, the version now holding it (None when
        emptied), the one before, who, why, and any overridden rules.
    :param config: the cpv configuration in force.
    """


@hookspec
def cpv_upload_finished(upload: UploadFinished, config: CPVConfig) -> None:
    """An upload's commit is on the remote (it is not a version until tagged).

    Example::

        @hookimpl
        def cpv_upload_finished(upload):
            if upload.changed:
                print(f"{upload.path}: {upload.size} bytes in {upload.seconds:.1f} s")

    :param upload: team, model, kind, path, commit, digest, size, metrics, whether
        anything changed, and how long it took.
    :param config: the cpv configuration in force.
    """


@hookspec
def cpv_setup_choices() -> Iterable[SetupChoice]:
    """Offer answers to ``cpv setup``'s "which storage?" / "which hosting?", each with
    its questions and the code that writes the configuration from the answers.

    Example::

        @hookimpl
        def cpv_setup_choices():
            return [SetupChoice("storage", "mystore", "mystore", "objects in /srv/store",
                                questions=(SetupQuestion("root", "Store directory", "/srv/store"),),
                                apply=lambda config, answers: [config.set_config("mystore.root", answers["root"]) or "done"])]

    :return: the choices this plugin offers.
    """
