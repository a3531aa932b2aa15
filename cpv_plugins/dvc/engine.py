"""The storage engine of the DVC-format backends (``local``, ``dvc-s3``).

It speaks DVC 3's format (:mod:`cpv_plugins.dvc.layout`) itself: it hashes
files and directories into the workspace's ``.dvc/cache``, writes the pointer
files and ``.dir`` manifests exactly as ``dvc add`` would, and moves objects
to and from the remote through a small :class:`~cpv_plugins.transports.local.Transport`
(a local directory, or S3 through boto3). DVC itself is never imported: a
plain ``git`` + ``dvc`` user reads what cpv wrote (the interop tests run the
real DVC CLI on it).

Every object read back (from the cache or the remote) is checked against its
MD5 before it is placed; a version is materialised from its pointer alone,
so storage does not depend on how the versioning backend keeps history.
Committed configuration (``.dvc/config``) holds only the remote's name and,
where it is the same for every team member, its URL; everything
machine-specific goes to ``.dvc/config.local``, which git ignores.

The engine is built in floors: :mod:`~cpv_plugins.dvc.cache` (settings, cache,
manifests), :mod:`~cpv_plugins.dvc.pushing`, :mod:`~cpv_plugins.dvc.tracking` and
:mod:`~cpv_plugins.dvc.materialize`. A new object store is a subclass of
:class:`DvcStorage` with a transport (:mod:`cpv_plugins.transports`).
"""

from __future__ import annotations

from cpv_plugins.dvc.cache import SMALL_FILE_BYTES, STALE_UPLOAD_SECONDS
from cpv_plugins.dvc.layout import tracked_root
from cpv_plugins.dvc.materialize import MaterializingStore, staged
from cpv_plugins.dvc.tracking import TrackingStore

__all__ = ["SMALL_FILE_BYTES", "STALE_UPLOAD_SECONDS", "DvcStorage", "staged", "tracked_root"]


class DvcStorage(TrackingStore, MaterializingStore):
    """Storage in DVC's format; subclasses say where the remote is (:meth:`remote_url`)
    and how it is reached (:meth:`make_transport`)."""

    name = "dvc"

    #: how many files the last local verify checked on the remote because they were not cached here
    last_verify_remote_checked = 0

    def checked_on_remote(self) -> int:
        return self.last_verify_remote_checked
